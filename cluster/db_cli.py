"""``tenir db ...``: the campaign store's database, as the deployment creates and migrates it.

- ``tenir db setup`` creates the schema owner's role, the application's role and the database if
  missing (and sets the roles' passwords), connecting as the database superuser.
- ``tenir db migrate`` applies the schema migrations as the schema owner, then grants the
  application role what it may do (DML; on the continuity ledger only SELECT and INSERT). Alert
  nodes never migrate: their role cannot, and they refuse to start on a schema that lacks a
  migration their code ships (they retry, so a node started before the migration waits for it).

Secrets come from the environment, never from the command line, so that they show in no process
listing. The tenir_node role runs both once per deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from replication.appdb import APP_USER

ENV_SUPERUSER_DSN = "TENIR_DB_SUPERUSER_DSN"
ENV_APP_PASSWORD = "TENIR_DB_APP_PASSWORD"  # noqa: S105 - a variable's name
ENV_OWNER_PASSWORD = "TENIR_DB_OWNER_PASSWORD"  # noqa: S105 - a variable's name
ENV_OWNER_DSN = "TENIR_OWNER_DSN"


def _setup() -> int:
    from replication.appdb import ensure_app_database

    names = (ENV_SUPERUSER_DSN, ENV_APP_PASSWORD, ENV_OWNER_PASSWORD)
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        print(f"tenir db setup: set {' and '.join(missing)} in the environment", file=sys.stderr)
        return 2
    created = ensure_app_database(os.environ[ENV_SUPERUSER_DSN], os.environ[ENV_APP_PASSWORD],
                                  os.environ[ENV_OWNER_PASSWORD])
    print("created the roles and the database" if created
          else "the roles and the database exist (unchanged)")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from replication.migrate import migrate

    owner_dsn = args.owner_dsn or os.environ.get(ENV_OWNER_DSN)
    if not owner_dsn:
        print(f"tenir db migrate: give --owner-dsn or ${ENV_OWNER_DSN} (the schema owner's DSN, "
              "e.g. 'host=... dbname=tenir user=tenir_owner password=...')", file=sys.stderr)
        return 2
    applied = asyncio.run(migrate(owner_dsn, app_role=args.app_role or None))
    print(f"applied: {', '.join(applied)}" if applied else "schema up to date")
    if args.app_role:
        print(f"granted role {args.app_role}: DML; ledger and checkpoints SELECT and INSERT only")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    return _setup() if args.db_command == "setup" else _migrate(args)


def add_parsers(sub: Any) -> None:
    db = sub.add_parser("db", help="the campaign store's database (used by the deployment)")
    dsub = db.add_subparsers(dest="db_command", required=True)
    dsub.add_parser("setup", help=f"create the roles and the database if missing (secrets from "
                                  f"${ENV_SUPERUSER_DSN}, ${ENV_APP_PASSWORD}, "
                                  f"${ENV_OWNER_PASSWORD})")
    mig = dsub.add_parser("migrate", help="apply the migrations as the schema owner and grant "
                          "the application role")
    mig.add_argument("--owner-dsn", help=f"DSN of the schema owner (default ${ENV_OWNER_DSN}); "
                     "never the nodes' DSN")
    mig.add_argument("--app-role", default=APP_USER,
                     help=f"the application role to grant (default {APP_USER}; '' for none)")
    db.set_defaults(func=cmd_db)
