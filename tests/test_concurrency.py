"""Real concurrent connections: 8 workers on one campaign."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.factories import Plunk
from tests.helpers import check_invariants

WORKERS = 8


def _worker(
    db_url: str, campaign_id: str, project_id: str, batch: int, seen: list, errors: list
) -> None:
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            plunk = Plunk(conn)
            while rows := plunk.claim(campaign_id, batch):
                contacts = [r[0] for r in rows]
                seen.extend(contacts)
                emails = plunk.create_emails(campaign_id, project_id, contacts)
                plunk.set_email_status(emails, "SENDING")
                # half settled one UPDATE per email (Plunk's worker), half in one batch
                half = len(emails) // 2
                for email_id in emails[:half]:
                    plunk.set_email_status([email_id], "SENT")
                plunk.set_email_status(emails[half:], "SENT")
    except Exception as exc:  # surfaced by the test
        errors.append(exc)


def test_claim_batch__eight_concurrent_workers_never_share_a_recipient(plunk, conn, db_url):
    p = plunk.project()
    plunk.contacts(p, 3000)
    c = plunk.campaign(p)
    assert plunk.start(c) == 3000
    seen: list[str] = []
    errors: list[Exception] = []
    threads = [
        threading.Thread(target=_worker, args=(db_url, c, p, 37, seen, errors))
        for _ in range(WORKERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert errors == []
    assert len(seen) == 3000 and len(set(seen)) == 3000
    assert check_invariants(conn, c) == {
        "total": 3000,
        "sent": 3000,
        "failed": 0,
        "skipped": 0,
        "status": "SENT",
    }
    per_contact = conn.execute(
        'SELECT max(n) FROM (SELECT count(*) AS n FROM public.emails GROUP BY "contactId") x'
    ).fetchone()[0]
    assert per_contact == 1


def test_claim_batch__concurrent_claims_do_not_block_each_other(plunk, db_url):
    p = plunk.project()
    plunk.contacts(p, 20)
    c = plunk.campaign(p)
    plunk.start(c)
    with psycopg.connect(db_url) as a, psycopg.connect(db_url) as b:
        first = plunk.claim(c, 10, conn=a)  # a's transaction stays open, rows locked
        b.execute("SET lock_timeout = '1s'")
        second = plunk.claim(c, 10, conn=b)  # SKIP LOCKED: no wait, other rows
        assert {r[0] for r in first}.isdisjoint({r[0] for r in second})
        assert len(first) == len(second) == 10
        a.commit()
        b.commit()


@pytest.mark.parametrize("first", ["a", "b"])
def test_end_game__last_two_settles_of_two_claims_set_sent_exactly_once(plunk, conn, db_url, first):
    """The write skew the end-game exists for: two workers settle the last recipient of their
    own claim (two counter slots) in open transactions, so neither sees the other's settle.
    Whichever commits last takes the campaigns row after the other committed and sets SENT;
    the first to commit must not, and nobody may leave it SENDING (sql/48_counters.sql)."""
    p = plunk.project()
    contacts = plunk.contacts(p, 2)
    c = plunk.campaign(p)
    plunk.start(c)
    [(ca, _, _)] = plunk.claim(c, 1)
    [(cb, _, _)] = plunk.claim(c, 1)
    slots = conn.execute(
        "SELECT count(DISTINCT slot) FROM plunk_sql.recipients WHERE campaign_id = %s", (c,)
    ).fetchone()[0]
    assert slots == 2 and {ca, cb} == set(contacts)
    [ea] = plunk.create_emails(c, p, [ca])
    [eb] = plunk.create_emails(c, p, [cb])
    conn.execute("LISTEN plunk_sql_campaign_finished")
    with psycopg.connect(db_url) as a, psycopg.connect(db_url) as b:
        plunk.set_email_status([ea], "SENT", conn=a)
        plunk.set_email_status([eb], "SENT", conn=b)
        order = [a, b] if first == "a" else [b, a]
        order[0].commit()
        status = conn.execute("SELECT status::text FROM public.campaigns WHERE id = %s", (c,))
        assert status.fetchone()[0] == "SENDING"  # the other settle is not committed yet
        order[1].commit()
    row = plunk.campaign_row(c)
    assert (row["status"], row["sentCount"]) == ("SENT", 2)
    notes = list(conn.notifies(timeout=0.5, stop_after=2))
    assert len(notes) == 1
    check_invariants(conn, c)
