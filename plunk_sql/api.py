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
psycopg_pool.AsyncConnectionPool).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from plunk_sql.connection import connect as _connect
from plunk_sql.connection import connect_kwargs
from plunk_sql.errors import from_pg
from plunk_sql.queries import query

try:  # psycopg_pool is a dependency, but keep the import cheap to fail
    from psycopg_pool import AsyncConnectionPool, ConnectionPool
except ImportError:  # pragma: no cover
    AsyncConnectionPool = ConnectionPool = None  # type: ignore[assignment,misc]


@dataclass(frozen=True)
class Recipient:
    """A claimed recipient (a row of plunk_sql.claim_batch)."""

    contact_id: str
    email: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Progress:
    """A row of plunk_sql.campaign_progress."""

    campaign_id: str
    status: str
    paused: bool
    total: int
    pending: int
    claimed: int
    in_flight: int
    sent: int
    failed: int
    skipped: int
    started_at: datetime
    finished_at: datetime | None

    @property
    def settled(self) -> int:
        return self.sent + self.failed + self.skipped

    @property
    def open(self) -> int:
        return self.pending + self.claimed + self.in_flight

    @property
    def finished(self) -> bool:
        return self.open == 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO-8601 strings."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key in ("started_at", "finished_at"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


@dataclass(frozen=True)
class Outcome:
    """A row of plunk_sql.recipient_outcomes: recipients per state and reason."""

    state: str
    reason: str | None
    recipients: int


@dataclass(frozen=True)
class SweepAction:
    """A row of plunk_sql.sweep(): what one sweep did to one campaign."""

    action: str
    campaign_id: str | None
    affected: int


class Client:
    """Typed access to the toolkit's SQL functions. See the module docstring."""

    def __init__(self, source: str | psycopg.Connection | Any) -> None:
        self._owned: psycopg.Connection | None = None
        self._pool = None
        self._conn: psycopg.Connection | None = None
        if isinstance(source, str):
            # plunk_sql.connection: no server-side prepared statements unless
            # PLUNK_SQL_PREPARE_THRESHOLD says otherwise (PgBouncer transaction pooling).
            self._owned = self._conn = _connect(source, autocommit=True)
        elif isinstance(source, psycopg.Connection):
            self._conn = source
        elif ConnectionPool is not None and isinstance(source, ConnectionPool):
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

    # -- plumbing ---------------------------------------------------------

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor]:
        try:
            if self._pool is not None:
                with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                    yield cur
            else:
                assert self._conn is not None, "client is closed"
                with self._conn.transaction(), self._conn.cursor(row_factory=dict_row) as cur:
                    yield cur
        except psycopg.Error as exc:
            mapped = from_pg(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _one(self, name: str, **params: Any) -> dict[str, Any] | None:
        with self._cursor() as cur:
            cur.execute(query(name), params)
            return cur.fetchone()

    def _all(self, name: str, **params: Any) -> list[dict[str, Any]]:
        with self._cursor() as cur:
            cur.execute(query(name), params)
            return cur.fetchall()

    # -- sending ----------------------------------------------------------

    def start(self, campaign_id: str) -> int:
        """plunk_sql.start_campaign: snapshot the audience, set SENDING; the snapshot size.

        Idempotent. Raises NotFound, IllegalTransition (not DRAFT/SCHEDULED),
        InvalidCondition (bad audience), NullArgument.
        """
        row = self._one("start_campaign", campaign_id=campaign_id)
        assert row is not None
        return int(row["total"])

    def preview(self, campaign_id: str) -> int:
        """plunk_sql.preview_audience: how many contacts a start would snapshot now."""
        row = self._one("preview_audience", campaign_id=campaign_id)
        assert row is not None
        return int(row["recipients"])

    def claim(
        self,
        campaign_id: str,
        batch_size: int = 500,
        lease: timedelta = timedelta(minutes=5),
    ) -> list[Recipient]:
        """plunk_sql.claim_batch: up to batch_size recipients under a lease (committed claim).

        Empty when the campaign is not SENDING, paused, or has nothing pending.
        """
        rows = self._all("claim_batch", campaign_id=campaign_id, batch_size=batch_size, lease=lease)
        return [Recipient(r["contact_id"], r["email"], r["data"] or {}) for r in rows]

    # -- reading ----------------------------------------------------------

    def message(self, campaign_id: str) -> dict[str, Any]:
        """plunk_sql.campaign_message: id, subject, body, from_address, from_name, reply_to and
        project_id of a campaign plunk_sql is sending (a worker's only read of campaigns).

        Raises NotFound, IllegalTransition (not a SENDING toolkit campaign), NullArgument.
        """
        row = self._one("campaign_message", campaign_id=campaign_id)
        assert row is not None
        return row

    def progress(self, campaign_id: str) -> Progress | None:
        """The campaign_progress row, or None when the toolkit did not start the campaign."""
        row = self._one("campaign_progress", campaign_id=campaign_id)
        return Progress(**row) if row else None

    def all_progress(self) -> list[Progress]:
        """campaign_progress for every campaign the toolkit started, newest first."""
        return [Progress(**r) for r in self._all("all_campaign_progress")]

    def outcomes(self, campaign_id: str) -> list[Outcome]:
        """recipient_outcomes of a campaign: counts per state and reason."""
        return [Outcome(**r) for r in self._all("recipient_outcomes", campaign_id=campaign_id)]

    # -- operating --------------------------------------------------------

    def sweep(self) -> list[SweepAction]:
        """plunk_sql.sweep(): expire leases, abandon stuck emails, finish campaigns."""
        return [SweepAction(**r) for r in self._all("sweep")]

    def pause(self, campaign_id: str) -> None:
        """plunk_sql.pause_campaign: claims return nothing until resume."""
        self._one("pause_campaign", campaign_id=campaign_id)

    def resume(self, campaign_id: str) -> None:
        """plunk_sql.resume_campaign."""
        self._one("resume_campaign", campaign_id=campaign_id)

    def cancel(self, campaign_id: str) -> str:
        """plunk_sql.cancel_campaign: settle what is open; the resulting campaign status."""
        row = self._one("cancel_campaign", campaign_id=campaign_id)
        assert row is not None
        return str(row["status"])

    def repair(self, campaign_id: str) -> str:
        """plunk_sql.repair_campaign: finish a stuck campaign; what it did."""
        row = self._one("repair_campaign", campaign_id=campaign_id)
        assert row is not None
        return str(row["status"])

    def release_claims(
        self, campaign_id: str, contact_ids: list[str], email_ids: list[str]
    ) -> tuple[int, int]:
        """plunk_sql.release_claims: a stopping worker hands back its claims in force and its
        emails never given to SMTP (deleted); (recipients released, emails deleted)."""
        row = self._one(
            "release_claims", campaign_id=campaign_id, contact_ids=contact_ids, email_ids=email_ids
        )
        assert row is not None
        return int(row["released"]), int(row["deleted"])

    def repair_preview(self, campaign_id: str) -> dict[str, Any] | None:
        """What repair_campaign would do (read-only): status, toolkit, total_recipients,
        sent_count, created, sent, open; None for an unknown campaign."""
        return self._one("repair_preview", campaign_id=campaign_id)

    def legacy_stuck_campaigns(self) -> list[str]:
        """Ids of campaigns stuck SENDING without a snapshot (plunk_sql.stuck_campaigns)."""
        return [str(r["campaign_id"]) for r in self._all("legacy_stuck_campaigns")]


class AsyncClient:
    """The same calls as Client for asyncio: `await AsyncClient.connect(url)`,
    `AsyncClient(async_connection)` or `AsyncClient(async_pool)`; same results, same errors."""

    def __init__(self, source: psycopg.AsyncConnection | Any, *, _owned: bool = False) -> None:
        self._conn: psycopg.AsyncConnection | None = None
        self._pool = None
        self._owned = _owned
        if isinstance(source, psycopg.AsyncConnection):
            self._conn = source
        elif AsyncConnectionPool is not None and isinstance(source, AsyncConnectionPool):
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

    async def _fetch(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            if self._pool is not None:
                async with self._pool.connection() as conn:
                    cur = conn.cursor(row_factory=dict_row)
                    await cur.execute(query(name), params)
                    return await cur.fetchall()
            assert self._conn is not None, "client is closed"
            async with self._conn.transaction():
                cur = self._conn.cursor(row_factory=dict_row)
                await cur.execute(query(name), params)
                return await cur.fetchall()
        except psycopg.Error as exc:
            mapped = from_pg(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def start(self, campaign_id: str) -> int:
        return int((await self._fetch("start_campaign", {"campaign_id": campaign_id}))[0]["total"])

    async def preview(self, campaign_id: str) -> int:
        rows = await self._fetch("preview_audience", {"campaign_id": campaign_id})
        return int(rows[0]["recipients"])

    async def claim(
        self, campaign_id: str, batch_size: int = 500, lease: timedelta = timedelta(minutes=5)
    ) -> list[Recipient]:
        params = {"campaign_id": campaign_id, "batch_size": batch_size, "lease": lease}
        rows = await self._fetch("claim_batch", params)
        return [Recipient(r["contact_id"], r["email"], r["data"] or {}) for r in rows]

    async def progress(self, campaign_id: str) -> Progress | None:
        rows = await self._fetch("campaign_progress", {"campaign_id": campaign_id})
        return Progress(**rows[0]) if rows else None

    async def all_progress(self) -> list[Progress]:
        return [Progress(**r) for r in await self._fetch("all_campaign_progress", {})]

    async def outcomes(self, campaign_id: str) -> list[Outcome]:
        rows = await self._fetch("recipient_outcomes", {"campaign_id": campaign_id})
        return [Outcome(**r) for r in rows]

    async def sweep(self) -> list[SweepAction]:
        return [SweepAction(**r) for r in await self._fetch("sweep", {})]

    async def pause(self, campaign_id: str) -> None:
        await self._fetch("pause_campaign", {"campaign_id": campaign_id})

    async def resume(self, campaign_id: str) -> None:
        await self._fetch("resume_campaign", {"campaign_id": campaign_id})

    async def cancel(self, campaign_id: str) -> str:
        rows = await self._fetch("cancel_campaign", {"campaign_id": campaign_id})
        return str(rows[0]["status"])

    async def repair(self, campaign_id: str) -> str:
        rows = await self._fetch("repair_campaign", {"campaign_id": campaign_id})
        return str(rows[0]["status"])
