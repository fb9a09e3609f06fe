"""How the toolkit opens PostgreSQL connections: one place for the prepare threshold.

psycopg 3 turns a query into a server-side prepared statement (`_pg3_0`, ...)
after it ran 5 times on one connection. Behind PgBouncer in transaction pooling
mode, a client's next transaction may run on another server connection, where
that statement is missing or (worse) already exists under the same name: the
worker then dies with `DuplicatePreparedStatement: prepared statement "_pg3_0"
already exists`. So the toolkit prepares nothing by default.

`PLUNK_SQL_PREPARE_THRESHOLD` is the one switch, read by the CLI, the worker
and `Client(url)`:

- unset, empty, `none` or `off`: no server-side prepared statements (the
  default; works through any pooler);
- an integer N >= 0: psycopg's `prepare_threshold=N` (prepare a query after N
  executions; 0 prepares at once). For direct connections, or PgBouncer 1.21+
  with `max_prepared_statements` set.

Code that brings its own connection or pool passes `**connect_kwargs()` (or
`kwargs=connect_kwargs()` to a psycopg_pool pool) to get the same behaviour.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg

PREPARE_THRESHOLD_ENV = "PLUNK_SQL_PREPARE_THRESHOLD"
_OFF = ("", "none", "off", "no", "false")


class ConfigError(ValueError):
    """A connection setting from the environment that cannot be used."""


def prepare_threshold() -> int | None:
    """The prepare threshold from PLUNK_SQL_PREPARE_THRESHOLD (None: never prepare).

    Raises ConfigError for a value that is neither off nor an integer >= 0."""
    raw = os.environ.get(PREPARE_THRESHOLD_ENV, "").strip().lower()
    if raw in _OFF:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{PREPARE_THRESHOLD_ENV} must be 'none' or an integer >= 0, got {raw!r}")
    return value


def connect_kwargs() -> dict[str, Any]:
    """Keyword arguments for psycopg.connect / a pool's `kwargs=`: the prepare threshold."""
    return {"prepare_threshold": prepare_threshold()}


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """psycopg.connect with the toolkit's connection settings (explicit kwargs win)."""
    return psycopg.connect(url, **(connect_kwargs() | kwargs))
