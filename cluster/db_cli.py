"""``tenir db migrate``: apply the schema migrations as the schema owner, then grant the
application role what it may do (DML; on the continuity ledger only SELECT and INSERT).

Alert nodes never migrate: their role cannot, and they refuse to start on a schema that lacks a
migration their code ships (they retry, so a node started before the migration waits for it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from replication.appdb import APP_USER


def cmd_db(args: argparse.Namespace) -> int:
    from replication.migrate import migrate

    owner_dsn = args.owner_dsn or os.environ.get("TENIR_OWNER_DSN")
    if not owner_dsn:
        print("tenir db migrate: give --owner-dsn or $TENIR_OWNER_DSN (the schema owner's DSN, "
              "e.g. 'host=... dbname=tenir user=tenir_owner password=...')", file=sys.stderr)
        return 2
    applied = asyncio.run(migrate(owner_dsn, app_role=args.app_role or None))
    print(f"applied: {', '.join(applied)}" if applied else "schema up to date")
    if args.app_role:
        print(f"granted role {args.app_role}: DML; ledger and checkpoints SELECT and INSERT only")
    return 0


def add_parsers(sub: Any) -> None:
    db = sub.add_parser("db", help="the campaign store's schema")
    dsub = db.add_subparsers(dest="db_command", required=True)
    mig = dsub.add_parser("migrate", help="apply the migrations as the schema owner and grant "
                          "the application role")
    mig.add_argument("--owner-dsn", help="DSN of the schema owner (default $TENIR_OWNER_DSN); "
                     "never the nodes' DSN")
    mig.add_argument("--app-role", default=APP_USER,
                     help=f"the application role to grant (default {APP_USER}; '' for none)")
    db.set_defaults(func=cmd_db)
