"""Shared pieces of the CLI: exit codes and the database URL."""

from __future__ import annotations

import argparse
import os
import sys

EXIT_OK = 0
EXIT_ERROR = 1  # the operation failed (a database error, a refused transition)
EXIT_USAGE = 2  # bad arguments or missing configuration


def database_url(args: argparse.Namespace) -> str:
    url = getattr(args, "database_url", None) or os.environ.get("DATABASE_URL")
    if not url:
        print("plunk-sql: no database: pass --database-url or set DATABASE_URL", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    return url


EXIT_NOT_FOUND = 3  # unknown campaign (SQLSTATE P0002)
EXIT_ILLEGAL_STATE = 4  # the campaign's state does not allow it (SQLSTATE 55000)


def exit_code(exc: BaseException) -> int:
    """The exit code for an error of plunk_sql.errors (or any other)."""
    from plunk_sql.errors import IllegalTransition, NotFound

    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, IllegalTransition):
        return EXIT_ILLEGAL_STATE
    return EXIT_ERROR


def fail(command: str, exc: BaseException) -> int:
    """Print `plunk-sql COMMAND: message (SQLSTATE)` to stderr; return its exit code."""
    state = getattr(exc, "sqlstate", None)
    print(f"plunk-sql {command}: {exc}" + (f" ({state})" if state else ""), file=sys.stderr)
    return exit_code(exc)
