"""plunk-sql: campaign sending for Plunk, inside PostgreSQL."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from plunk_sql import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plunk-sql", description=__doc__)
    parser.add_argument("--version", action="version", version=f"plunk-sql {__version__}")
    parser.add_argument(
        "--database-url", help="libpq URL or conninfo of Plunk's database (default: $DATABASE_URL)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
