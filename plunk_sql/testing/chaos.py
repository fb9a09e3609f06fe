"""Chaos run: one campaign sent by several worker processes while faults are injected.

`python -m plunk_sql.testing.chaos --recipients 100000 --workers 8` (`make stress`) starts its own
throwaway cluster (fsync on, so an immediate shutdown is a real crash), migrates it, snapshots
a campaign and sends it with worker processes that speak SQL directly:

    claim_batch -> INSERT emails (PENDING) -> UPDATE SENDING -> UPDATE SENT + outbox row

The "SMTP send" is a row in `chaos.outbox` written in the same statement that sets the email
SENT (a transactional outbox), so a message counts as mailed exactly when its SENT commits.
Meanwhile a driver SIGKILLs workers (and starts replacements), terminates random backends,
unsubscribes, edits and deletes contacts that are still pending, pauses and resumes the
campaign, runs sweeps concurrently, and restarts PostgreSQL once with `-m immediate`.

Beside the main campaign the same workers send a few smaller ones that the driver cancels the
way Plunk's own code does (issue 13), one per shape, with Plunk's statements: CANCELLED with
the unsent emails kept, CANCELLED with them deleted, and CANCELLED then back to DRAFT (when no
email of it was stamped sent); a campaign back in DRAFT is started again and must really send.

At the end everything is checked from the rows (see `verify`), figures are printed, and the
exit status is 1 when any violation was found.

Consent is checked exactly, not by clocks: every opt-out records its transaction id, every
claim the snapshot it ran in (`pg_current_snapshot()` in the claiming statement), and a
violation is a mailed contact whose opt-out was visible to the claim that handed it out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from plunk_sql.migrate import migrate

if TYPE_CHECKING:
    from collections.abc import Callable

    from plunk_sql.testing.cluster import Cluster

CHAOS_DDL = """
CREATE SCHEMA IF NOT EXISTS chaos;
-- Every batch a claim handed out, with the snapshot the claim ran in.
CREATE TABLE IF NOT EXISTS chaos.claim_log (
    contact_id text NOT NULL,
    worker text NOT NULL,
    snap pg_snapshot NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Every opt-out (unsubscribe, delete) with its transaction id.
CREATE TABLE IF NOT EXISTS chaos.opt_out (
    contact_id text NOT NULL,
    kind text NOT NULL,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- The "SMTP" side: one row per message handed to the mail server.
CREATE TABLE IF NOT EXISTS chaos.outbox (
    email_id text NOT NULL,
    contact_id text NOT NULL,
    worker text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    campaign_id text
);
-- Plunk-style cancels the driver made: when the cancel committed (UTC, as "createdAt"), its
-- shape, the status it left, and when a campaign back in DRAFT was started again.
CREATE TABLE IF NOT EXISTS chaos.plunk_cancels (
    campaign_id text PRIMARY KEY,
    shape text NOT NULL,
    cancelled_at timestamp NOT NULL,
    result text,
    restarted_at timestamp
);
"""

WORKER_APP = "chaos-worker"


# --------------------------------------------------------------------------- worker


def _scalar(conn: psycopg.Connection[Any], sql: Any, params: Any = None) -> Any:
    """The first column of the one row `sql` returns."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None, sql
    return row[0]


def _fails(email_id: str) -> bool:
    """About 1% of messages bounce at the SMTP stage (deterministic per email)."""
    return zlib.crc32(email_id.encode()) % 100 == 0


def _settle(conn: psycopg.Connection, email_ids: list[str], worker: str) -> None:
    """SMTP + final status in one statement: the outbox row exists iff the email went SENT."""
    if not email_ids:
        return
    conn.execute(
        "WITH u AS ("
        "  UPDATE public.emails AS e"
        "  SET status = (CASE WHEN f.fails THEN 'FAILED' ELSE 'SENT' END)::\"EmailStatus\","
        "      \"sentAt\" = CASE WHEN f.fails THEN NULL ELSE timezone('UTC', now()) END,"
        '      "messageId" = CASE WHEN f.fails THEN NULL ELSE gen_random_uuid()::text END,'
        "      error = CASE WHEN f.fails THEN 'smtp 550 mailbox unavailable' END,"
        "      \"updatedAt\" = timezone('UTC', now())"
        "  FROM unnest(%s::text[], %s::boolean[]) AS f(id, fails)"
        "  WHERE e.id = f.id AND e.status::text IN ('PENDING', 'SENDING') AND e.\"sentAt\" IS NULL"
        '  RETURNING e.id, e."contactId", e."campaignId", e.status::text AS status'
        ") INSERT INTO chaos.outbox (email_id, contact_id, worker, campaign_id)"
        ' SELECT u.id, u."contactId", %s, u."campaignId" FROM u WHERE u.status = \'SENT\'',
        (email_ids, [_fails(i) for i in email_ids], worker),
    )


def _insert_emails(
    conn: psycopg.Connection, campaign: str, project: str, contacts: list[str]
) -> list[str]:
    """One INSERT for the batch; when it is refused (a contact deleted meanwhile, a recipient
    whose lease expired and was claimed again), fall back to one row at a time."""
    sql = (
        'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
        ' "campaignId", "projectId", "createdAt", "updatedAt")'
        " SELECT gen_random_uuid()::text, k, 'Hello', '<p>Hi</p>', 'news@example.com', 'CAMPAIGN',"
        " %s, %s, timezone('UTC', now()), timezone('UTC', now()) FROM unnest(%s::text[]) AS k"
        ' RETURNING id, "contactId"'
    )
    try:
        rows = conn.execute(sql, (campaign, project, contacts)).fetchall()
        return [r[0] for r in rows]
    except psycopg.errors.OperationalError:
        raise
    except psycopg.Error as exc:
        if exc.sqlstate not in ("23505", "23503", "55000"):
            raise
    ids: list[str] = []
    for contact in contacts:
        try:
            row = conn.execute(sql, (campaign, project, [contact])).fetchone()
            if row:
                ids.append(row[0])
        except psycopg.errors.OperationalError:
            raise
        except psycopg.Error as exc:
            if exc.sqlstate not in ("23505", "23503", "55000"):
                raise
    return ids


def worker_main(url: str, campaigns: str, project: str, batch: int, lease: str) -> int:
    """campaigns: comma-separated ids; each round works on one of them, drawn at random."""
    name = f"{WORKER_APP}-{os.getpid()}"
    rnd = random.Random()
    all_campaigns = campaigns.split(",")
    conn: psycopg.Connection | None = None
    iteration = 0
    while True:
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(
                    url, autocommit=True, application_name=name, connect_timeout=5
                )
            campaign = rnd.choice(all_campaigns)
            rows = conn.execute(
                "INSERT INTO chaos.claim_log (contact_id, worker, snap)"
                " SELECT c.contact_id, %s, pg_current_snapshot()"
                " FROM plunk_sql.claim_batch(%s, %s, %s::interval) AS c"
                " RETURNING contact_id",
                (name, campaign, batch, lease),
            ).fetchall()
            iteration += 1
            if not rows or iteration % 10 == 0:
                # Drive emails whose worker died (the job queue's retry): now and then, and
                # whenever there is nothing to claim.
                stale = conn.execute(
                    'SELECT id FROM public.emails WHERE "campaignId" = ANY(%s)'
                    " AND status::text IN ('PENDING', 'SENDING')"
                    " AND \"updatedAt\" < timezone('UTC', now()) - interval '3 seconds'"
                    " ORDER BY id LIMIT 200",
                    (all_campaigns,),
                ).fetchall()
                _settle(conn, [r[0] for r in stale], name)
            if not rows:
                # Done when no campaign sends (DRAFT: about to be restarted) and no email of a
                # cancelled one is left for the job queue to drive.
                busy = _scalar(
                    conn,
                    "SELECT EXISTS (SELECT 1 FROM public.campaigns WHERE id = ANY(%s)"
                    " AND status::text IN ('SENDING', 'DRAFT'))"
                    ' OR EXISTS (SELECT 1 FROM public.emails WHERE "campaignId" = ANY(%s)'
                    " AND status::text IN ('PENDING', 'SENDING'))",
                    (all_campaigns, all_campaigns),
                )
                if not busy:
                    return 0
                time.sleep(0.1 + rnd.random() * 0.2)
                continue
            ids = _insert_emails(conn, campaign, project, [r[0] for r in rows])
            conn.execute(
                "UPDATE public.emails SET status = 'SENDING', \"updatedAt\" = timezone('UTC', now())"
                " WHERE id = ANY(%s) AND status::text = 'PENDING'",
                (ids,),
            )
            _settle(conn, ids, name)
        except psycopg.OperationalError:
            # Backend terminated, server restarting: reconnect and carry on.
            with contextlib.suppress(Exception):
                if conn is not None:
                    conn.close()
            conn = None
            time.sleep(0.2 + rnd.random() * 0.3)


# --------------------------------------------------------------------------- driver


@dataclass
class Faults:
    worker_kills: int = 0
    backend_terminations: int = 0
    unsubscribes: int = 0
    edits: int = 0
    deletes: int = 0
    pauses: int = 0
    sweeps: int = 0
    concurrent_sweep_rounds: int = 0
    restarts: int = 0
    # Plunk's own cancel (issue 13), one campaign per shape, and restarts of those back in DRAFT.
    plunk_cancels: int = 0
    plunk_drafts_restarted: int = 0
    # Not injected: workers that died on their own (an unexpected error). Should stay 0.
    worker_crashes: int = 0


@dataclass
class Report:
    recipients: int
    workers: int
    seconds: float = 0.0
    status: str = ""
    faults: Faults = field(default_factory=Faults)
    outcomes: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    emails: int = 0
    mailed: int = 0
    claims_handed_out: int = 0
    opted_out: dict[str, int] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)
    # Plunk-style cancels: shape -> "result of the cancel (status at the end)".
    plunk_cancels: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def text(self) -> str:
        lines = [
            f"chaos run: {self.recipients} recipients, {self.workers} workers, "
            f"{self.seconds:.1f} s, campaign {self.status}",
            "faults injected: " + ", ".join(f"{k}={v}" for k, v in asdict(self.faults).items()),
            "outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items())),
            "reasons: " + ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())),
            f"emails rows={self.emails}, messages mailed={self.mailed}, "
            f"recipients handed out by claims={self.claims_handed_out}",
            "contacts opted out during the send: "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.opted_out.items())),
            "plunk cancels: "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.plunk_cancels.items())),
            "violations: " + ", ".join(f"{k}={v}" for k, v in self.violations.items()),
            "RESULT: " + ("OK, no violations" if self.ok else "VIOLATIONS FOUND"),
        ]
        return "\n".join(lines)


def has_function(conn: psycopg.Connection, signature: str) -> bool:
    return bool(_scalar(conn, "SELECT to_regprocedure(%s) IS NOT NULL", (signature,)))


# "draft" first: cancelled before the workers start, so before any of its mail left (as
# Plunk then returns it to DRAFT).
PLUNK_CANCEL_SHAPES = ("draft", "kept", "deleted")


def setup(url: str, recipients: int) -> tuple[str, str, list[str]]:
    """Plunk tables + toolkit + chaos tables, `recipients` contacts, one started campaign,
    and one smaller started campaign per Plunk cancel shape (returned in PLUNK_CANCEL_SHAPES
    order)."""
    migrate(url, with_plunk_tables=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CHAOS_DDL)
        project = str(uuid.uuid4())
        conn.execute(
            'INSERT INTO public.projects (id, name, public, secret, "updatedAt")'
            " VALUES (%s, 'chaos', %s, %s, timezone('UTC', now()))",
            (project, str(uuid.uuid4()), str(uuid.uuid4())),
        )
        conn.execute(
            'INSERT INTO public.contacts (id, email, data, "projectId", "updatedAt")'
            " SELECT 'c-' || lpad(i::text, 7, '0'), 'c' || i || '@example.com',"
            " jsonb_build_object('n', i), %s, timezone('UTC', now())"
            " FROM generate_series(1, %s) AS i",
            (project, recipients),
        )
        campaign = str(uuid.uuid4())
        conn.execute(
            'INSERT INTO public.campaigns (id, name, subject, body, "from", "projectId", "updatedAt")'
            " VALUES (%s, 'chaos', 'Hello', '<p>Hi</p>', 'news@example.com', %s,"
            " timezone('UTC', now()))",
            (campaign, project),
        )
        total = _scalar(conn, "SELECT plunk_sql.start_campaign(%s)", (campaign,))
        assert total == recipients, (total, recipients)
        targets = []
        size = max(20, min(500, recipients // 10))
        for shape in PLUNK_CANCEL_SHAPES:
            target = str(uuid.uuid4())
            conn.execute(
                'INSERT INTO public.campaigns (id, name, subject, body, "from", "projectId",'
                ' "audienceType", "audienceCondition", "updatedAt")'
                " VALUES (%s, %s, 'Hi', '<p>Hi</p>', 'news@example.com', %s, 'FILTERED', %s,"
                " timezone('UTC', now()))",
                (
                    target,
                    f"chaos plunk cancel {shape}",
                    project,
                    json.dumps(
                        {
                            "logic": "AND",
                            "groups": [
                                {
                                    "filters": [
                                        {
                                            "field": "data.n",
                                            "operator": "lessThan",
                                            "value": size + 1,
                                        }
                                    ]
                                }
                            ],
                        }
                    ),
                ),
            )
            conn.execute("SELECT plunk_sql.start_campaign(%s)", (target,))
            targets.append(target)
        if has_function(conn, "plunk_sql.sweep()"):
            # Killed workers leave claims and emails behind: short timeouts so the run ends.
            with contextlib.suppress(psycopg.Error):
                conn.execute(
                    "UPDATE plunk_sql.settings SET value = '60 seconds' WHERE key = 'abandon_timeout'"
                )
    return project, campaign, targets


class Driver:
    def __init__(
        self,
        cluster: Cluster,
        url: str,
        campaign: str,
        project: str,
        *,
        workers: int,
        batch: int,
        lease: str,
        restart: bool,
        seed: int,
        timeout: float,
        fault_rate: float = 1.0,
        log: Callable[[str], object] = print,
        cancel_targets: list[str] | None = None,
    ) -> None:
        self.fault_rate = fault_rate
        # Campaigns cancelled the way Plunk does, one per shape of PLUNK_CANCEL_SHAPES.
        self.cancel_targets = list(cancel_targets or [])
        self.cancel_pending = list(zip(self.cancel_targets, PLUNK_CANCEL_SHAPES, strict=False))
        self.cluster = cluster
        self.url = url
        self.campaign = campaign
        self.project = project
        self.n_workers = workers
        self.batch = batch
        self.lease = lease
        self.restart_pending = restart
        self.rnd = random.Random(seed)
        self.timeout = timeout
        self.faults = Faults()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = log
        self.total = 0

    # -- processes
    def spawn(self) -> None:
        campaigns = ",".join([self.campaign, *self.cancel_targets])
        cmd = [sys.executable, "-m", "plunk_sql.testing.chaos", "worker", self.url, campaigns,
               self.project, str(self.batch), self.lease]  # fmt: skip
        self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))

    def reap(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=10)

    # -- connections
    def connect(self) -> psycopg.Connection:
        deadline = time.monotonic() + 60
        while True:
            try:
                return psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def progress(self, conn: psycopg.Connection) -> tuple[str, int, bool]:
        row = conn.execute(
            "SELECT status, sent + failed + skipped, paused FROM plunk_sql.campaign_progress"
            " WHERE campaign_id = %s",
            (self.campaign,),
        ).fetchone()
        assert row is not None
        return row[0], row[1], row[2]

    def respawn_crashed(self) -> None:
        for p in list(self.procs):
            code = p.poll()
            if code is not None:
                self.procs.remove(p)
                if code != 0:
                    self.faults.worker_crashes += 1
                self.spawn()

    def sweep(self, conn: psycopg.Connection) -> None:
        if self.has_sweep:
            conn.execute("SELECT * FROM plunk_sql.sweep()").fetchall()
        else:
            # Stand-in until plunk_sql.sweep exists: expired leases back to pending.
            conn.execute(
                "UPDATE plunk_sql.recipients SET state = 'pending', lease_expires_at = NULL"
                " WHERE state = 'claimed' AND lease_expires_at < now()"
            )
        self.faults.sweeps += 1

    # -- faults
    def pending_contacts(self, conn: psycopg.Connection, n: int) -> list[str]:
        # From the far end of the claim order, so the faults hit contacts not yet claimed.
        rows = conn.execute(
            "SELECT r.contact_id FROM plunk_sql.recipients AS r"
            " JOIN public.contacts AS k ON k.id = r.contact_id AND k.subscribed"
            " WHERE r.campaign_id = %s AND r.state = 'pending'"
            " ORDER BY r.contact_id DESC LIMIT %s",
            (self.campaign, n * 200),
        ).fetchall()
        ids = [r[0] for r in rows]
        return self.rnd.sample(ids, min(n, len(ids)))

    def unsubscribe(self, conn: psycopg.Connection) -> None:
        ids = self.pending_contacts(conn, self.rnd.randint(1, 5))
        if not ids:
            return
        with conn.transaction():
            conn.execute(
                "UPDATE public.contacts SET subscribed = false, \"updatedAt\" = timezone('UTC', now())"
                " WHERE id = ANY(%s)",
                (ids,),
            )
            conn.execute(
                "INSERT INTO chaos.opt_out (contact_id, kind) SELECT unnest(%s::text[]), 'unsubscribed'",
                (ids,),
            )
        self.faults.unsubscribes += len(ids)

    def edit(self, conn: psycopg.Connection) -> None:
        ids = self.pending_contacts(conn, self.rnd.randint(1, 5))
        if ids:
            conn.execute(
                "UPDATE public.contacts SET data = coalesce(data, '{}') || '{\"edited\": true}',"
                " email = 'edited-' || email, \"updatedAt\" = timezone('UTC', now())"
                " WHERE id = ANY(%s)",
                (ids,),
            )
            self.faults.edits += len(ids)

    def delete(self, conn: psycopg.Connection) -> None:
        ids = self.pending_contacts(conn, self.rnd.randint(1, 3))
        if not ids:
            return
        with conn.transaction():
            conn.execute(
                "INSERT INTO chaos.opt_out (contact_id, kind) SELECT unnest(%s::text[]), 'deleted'",
                (ids,),
            )
            conn.execute("DELETE FROM public.contacts WHERE id = ANY(%s)", (ids,))
        self.faults.deletes += len(ids)

    def kill_worker(self) -> None:
        alive = [p for p in self.procs if p.poll() is None]
        if alive:
            victim = self.rnd.choice(alive)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            self.procs.remove(victim)
            self.faults.worker_kills += 1
        self.spawn()

    def terminate_backend(self, conn: psycopg.Connection) -> None:
        row = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name LIKE %s ORDER BY random() LIMIT 1",
            (WORKER_APP + "%",),
        ).fetchone()
        if row and row[0]:
            self.faults.backend_terminations += 1

    def pause_resume(self, conn: psycopg.Connection) -> None:
        if not self.has_pause:
            return
        conn.execute("SELECT plunk_sql.pause_campaign(%s)", (self.campaign,))
        time.sleep(self.rnd.uniform(0.2, 1.0))
        conn.execute("SELECT plunk_sql.resume_campaign(%s)", (self.campaign,))
        self.faults.pauses += 1

    def concurrent_sweeps(self) -> None:
        errors: list[BaseException] = []

        def one() -> None:
            try:
                with self.connect() as c:
                    self.sweep(c)
            except psycopg.OperationalError:
                pass
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self.faults.concurrent_sweep_rounds += 1

    def plunk_cancel(self, conn: psycopg.Connection, campaign: str, shape: str) -> None:
        """Plunk's cancel with its own statements (plunk-facts.md): CANCELLED at once; for
        'deleted' and 'draft' its cleanup deletes the unsent emails made before the cancel,
        1,000 per statement; for 'draft', when no email of it was ever stamped sent, back to
        DRAFT with its counters cleared; the driver then starts it again."""
        conn.execute(
            'UPDATE "public"."campaigns" SET "status" = CAST(\'CANCELLED\'::text AS'
            ' "public"."CampaignStatus"), "updatedAt" = timezone(\'UTC\', now())'
            ' WHERE ("public"."campaigns"."id" = %s AND 1=1)',
            (campaign,),
        )
        conn.execute(
            "INSERT INTO chaos.plunk_cancels (campaign_id, shape, cancelled_at)"
            " VALUES (%s, %s, timezone('UTC', clock_timestamp()))",
            (campaign, shape),
        )
        self.faults.plunk_cancels += 1
        result = "CANCELLED"
        if shape in ("deleted", "draft"):
            while True:
                ids = [
                    r[0]
                    for r in conn.execute(
                        'SELECT "id" FROM "public"."emails" WHERE "campaignId" = %s'
                        ' AND "sentAt" IS NULL AND "createdAt" <= (SELECT cancelled_at'
                        " FROM chaos.plunk_cancels WHERE campaign_id = %s) LIMIT 1000",
                        (campaign, campaign),
                    ).fetchall()
                ]
                if not ids:
                    break
                conn.execute('DELETE FROM "public"."emails" WHERE "id" = ANY(%s)', (ids,))
        if (
            shape == "draft"
            and not conn.execute(
                'SELECT 1 FROM "public"."emails" WHERE "campaignId" = %s AND "sentAt" IS NOT NULL LIMIT 1',
                (campaign,),
            ).fetchone()
        ):
            conn.execute(
                'UPDATE "public"."campaigns" SET "status" = CAST(\'DRAFT\'::text AS'
                ' "public"."CampaignStatus"), "sentCount" = 0, "deliveredCount" = 0,'
                ' "openedCount" = 0, "clickedCount" = 0, "bouncedCount" = 0, "sentAt" = NULL,'
                ' "scheduledFor" = NULL, "updatedAt" = timezone(\'UTC\', now())'
                ' WHERE ("public"."campaigns"."id" = %s AND 1=1)',
                (campaign,),
            )
            result = "DRAFT"
            # A later start takes a fresh snapshot and really sends.
            conn.execute("SELECT plunk_sql.start_campaign(%s)", (campaign,))
            conn.execute(
                "UPDATE chaos.plunk_cancels SET restarted_at = timezone('UTC', clock_timestamp())"
                " WHERE campaign_id = %s",
                (campaign,),
            )
            self.faults.plunk_drafts_restarted += 1
        conn.execute(
            "UPDATE chaos.plunk_cancels SET result = %s WHERE campaign_id = %s", (result, campaign)
        )

    def cancels_done(self, conn: psycopg.Connection) -> bool:
        """Every cancelled campaign has nothing open (the restarted one is SENT)."""
        if not self.cancel_targets:
            return True
        return bool(
            _scalar(
                conn,
                "SELECT NOT EXISTS (SELECT 1 FROM public.campaigns AS c WHERE c.id = ANY(%s)"
                " AND c.status::text IN ('SENDING', 'DRAFT', 'SCHEDULED'))"
                " AND NOT EXISTS (SELECT 1 FROM plunk_sql.recipients AS r WHERE r.campaign_id = ANY(%s)"
                " AND r.state IN ('pending', 'claimed', 'in_flight'))",
                (self.cancel_targets, self.cancel_targets),
            )
        )

    def restart_server(self) -> None:
        self.log("chaos: restarting PostgreSQL with -m immediate")
        self.cluster.restart("immediate")
        self.faults.restarts += 1
        self.restart_pending = False

    # -- main loop
    def run(self) -> float:
        started = time.monotonic()
        conn = self.connect()
        self.has_sweep = has_function(conn, "plunk_sql.sweep()")
        self.has_pause = has_function(conn, "plunk_sql.pause_campaign(text)") and has_function(
            conn, "plunk_sql.resume_campaign(text)"
        )
        self.total = _scalar(
            conn,
            "SELECT total FROM plunk_sql.campaign_runs WHERE campaign_id = %s",
            (self.campaign,),
        )
        if self.has_pause:
            conn.execute("SELECT plunk_sql.pause_campaign(%s)", (self.campaign,))
        # "draft" is cancelled before any worker runs: Plunk returns a campaign to DRAFT only
        # when none of its emails was stamped sent, and deletes the unstamped ones, so one
        # cancelled while a worker had handed mail to SMTP but not yet stamped it would be
        # mailed again by its restart (a CI run saw 196 such messages when the first tick
        # came after the opening faults).
        if self.cancel_pending and self.cancel_pending[0][1] == "draft":
            target, shape = self.cancel_pending.pop(0)
            self.plunk_cancel(conn, target, shape)
        for _ in range(self.n_workers):
            self.spawn()
        if self.has_pause:
            conn = self.opening_faults(conn)
        last_sweep = last_report = time.monotonic()
        try:
            while True:
                if time.monotonic() - started > self.timeout:
                    raise TimeoutError(f"campaign not finished after {self.timeout:.0f} s")
                try:
                    if conn.closed:
                        conn = self.connect()
                    status, settled, paused = self.progress(conn)
                    if status != "SENDING":
                        if self.cancels_done(conn):
                            break
                        self.sweep(conn)  # the cancelled ones' last in-flight emails
                        time.sleep(0.5)
                        continue
                    if paused and self.has_pause:
                        # A pause whose resume was cut off by a fault: resume now.
                        conn.execute("SELECT plunk_sql.resume_campaign(%s)", (self.campaign,))
                    self.respawn_crashed()
                    share = settled / max(self.total, 1)
                    now = time.monotonic()
                    if now - last_report > 5:
                        self.log(f"chaos: {settled}/{self.total} settled, faults {self.faults}")
                        last_report = now
                    if now - last_sweep > 1.0:
                        self.sweep(conn)
                        last_sweep = now
                    done = len(self.cancel_targets) - len(self.cancel_pending)
                    if self.cancel_pending and share >= 0.1 * done:
                        target, shape = self.cancel_pending.pop(0)
                        self.plunk_cancel(conn, target, shape)
                    if self.restart_pending and share > 0.4:
                        conn.close()
                        self.restart_server()
                        continue
                    if share < 0.9:
                        for _ in range(
                            int(self.fault_rate) + (self.rnd.random() < self.fault_rate % 1)
                        ):
                            self.inject(conn)
                except psycopg.OperationalError:
                    with contextlib.suppress(Exception):
                        conn.close()
                    time.sleep(0.3)
                time.sleep(self.rnd.uniform(0.05, 0.25))
        finally:
            self.reap()
            with contextlib.suppress(Exception):
                conn.close()
        return time.monotonic() - started

    def opening_faults(self, conn: psycopg.Connection) -> psycopg.Connection:
        """One fault of each required kind, whatever the timing: the campaign was paused before
        the workers started, so it cannot finish first. A worker is killed and contacts are
        unsubscribed and deleted while every recipient is pending; then the send runs until
        something settled, is paused again (claimed batches stay in flight) and PostgreSQL is
        restarted under it. The random faults of the main loop come on top."""
        self.kill_worker()
        self.unsubscribe(conn)
        self.delete(conn)
        conn.execute("SELECT plunk_sql.resume_campaign(%s)", (self.campaign,))
        deadline = time.monotonic() + 60
        while self.progress(conn)[1] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        conn.execute("SELECT plunk_sql.pause_campaign(%s)", (self.campaign,))
        if self.restart_pending:
            conn.close()
            self.restart_server()
            conn = self.connect()
        conn.execute("SELECT plunk_sql.resume_campaign(%s)", (self.campaign,))
        return conn

    def inject(self, conn: psycopg.Connection) -> None:
        r = self.rnd.random()
        if r < 0.10:
            self.kill_worker()
        elif r < 0.20:
            self.terminate_backend(conn)
        elif r < 0.45:
            self.unsubscribe(conn)
        elif r < 0.60:
            self.edit(conn)
        elif r < 0.72:
            self.delete(conn)
        elif r < 0.80:
            self.pause_resume(conn)
        elif r < 0.90:
            self.concurrent_sweeps()


# --------------------------------------------------------------------------- checks


# The chaos run's own checks (its outbox, opt-outs, claim log, the run's end state); the
# invariants of any send come from plunk_sql.check_invariants (sql/97_invariants.sql).
VIOLATION_QUERIES = {
    # Invariant 4: the campaign ended.
    "campaign_not_sent": "SELECT count(*) FROM public.campaigns WHERE id = %(c)s AND status::text <> 'SENT'",
    "recipients_open": (
        "SELECT count(*) FROM plunk_sql.recipients WHERE campaign_id = %(c)s"
        " AND state IN ('pending', 'claimed', 'in_flight')"
    ),
    # ... and at most one message handed to SMTP per contact.
    "duplicate_messages": (
        "SELECT count(*) FROM (SELECT contact_id FROM chaos.outbox GROUP BY campaign_id, contact_id"
        " HAVING count(*) > 1) AS d"
    ),
    # A sent recipient's mail went out (its email is in the outbox), and only sent ones did.
    "sent_without_message": (
        "SELECT count(*) FROM plunk_sql.recipients AS r WHERE r.campaign_id = %(c)s"
        " AND r.state = 'sent' AND NOT EXISTS (SELECT 1 FROM chaos.outbox AS o WHERE o.email_id = r.email_id)"
    ),
    "message_for_recipient_not_sent": (
        "SELECT count(*) FROM chaos.outbox AS o JOIN plunk_sql.recipients AS r"
        " ON r.campaign_id = o.campaign_id AND r.contact_id = o.contact_id"
        " WHERE r.state <> 'sent' OR r.email_id <> o.email_id"
    ),
    # Invariant 5: no claim handed out a contact whose opt-out it could see, and mailed it.
    "mailed_after_opt_out": (
        "SELECT count(DISTINCT o.contact_id) FROM chaos.outbox AS o"
        " JOIN chaos.claim_log AS l ON l.contact_id = o.contact_id"
        " JOIN chaos.opt_out AS x ON x.contact_id = o.contact_id"
        " WHERE pg_visible_in_snapshot(x.xid, l.snap)"
    ),
    "claimed_after_opt_out": (
        "SELECT count(DISTINCT l.contact_id) FROM chaos.claim_log AS l"
        " JOIN chaos.opt_out AS x ON x.contact_id = l.contact_id"
        " WHERE pg_visible_in_snapshot(x.xid, l.snap)"
    ),
    # At the end of the run every email of the campaign is final.
    "emails_not_final": (
        'SELECT count(*) FROM public.emails WHERE "campaignId" = %(c)s'
        " AND status::text IN ('PENDING', 'SENDING')"
    ),
    # Plunk-style cancels (issue 13): each cancelled campaign ended with nothing open, CANCELLED
    # (or SENT after its restart from DRAFT), counters equal to a recount ...
    "cancelled_recipients_open": (
        "SELECT count(*) FROM plunk_sql.recipients AS r JOIN chaos.plunk_cancels AS p"
        " ON p.campaign_id = r.campaign_id WHERE r.state IN ('pending', 'claimed', 'in_flight')"
    ),
    "cancelled_not_ended": (
        "SELECT count(*) FROM chaos.plunk_cancels AS p JOIN public.campaigns AS c ON c.id = p.campaign_id"
        " WHERE c.status::text <> CASE WHEN p.restarted_at IS NULL THEN 'CANCELLED' ELSE 'SENT' END"
    ),
    "cancelled_counters_differ_from_recount": (
        "SELECT count(*) FROM plunk_sql.campaign_runs AS r JOIN chaos.plunk_cancels AS p"
        " ON p.campaign_id = r.campaign_id JOIN public.campaigns AS c ON c.id = r.campaign_id"
        " CROSS JOIN LATERAL plunk_sql.run_counts(r.campaign_id) AS n WHERE"
        " r.total <> (SELECT count(*) FROM plunk_sql.recipients AS x WHERE x.campaign_id = r.campaign_id)"
        " OR n.sent <> (SELECT count(*) FROM plunk_sql.recipients AS x WHERE x.campaign_id = r.campaign_id"
        " AND x.state = 'sent')"
        " OR n.sent + n.failed + n.skipped <> r.total"
        ' OR c."sentCount" <> n.sent OR c."totalRecipients" <> r.total'
    ),
    # ... no email made for it well after the cancel committed (a claim that raced the cancel
    # may still land: 2 s of grace) until it was started again ...
    "email_after_cancel": (
        "SELECT count(*) FROM public.emails AS e JOIN chaos.plunk_cancels AS p"
        ' ON p.campaign_id = e."campaignId" WHERE e."createdAt" > p.cancelled_at + interval \'2 seconds\''
        ' AND (p.restarted_at IS NULL OR e."createdAt" < p.restarted_at)'
    ),
    # ... and a run sent back to DRAFT was retired, not reused.
    "draft_run_not_retired": (
        "SELECT count(*) FROM chaos.plunk_cancels AS p WHERE p.result = 'DRAFT'"
        " AND NOT EXISTS (SELECT 1 FROM plunk_sql.retired_runs AS rr WHERE rr.campaign_id = p.campaign_id)"
    ),
}


def verify(conn: psycopg.Connection, campaign: str, report: Report) -> Report:
    params = {"c": campaign}
    report.status = _scalar(
        conn, "SELECT status::text FROM public.campaigns WHERE id = %s", (campaign,)
    )
    report.outcomes = dict(
        conn.execute(
            "SELECT state::text, count(*) FROM plunk_sql.recipients WHERE campaign_id = %s"
            " GROUP BY state",
            (campaign,),
        ).fetchall()
    )
    report.reasons = {
        f"{state}:{reason}": n
        for state, reason, n in conn.execute(
            "SELECT state::text, coalesce(reason, '-'), count(*) FROM plunk_sql.recipients"
            " WHERE campaign_id = %s AND state IN ('skipped', 'failed') GROUP BY 1, 2",
            (campaign,),
        ).fetchall()
    }
    report.emails = _scalar(
        conn, 'SELECT count(*) FROM public.emails WHERE "campaignId" = %s', (campaign,)
    )
    report.mailed = _scalar(
        conn, "SELECT count(*) FROM chaos.outbox WHERE campaign_id = %s", (campaign,)
    )
    report.plunk_cancels = {
        shape: f"{result} ({status})"
        for shape, result, status in conn.execute(
            "SELECT p.shape, p.result, c.status::text FROM chaos.plunk_cancels AS p"
            " JOIN public.campaigns AS c ON c.id = p.campaign_id ORDER BY p.shape"
        ).fetchall()
    }
    report.claims_handed_out = _scalar(conn, "SELECT count(*) FROM chaos.claim_log")
    report.opted_out = dict(
        conn.execute(
            "SELECT kind, count(DISTINCT contact_id) FROM chaos.opt_out GROUP BY kind"
        ).fetchall()
    )
    report.violations = dict(
        conn.execute(
            "SELECT invariant, violations FROM plunk_sql.check_invariants(%s)", (campaign,)
        ).fetchall()
    )
    report.violations |= {
        name: _scalar(conn, sql, params) for name, sql in VIOLATION_QUERIES.items()
    }
    return report


def run(
    *,
    recipients: int,
    workers: int,
    batch: int = 200,
    lease: str = "10 seconds",
    restart: bool = True,
    seed: int | None = None,
    timeout: float = 900,
    fault_rate: float = 1.0,
    log: Callable[[str], object] = print,
) -> Report:
    """A full chaos run on a new throwaway cluster; returns the verified report."""
    from plunk_sql.testing.cluster import start_cluster

    seed = random.randrange(1 << 30) if seed is None else seed
    log(f"chaos: seed {seed}")
    cluster = start_cluster(fast_unsafe=False, settings={"max_connections": "100"})
    try:
        url = cluster.url()
        project, campaign, targets = setup(url, recipients)
        driver = Driver(
            cluster, url, campaign, project, workers=workers, batch=batch, lease=lease,
            restart=restart, seed=seed, timeout=timeout, fault_rate=fault_rate, log=log,
            cancel_targets=targets,
        )  # fmt: skip
        report = Report(recipients=recipients, workers=workers, faults=driver.faults)
        try:
            report.seconds = driver.run()
        except TimeoutError as exc:
            log(f"chaos: {exc}")
            report.seconds = timeout
        with psycopg.connect(url, autocommit=True) as conn:
            return verify(conn, campaign, report)
    finally:
        cluster.destroy()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":
        url, campaign, project, batch, lease = argv[1:6]
        return worker_main(url, campaign, project, int(batch), lease)
    p = argparse.ArgumentParser(
        prog="python -m plunk_sql.testing.chaos", description=__doc__.split("\n")[0]
    )
    p.add_argument("--recipients", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--lease", default="10 seconds")
    p.add_argument("--no-restart", action="store_true")
    p.add_argument("--seed", type=int)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--fault-rate", type=float, default=1.0, help="faults per driver tick")
    p.add_argument("--json", help="also write the report as JSON to this file")
    args = p.parse_args(argv)
    report = run(
        recipients=args.recipients, workers=args.workers, batch=args.batch, lease=args.lease,
        restart=not args.no_restart, seed=args.seed, timeout=args.timeout,
        fault_rate=args.fault_rate,
    )  # fmt: skip
    print(report.text())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(asdict(report) | {"ok": report.ok}, fh, indent=2)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
