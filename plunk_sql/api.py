"""The Python API: one method per SQL function, small frozen dataclasses back.

    from plunk_sql.api import Client

    with Client.connect("postgresql://plunk@db/plunk") as client:
        total = client.start(campaign_id)
        for r in client.claim(campaign_id, batch_size=500):
            ...
        print(client.progress(campaign_id))

A `Client` wraps a libpq URL (it opens and owns one connection), a caller's
psycopg `Connection`, or a `psycopg_pool.ConnectionPool` (one pooled connection
per call). Each call is one transaction: on an autocommit connection or a pool
it commits when the call returns; on a caller's connection inside an open
transaction it joins it (as a savepoint) and the caller commits.

PostgreSQL errors the SQL functions document are raised as the exceptions of
plunk_sql.errors (NotFound, IllegalTransition, InvalidCondition, ...); any
other database error propagates unchanged. The SQL lives in queries.sql.

`AsyncClient` offers the same calls for asyncio (psycopg.AsyncConnection or
psycopg_pool.AsyncConnectionPool). Both are built from one definition of each call (the
functions of `plunk_sql.calls`: the named query it runs, its parameters, how its rows become
the result), so they cannot drift: same methods, same results, same errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Generic, NoReturn, ParamSpec, TypeVar

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from plunk_sql import calls
from plunk_sql.calls import Call, Outcome, Progress, Recipient, SweepAction
from plunk_sql.connection import connect as _connect
from plunk_sql.connection import connect_kwargs
from plunk_sql.errors import from_pg
from plunk_sql.queries import query

__all__ = ["AsyncClient", "Client", "Outcome", "Progress", "Recipient", "SweepAction"]

P = ParamSpec("P")
T = TypeVar("T")


def _raise_mapped(exc: psycopg.Error) -> NoReturn:
    """Re-raise a database error as the toolkit's exception when it is one (plunk_sql.errors)."""
    mapped = from_pg(exc)
    if mapped is exc:
        raise exc
    raise mapped from exc


class _SyncCall(Generic[P, T]):
    """A Client method made from a call's definition."""

    def __init__(self, define: Callable[P, Call[T]]) -> None:
        self._define = define
        self.__doc__ = define.__doc__

    def __get__(self, client: Client | None, owner: type | None = None) -> Callable[P, T]:
        if client is None:
            return self._define  # type: ignore[return-value]  # class access: the definition
        define = self._define

        def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return client._run(define(*args, **kwargs))

        method.__doc__ = define.__doc__
        return method


class _AsyncCall(Generic[P, T]):
    """An AsyncClient method made from a call's definition."""

    def __init__(self, define: Callable[P, Call[T]]) -> None:
        self._define = define
        self.__doc__ = define.__doc__

    def __get__(
        self, client: AsyncClient | None, owner: type | None = None
    ) -> Callable[P, Awaitable[T]]:
        if client is None:
            return self._define  # type: ignore[return-value]
        define = self._define

        async def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return await client._run(define(*args, **kwargs))

        method.__doc__ = define.__doc__
        return method


class Client:
    """Typed access to the toolkit's SQL functions. See the module docstring."""

    def __init__(self, source: str | psycopg.Connection[Any] | ConnectionPool[Any]) -> None:
        self._owned: psycopg.Connection[Any] | None = None
        self._pool: ConnectionPool[Any] | None = None
        self._conn: psycopg.Connection[Any] | None = None
        if isinstance(source, str):
            # plunk_sql.connection: no server-side prepared statements unless
            # PLUNK_SQL_PREPARE_THRESHOLD says otherwise (PgBouncer transaction pooling).
            self._owned = self._conn = _connect(source, autocommit=True)
        elif isinstance(source, psycopg.Connection):
            self._conn = source
        elif isinstance(source, ConnectionPool):
            self._pool = source
        else:
            raise TypeError(
                "Client needs a database URL, a psycopg.Connection or a psycopg_pool.ConnectionPool"
            )

    @classmethod
    def connect(cls, url: str) -> Client:
        return cls(url)

    def close(self) -> None:
        """Close the connection the client opened itself (never a caller's)."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[DictRow]]:
        try:
            if self._pool is not None:
                with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                    yield cur
            else:
                assert self._conn is not None, "client is closed"
                with self._conn.transaction(), self._conn.cursor(row_factory=dict_row) as cur:
                    yield cur
        except psycopg.Error as exc:
            _raise_mapped(exc)

    def _run(self, call: Call[T]) -> T:
        with self._cursor() as cur:
            cur.execute(query(call.query), call.params)
            return call.result(cur.fetchall() if cur.description else [])

    start = _SyncCall(calls.start)
    preview = _SyncCall(calls.preview)
    claim = _SyncCall(calls.claim)
    message = _SyncCall(calls.message)
    progress = _SyncCall(calls.progress)
    all_progress = _SyncCall(calls.all_progress)
    outcomes = _SyncCall(calls.outcomes)
    sweep = _SyncCall(calls.sweep)
    pause = _SyncCall(calls.pause)
    resume = _SyncCall(calls.resume)
    cancel = _SyncCall(calls.cancel)
    repair = _SyncCall(calls.repair)
    release_claims = _SyncCall(calls.release_claims)
    repair_preview = _SyncCall(calls.repair_preview)
    legacy_stuck_campaigns = _SyncCall(calls.legacy_stuck_campaigns)


class AsyncClient:
    """The same calls as Client for asyncio: `await AsyncClient.connect(url)`,
    `AsyncClient(async_connection)` or `AsyncClient(async_pool)`; same results, same errors."""

    def __init__(
        self,
        source: psycopg.AsyncConnection[Any] | AsyncConnectionPool[Any],
        *,
        _owned: bool = False,
    ) -> None:
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._owned = _owned
        if isinstance(source, psycopg.AsyncConnection):
            self._conn = source
        elif isinstance(source, AsyncConnectionPool):
            self._pool = source
        else:
            raise TypeError(
                "AsyncClient needs a psycopg.AsyncConnection or a psycopg_pool.AsyncConnectionPool"
                " (or use `await AsyncClient.connect(url)`)"
            )

    @classmethod
    async def connect(cls, url: str) -> AsyncClient:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, **connect_kwargs())
        return cls(conn, _owned=True)

    async def close(self) -> None:
        if self._owned and self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def _cursor(self) -> AsyncIterator[psycopg.AsyncCursor[DictRow]]:
        try:
            if self._pool is not None:
                async with (
                    self._pool.connection() as conn,
                    conn.cursor(row_factory=dict_row) as cur,
                ):
                    yield cur
            else:
                assert self._conn is not None, "client is closed"
                async with (
                    self._conn.transaction(),
                    self._conn.cursor(row_factory=dict_row) as cur,
                ):
                    yield cur
        except psycopg.Error as exc:
            _raise_mapped(exc)

    async def _run(self, call: Call[T]) -> T:
        async with self._cursor() as cur:
            await cur.execute(query(call.query), call.params)
            return call.result(await cur.fetchall() if cur.description else [])

    start = _AsyncCall(calls.start)
    preview = _AsyncCall(calls.preview)
    claim = _AsyncCall(calls.claim)
    message = _AsyncCall(calls.message)
    progress = _AsyncCall(calls.progress)
    all_progress = _AsyncCall(calls.all_progress)
    outcomes = _AsyncCall(calls.outcomes)
    sweep = _AsyncCall(calls.sweep)
    pause = _AsyncCall(calls.pause)
    resume = _AsyncCall(calls.resume)
    cancel = _AsyncCall(calls.cancel)
    repair = _AsyncCall(calls.repair)
    release_claims = _AsyncCall(calls.release_claims)
    repair_preview = _AsyncCall(calls.repair_preview)
    legacy_stuck_campaigns = _AsyncCall(calls.legacy_stuck_campaigns)
