"""The `plunk-sql` command line."""

from __future__ import annotations

import argparse
import os
import sys

from plunk_sql import __version__
from plunk_sql.migrate import PlunkTablesMissing, migrate

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _database_url(args: argparse.Namespace) -> str:
    url = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        print("plunk-sql: no database: pass --database-url or set DATABASE_URL", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    return url


def cmd_migrate(args: argparse.Namespace) -> int:
    try:
        result = migrate(_database_url(args), with_plunk_tables=args.with_plunk_tables)
    except PlunkTablesMissing as exc:
        print(f"plunk-sql migrate: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if result.created_plunk_tables:
        print("created Plunk tables")
    if result.applied_migrations:
        print("applied migrations: " + ", ".join(result.applied_migrations))
    else:
        print("migrations: up to date")
    print(f"functions: {len(result.function_files)} files applied")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plunk-sql", description=__doc__)
    parser.add_argument("--version", action="version", version=f"plunk-sql {__version__}")
    parser.add_argument(
        "--database-url", help="libpq URL or conninfo of Plunk's database (default: $DATABASE_URL)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="install or upgrade the toolkit in the database")
    p.add_argument(
        "--with-plunk-tables",
        action="store_true",
        help="on an empty database, first create the Plunk tables a campaign send uses",
    )
    p.set_defaults(func=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
