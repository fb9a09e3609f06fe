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
