"""`plunk-sql migrate`: install or upgrade the toolkit."""

from __future__ import annotations

import argparse

from plunk_sql.commands.common import EXIT_OK, CommandFailed, database_url
from plunk_sql.migrate import MigrateRefused, migrate


def run(args: argparse.Namespace) -> int:
    try:
        result = migrate(database_url(args), with_plunk_tables=args.with_plunk_tables)
    except MigrateRefused as exc:
        raise CommandFailed(str(exc)) from exc
    if result.created_plunk_tables:
        print("created Plunk tables")
    if result.applied_migrations:
        print("applied migrations: " + ", ".join(result.applied_migrations))
    else:
        print("migrations: up to date")
    print(f"functions: {len(result.function_files)} files applied")
    if result.cron is not None:
        print(f"sweep: {result.cron.message}")
        for line in result.cron.psql:
            print(f"  {line}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("migrate", help="install or upgrade the toolkit in the database")
    p.add_argument(
        "--with-plunk-tables",
        action="store_true",
        help="on an empty database, first create the Plunk tables a campaign send uses",
    )
    p.set_defaults(func=run)
