"""``tenir db ...``: the application's database, as the deployment creates it.

``tenir db setup`` creates the application's role and database on the primary if missing (and
sets the role's password), connecting as the database superuser. It reads both secrets from the
environment (``TENIR_DB_SUPERUSER_DSN``, ``TENIR_DB_APP_PASSWORD``), never from its command line,
so that they show in no process listing. The tenir_node role runs it once per deployment.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

ENV_SUPERUSER_DSN = "TENIR_DB_SUPERUSER_DSN"
ENV_APP_PASSWORD = "TENIR_DB_APP_PASSWORD"  # noqa: S105 - a variable's name


def cmd_db(args: argparse.Namespace) -> int:
    from replication.appdb import ensure_app_database

    missing = [n for n in (ENV_SUPERUSER_DSN, ENV_APP_PASSWORD) if not os.environ.get(n)]
    if missing:
        print(f"tenir db setup: set {' and '.join(missing)} in the environment", file=sys.stderr)
        return 2
    created = ensure_app_database(os.environ[ENV_SUPERUSER_DSN], os.environ[ENV_APP_PASSWORD])
    print("created the application's role and database" if created
          else "the application's role and database exist (unchanged)")
    return 0


def add_parsers(sub: Any) -> None:
    db = sub.add_parser("db", help="the application's database (used by the deployment)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("setup", help=f"create the application's role and database if missing "
                                    f"(secrets from ${ENV_SUPERUSER_DSN}, ${ENV_APP_PASSWORD})")
    db.set_defaults(func=cmd_db)
