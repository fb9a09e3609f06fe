"""A worker that dies hands back what it never gave to SMTP (plunk_sql.release_claims):
its claims in force go back to pending, its unsent emails are deleted and their
recipients pending again, and another worker sends them at once."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from plunk_sql.api import Client
from plunk_sql.errors import NotFound
from plunk_sql.queries import query
from plunk_sql.testing.smtp_sink import SmtpSink
from plunk_sql.worker import SmtpConfig, Worker, WorkerConfig
from tests.helpers import started_campaign


def _states(conn, cid) -> dict[str, int]:
    rows = conn.execute(
        "SELECT state::text, count(*) FROM plunk_sql.recipients WHERE campaign_id = %s GROUP BY 1",
        (cid,),
    ).fetchall()
    return dict(rows)


def _insert_emails(conn, cid, pid, contact_ids) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in contact_ids]
    conn.execute(
        query("insert_emails"),
        {
            "campaign_id": cid,
            "project_id": pid,
            "from_address": "news@example.com",
            "ids": ids,
            "contact_ids": contact_ids,
            "subjects": ["s"] * len(ids),
            "bodies": ["b"] * len(ids),
        },
    )
    return ids


def test_release__claims_and_unsent_emails_go_back_to_pending(conn, plunk):
    pid, cid, _ = started_campaign(plunk, 6)
    client = Client(conn)
    batch = [r.contact_id for r in client.claim(cid, batch_size=4)]
    emails = _insert_emails(conn, cid, pid, batch[:2])
    assert _states(conn, cid) == {"pending": 2, "claimed": 2, "in_flight": 2}

    assert client.release_claims(cid, batch[2:], emails) == (4, 2)
    assert _states(conn, cid) == {"pending": 6}
    assert conn.execute(
        'SELECT count(*) FROM public.emails WHERE "campaignId" = %s', (cid,)
    ).fetchone() == (0,)
    rows = conn.execute(
        "SELECT email_id, in_flight_at, lease_expires_at, reason FROM plunk_sql.recipients"
        " WHERE campaign_id = %s",
        (cid,),
    ).fetchall()
    assert set(rows) == {(None, None, None, None)}
    p = client.progress(cid)
    assert p is not None and (p.pending, p.skipped, p.status) == (6, 0, "SENDING")
    # A retry matches nothing: harmless.
    assert client.release_claims(cid, batch, emails) == (0, 0)
    # Everything is claimable again, and a second email per recipient is allowed.
    again = [r.contact_id for r in client.claim(cid, batch_size=10)]
    assert sorted(again) == sorted(r[0] for r in rows_of(conn, cid))
    _insert_emails(conn, cid, pid, again)


def rows_of(conn, cid):
    return conn.execute(
        "SELECT contact_id FROM plunk_sql.recipients WHERE campaign_id = %s", (cid,)
    ).fetchall()


def test_release__never_touches_sent_emails_expired_leases_or_other_campaigns(conn, plunk):
    pid, cid, _ = started_campaign(plunk, 3)
    _, other, _ = started_campaign(plunk, 1)
    client = Client(conn)
    [first] = [r.contact_id for r in client.claim(cid, batch_size=1)]
    [sent] = _insert_emails(conn, cid, pid, [first])
    conn.execute(
        "UPDATE public.emails SET status = 'SENT', \"sentAt\" = plunk_sql.utc_now(),"
        ' "updatedAt" = plunk_sql.utc_now() WHERE id = %s',
        (sent,),
    )
    expired = [r.contact_id for r in client.claim(cid, batch_size=1, lease=_ms(50))]
    time.sleep(0.2)
    [foreign] = [r.contact_id for r in client.claim(other, batch_size=1)]
    assert client.release_claims(cid, [*expired, foreign], [sent]) == (0, 0)
    assert _states(conn, cid) == {"sent": 1, "claimed": 1, "pending": 1}
    assert _states(conn, other) == {"claimed": 1}
    with pytest.raises(NotFound):
        client.release_claims("no-such-campaign", [], [])


def _ms(n: int):
    from datetime import timedelta

    return timedelta(milliseconds=n)


def _worker(db_url, cid, sink, **kw) -> Worker:
    config = WorkerConfig(
        db_url, cid, SmtpConfig.from_url(sink.url), concurrency=1, batch_size=10, backoff=0.01, **kw
    )
    return Worker(config)


def test_release__failing_thread_hands_back_unsent_emails_then_another_worker_sends(
    db_url, conn, plunk
):
    _, cid, _ = started_campaign(plunk, 25)
    with SmtpSink() as sink:
        dying = _worker(db_url, cid, sink)
        original = dying._deliver
        calls = 0

        def deliver_then_crash(sender, email):
            nonlocal calls
            calls += 1
            if calls == 4:
                raise RuntimeError("worker crashed mid-batch")
            return original(sender, email)

        dying._deliver = deliver_then_crash  # type: ignore[method-assign]
        stats = dying.run()
        assert stats.errors == ["RuntimeError: worker crashed mid-batch"]
        # Three messages went to SMTP, the fourth was being handed over: those four stay
        # in flight. The other six of the batch were never given to SMTP: handed back.
        assert sink.received == 3
        assert (stats.released, stats.deleted) == (6, 6)
        assert _states(conn, cid) == {"in_flight": 4, "pending": 21}
        assert conn.execute(
            'SELECT count(*) FROM public.emails WHERE "campaignId" = %s', (cid,)
        ).fetchone() == (4,)

        healthy = _worker(db_url, cid, sink).run()
        assert healthy.errors == [] and healthy.sent == 21
        assert sink.received == 24 and not sink.duplicates()
    assert _states(conn, cid) == {"in_flight": 4, "sent": 21}


def test_release__failing_insert_hands_back_the_claimed_batch(db_url, conn, plunk):
    _, cid, _ = started_campaign(plunk, 8)
    with SmtpSink() as sink:
        dying = _worker(db_url, cid, sink)

        def insert_fails(conn_, emails):
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        dying._insert = insert_fails  # type: ignore[method-assign]
        stats = dying.run()
        assert len(stats.errors) == 1 and (stats.released, stats.deleted) == (8, 0)
        assert sink.received == 0
    assert _states(conn, cid) == {"pending": 8}


def test_release__the_worker_role_may_call_it(db_url, conn, plunk, pg_server):
    _, cid, _ = started_campaign(plunk, 2)
    role = f"mailer_{uuid.uuid4().hex[:8]}"
    with pg_server.admin() as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN IN ROLE plunk_sql_worker")
    try:
        with psycopg.connect(make_conninfo(db_url, user=role), autocommit=True) as w:
            client = Client(w)
            batch = [r.contact_id for r in client.claim(cid, batch_size=2)]
            assert client.release_claims(cid, batch, []) == (2, 0)
    finally:
        with pg_server.admin() as admin:
            admin.execute(f"DROP ROLE {role}")
    assert _states(conn, cid) == {"pending": 2}
