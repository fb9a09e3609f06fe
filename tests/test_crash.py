"""PostgreSQL stopped with `-m immediate` mid-send and restarted: the send still
finishes, every recipient mailed exactly once.

Its own throwaway cluster with fsync on (fast_unsafe=False): a crash must not
lose a committed claim, email or settlement. pg_cron (when installed) lives in
the Plunk database itself here, so migrate's same-database path (cron.schedule)
is exercised too.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid

import psycopg
import pytest

from plunk_sql.migrate import migrate
from plunk_sql.testing.cluster import find_bindir, start_cluster
from tests.factories import Plunk

TOTAL = 1000
BATCH = 25
LEASE = "3 seconds"


class Sink:
    """The mail provider: remembers every message handed to it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_contact: collections.Counter[str] = collections.Counter()
        self.email_ids: set[str] = set()

    def send(self, email_id: str, contact_id: str) -> None:
        with self.lock:
            assert email_id not in self.email_ids, "an email was handed over twice"
            self.email_ids.add(email_id)
            self.by_contact[contact_id] += 1


class Worker(threading.Thread):
    """A worker that survives database restarts: claim, insert the emails (client-made ids,
    so a lost commit acknowledgement can be checked), send, mark SENT (retried)."""

    def __init__(self, url: str, campaign: str, project: str, sink: Sink, stop: threading.Event):
        super().__init__(daemon=True)
        self.url, self.campaign, self.project, self.sink, self.stop = (
            url,
            campaign,
            project,
            sink,
            stop,
        )
        self.conn: psycopg.Connection | None = None
        self.disconnects = 0
        self.errors: list[BaseException] = []

    def connection(self) -> psycopg.Connection:
        while self.conn is None or self.conn.closed or self.conn.broken:
            try:
                self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
            except psycopg.OperationalError:
                if self.stop.is_set():
                    raise
                time.sleep(0.1)
        return self.conn

    def retrying(self, fn):
        """fn(conn) until it does not fail on a lost connection."""
        while True:
            try:
                return fn(self.connection())
            except psycopg.OperationalError:
                self.disconnects += 1
                if self.stop.is_set():
                    raise
                time.sleep(0.1)

    def insert(self, ids: list[str], contacts: list[str]) -> bool:
        """True when the emails exist (inserted now or by a commit whose ack was lost)."""
        try:
            self.connection().execute(
                'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
                ' "campaignId", "projectId", "updatedAt")'
                " SELECT e, k, 's', 'b', 'f@example.com', 'CAMPAIGN', %s, %s,"
                " timezone('UTC', now()) FROM unnest(%s::text[], %s::text[]) AS u(e, k)",
                (self.campaign, self.project, ids, contacts),
            )
            return True
        except psycopg.OperationalError:
            self.disconnects += 1
            found = self.retrying(
                lambda c: c.execute(
                    "SELECT count(*) FROM public.emails WHERE id = ANY(%s)", (ids,)
                ).fetchone()[0]
            )
            if found == len(ids):
                return True
            assert found == 0  # one statement: all or nothing
            return self.insert(ids, contacts)
        except (
            psycopg.errors.UniqueViolation,
            psycopg.errors.ObjectNotInPrerequisiteState,
            psycopg.errors.ForeignKeyViolation,
        ):
            return False  # the lease passed and someone else has them now: send nothing

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    batch = (
                        self.connection()
                        .execute(
                            "SELECT contact_id FROM plunk_sql.claim_batch(%s, %s, %s::interval)",
                            (self.campaign, BATCH, LEASE),
                        )
                        .fetchall()
                    )
                except psycopg.OperationalError:
                    self.disconnects += 1  # a lost claim is released by the sweep
                    continue
                if not batch:
                    time.sleep(0.05)
                    continue
                contacts = [r[0] for r in batch]
                ids = [str(uuid.uuid4()) for _ in contacts]
                if not self.insert(ids, contacts):
                    continue
                for email_id, contact in zip(ids, contacts, strict=True):
                    self.sink.send(email_id, contact)
                self.retrying(
                    lambda c, ids=ids: c.execute(
                        "UPDATE public.emails SET status = 'SENT', \"messageId\" = id,"
                        " \"sentAt\" = timezone('UTC', now()), \"updatedAt\" = timezone('UTC', now())"
                        ' WHERE id = ANY(%s) AND "sentAt" IS NULL',
                        (ids,),
                    )
                )
        except BaseException as exc:
            if not self.stop.is_set():
                self.errors.append(exc)
        finally:
            if self.conn is not None:
                self.conn.close()


def sweeper(url: str, stop: threading.Event) -> None:
    """`plunk-sql sweep --every 300ms`, in-process."""
    while not stop.is_set():
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=2) as c:
                while not stop.is_set():
                    c.execute("SELECT * FROM plunk_sql.sweep()").fetchall()
                    time.sleep(0.3)
        except psycopg.OperationalError:
            time.sleep(0.1)


def status_of(url: str, campaign: str) -> tuple[str, int]:
    while True:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=2) as c:
                return c.execute(
                    'SELECT status::text, "sentCount" FROM public.campaigns WHERE id = %s',
                    (campaign,),
                ).fetchone()
        except psycopg.OperationalError:
            time.sleep(0.1)


@pytest.mark.slow
def test_crash__immediate_stop_mid_send_then_every_recipient_mailed_exactly_once():
    if find_bindir() is None:
        pytest.skip("no PostgreSQL server binaries")
    cluster = start_cluster(fast_unsafe=False)
    stop = threading.Event()
    try:
        url = cluster.url("postgres")
        if cluster.pg_cron:
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        result = migrate(url, with_plunk_tables=True, schedule_sweep=True)
        with psycopg.connect(url, autocommit=True) as c:
            if cluster.pg_cron:
                assert result.cron.mode == "pg_cron"
                job = c.execute(
                    "SELECT database, command FROM cron.job WHERE jobname = 'plunk_sql_sweep:postgres'"
                ).fetchone()
                assert job == ("postgres", "SELECT * FROM plunk_sql.sweep()")
            plunk = Plunk(c)
            project = plunk.project()
            contacts = plunk.contacts(project, TOTAL)
            campaign = plunk.campaign(project)
            assert plunk.start(campaign) == TOTAL

        sink = Sink()
        workers = [Worker(url, campaign, project, sink, stop) for _ in range(3)]
        sweep = threading.Thread(target=sweeper, args=(url, stop), daemon=True)
        for t in [*workers, sweep]:
            t.start()

        deadline = time.monotonic() + 60
        while status_of(url, campaign)[1] < TOTAL // 5:
            assert time.monotonic() < deadline, "the send did not start"
            time.sleep(0.01)
        cluster.restart("immediate")  # PostgreSQL killed mid-send, then crash recovery
        status, sent_after_restart = status_of(url, campaign)
        assert status == "SENDING" and sent_after_restart < TOTAL, "the crash was not mid-send"

        while status_of(url, campaign)[0] != "SENT":
            assert time.monotonic() < deadline, f"not finished: {status_of(url, campaign)}"
            time.sleep(0.1)
        stop.set()
        for t in [*workers, sweep]:
            t.join(timeout=30)

        assert not [e for w in workers for e in w.errors]
        assert sum(w.disconnects for w in workers) > 0, "no worker noticed the crash"
        assert len(sink.by_contact) == TOTAL
        assert set(sink.by_contact) == set(contacts)
        assert set(sink.by_contact.values()) == {1}, "a recipient was mailed twice"
        with psycopg.connect(url, autocommit=True) as c:
            emails = c.execute(
                'SELECT count(*), count(DISTINCT "contactId"),'
                " count(*) FILTER (WHERE status = 'SENT')"
                ' FROM public.emails WHERE "campaignId" = %s',
                (campaign,),
            ).fetchone()
            assert emails == (TOTAL, TOTAL, TOTAL)
            progress = c.execute(
                "SELECT total, sent, failed, skipped, pending + claimed + in_flight"
                " FROM plunk_sql.campaign_progress WHERE campaign_id = %s",
                (campaign,),
            ).fetchone()
            assert progress == (TOTAL, TOTAL, 0, 0, 0)
            assert c.execute(
                'SELECT "sentCount", "totalRecipients" FROM public.campaigns WHERE id = %s',
                (campaign,),
            ).fetchone() == (TOTAL, TOTAL)
            assert set(sink.email_ids) == {
                r[0]
                for r in c.execute(
                    'SELECT id FROM public.emails WHERE "campaignId" = %s', (campaign,)
                ).fetchall()
            }
    finally:
        stop.set()
        cluster.destroy()
