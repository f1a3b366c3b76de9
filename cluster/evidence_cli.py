"""``tenir evidence ...``: site keys, bundles and reports of the continuity ledger.

``export`` and ``report`` reach the cluster as the other commands do, through any live alert
node's API, with the auditor's token (``$TENIR_TOKEN``, else the lab's). ``verify`` works
offline on a bundle directory: no cluster, no database. ``keygen`` writes one site's key pair.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cluster.node_api import NodeApi, operator_token
from cluster.topology import Topology


def _when(text: str | None) -> str | None:
    if text is None:
        return None
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise SystemExit(f"tenir evidence: {text!r} needs its time zone (Z or +hh:mm)")
    return t.isoformat()


def _fetch_bundle(topo: Topology, args: argparse.Namespace) -> Any:
    from failover.evidence.bundle import Bundle

    query = {k: v for k, v in (("from", _when(args.since)), ("to", _when(args.until))) if v}
    api = NodeApi(topo, operator_token("auditor"), timeout=120.0)
    return Bundle.from_json(api.call("GET", "/evidence/bundle"
                                     + (f"?{urlencode(query)}" if query else "")))


def _trusted(paths: list[str] | None) -> list[str] | None:
    if not paths:
        return None
    out: list[str] = []
    for p in map(Path, paths):
        files = sorted(p.glob("*.pub")) if p.is_dir() else [p]
        out += [f.read_text(encoding="utf-8").strip() for f in files]
    return out


def _report(bundle: Any, trusted: list[str] | None, fmt: str) -> tuple[bytes, Any]:
    from failover.evidence.render import render
    from failover.evidence.report import build
    from failover.evidence.verify import verify_bundle

    result = verify_bundle(bundle, trusted=trusted)
    return render(build(bundle, result), fmt), result


def cmd_evidence_topo(args: argparse.Namespace, topo: Topology) -> int:
    from failover.evidence.bundle import write

    bundle = _fetch_bundle(topo, args)
    if args.evidence_command == "export":
        out = Path(args.out)
        write(bundle, out)
        for fmt in ("json", "html", "pdf"):
            body, result = _report(bundle, _trusted(args.trust), fmt)
            (out / f"report.{fmt}").write_bytes(body)
        status = "verified" if result.ok else f"NOT verified: {result.problems[0]}"
        print(f"bundle written to {out}: {len(bundle.entries)} entries, "
              f"{len(bundle.checkpoints)} checkpoints, {len(bundle.records)} records; {status}")
        return 0 if result.ok else 1
    body, result = _report(bundle, _trusted(args.trust), args.format)
    if args.out:
        Path(args.out).write_bytes(body)
        print(f"report written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(body)
    return 0 if result.ok else 1


def cmd_evidence(args: argparse.Namespace) -> int:
    from failover.evidence import keys
    from failover.evidence.bundle import BundleError, read
    from failover.evidence.verify import summary, verify_bundle

    if args.evidence_command == "keygen":
        name = args.name or f"tenir/{args.site}"
        signer = keys.generate(name, keys.COSIGNATURE_V1 if args.witness else keys.ED25519)
        try:
            private, public = keys.write_pair(signer, Path(args.out), args.site)
        except keys.KeyFileError as exc:
            print(f"tenir evidence keygen: {exc}", file=sys.stderr)
            return 1
        print(f"{private} (private, 0600)\n{public}: {signer.verifier.vkey}")
        return 0
    try:
        bundle = read(Path(args.bundle))
        earlier = read(Path(args.against)) if args.against else None
        trusted = _trusted(args.trust)
    except (BundleError, OSError) as exc:
        print(f"tenir evidence verify: {exc}", file=sys.stderr)
        return 2
    result = verify_bundle(bundle, trusted=trusted, earlier=earlier)
    if args.json:
        print(json.dumps(summary(result), indent=2))
    elif result.ok:
        top = result.checkpoints[-1][0] if result.checkpoints else None
        print(f"verified: {result.size} entries, {len(result.checkpoints)} checkpoints"
              + (f" (latest: size {top.size}, root {top.root.hex()})" if top else "")
              + f", {len(result.records)} signed records")
    else:
        print(f"FAILED: {result.problems[0]}", file=sys.stderr)
        for p in result.problems[1:]:
            print(f"  also: {p}", file=sys.stderr)
    for w in result.warnings:
        print(f"note: {w}", file=sys.stderr)
    return 0 if result.ok else 1


def add_parsers(sub: Any) -> None:
    ev = sub.add_parser("evidence", help="continuity evidence: keys, bundles, verification, "
                        "reports")
    esub = ev.add_subparsers(dest="evidence_command", required=True)
    kg = esub.add_parser("keygen", help="write a site's key pair (<site>.key, <site>.pub)")
    kg.add_argument("--site", required=True)
    kg.add_argument("--out", required=True, help="directory (an existing key is never "
                    "overwritten)")
    kg.add_argument("--name", help="key name (default tenir/<site>)")
    kg.add_argument("--witness", action="store_true",
                    help="a witness cosigner key (cosignature/v1) instead of a site key")
    kg.set_defaults(func=cmd_evidence)
    vf = esub.add_parser("verify", help="verify a bundle offline (no cluster, no database)")
    vf.add_argument("bundle", help="bundle directory")
    vf.add_argument("--trust", nargs="+", help="pinned public keys (.pub files or a directory);"
                    " default: the bundle's own")
    vf.add_argument("--against", metavar="EARLIER", help="an earlier bundle whose latest "
                    "checkpoint this one must extend")
    vf.add_argument("--json", action="store_true")
    vf.set_defaults(func=cmd_evidence)
    for name, helptext in (("export", "write a bundle (entries, checkpoints, keys, proofs, "
                            "records, reports)"), ("report", "the auditor's report")):
        p = esub.add_parser(name, help=helptext)
        p.add_argument("--from", dest="since", help="ISO 8601 time with its zone")
        p.add_argument("--to", dest="until", help="ISO 8601 time with its zone")
        p.add_argument("--trust", nargs="+", help="pinned public keys to verify with")
        if name == "export":
            p.add_argument("out", help="bundle directory to write")
        else:
            p.add_argument("--format", choices=("html", "pdf", "json"), default="html")
            p.add_argument("--out", help="file to write (default: standard output)")
        p.set_defaults(func_topo=cmd_evidence_topo)
