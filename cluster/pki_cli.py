"""``tenir pki ...``: the cluster's CA and its certificates, on the controller (``cluster/pki.py``).

``ansible/pki.yml`` runs these: ``ca`` once, then ``cert`` for every host and for the operator.
Each prints one line whose first word is ``made``, ``renewed`` or ``unchanged`` (the play's
``changed_when``); ``show`` lists each certificate's expiry.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cluster.pki import CA_DAYS, CERT_DAYS, RENEW_DAYS, Pki, PkiError


def cmd_pki(args: argparse.Namespace) -> int:
    from cluster.certinfo import describe_dir

    vault = Path(args.vault_password_file) if getattr(args, "vault_password_file", None) else None
    pki = Pki(Path(args.dir), vault)
    try:
        if args.pki_command == "ca":
            print(pki.ensure_ca(args.name, days=args.days).line())
        elif args.pki_command == "cert":
            print(pki.ensure_cert(args.name, args.san or [], days=args.days,
                                  renew_days=args.renew_days,
                                  common_name=not args.no_common_name).line())
        else:
            found = describe_dir(Path(args.dir))
            if args.json:
                print(json.dumps(found, indent=2))
            else:
                for c in found:
                    print(f"{c['name']:<24} {c['not_after']}  {c['days_left']:>5} days  "
                          f"{','.join(c['sans'])}")
    except PkiError as exc:
        print(f"tenir pki: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parsers(sub: Any) -> None:
    pki = sub.add_parser("pki", help="the cluster's CA and certificates (made on the "
                         "controller by ansible/pki.yml)")
    psub = pki.add_subparsers(dest="pki_command", required=True)
    ca = psub.add_parser("ca", help="make the CA in DIR once (ca.crt, ca.key); never overwritten")
    ca.add_argument("--dir", required=True)
    ca.add_argument("--name", required=True, help="the CA's common name")
    ca.add_argument("--days", type=int, default=CA_DAYS)
    ca.set_defaults(func=cmd_pki)
    cert = psub.add_parser("cert", help="make or renew NAME.crt and NAME.key in DIR, signed by "
                           "its CA: when missing, close to expiry, or when the SANs change")
    cert.add_argument("--dir", required=True)
    cert.add_argument("--name", required=True, help="common name (a host's inventory name)")
    cert.add_argument("--san", action="append", help="a DNS name or IP address (repeat)")
    cert.add_argument("--days", type=int, default=CERT_DAYS)
    cert.add_argument("--renew-days", type=int, default=RENEW_DAYS,
                      help="renew when it expires within this many days")
    cert.add_argument("--no-common-name", action="store_true",
                      help="an empty subject (etcd's JSON gateway refuses client certificates "
                      "that carry a common name once RBAC is on)")
    cert.add_argument("--vault-password-file", help="to decrypt a vault-encrypted ca.key")
    cert.set_defaults(func=cmd_pki)
    show = psub.add_parser("show", help="each certificate in DIR with its expiry and SANs")
    show.add_argument("--dir", required=True)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_pki)
