"""The emails triggers: linking, one email per recipient, settling, completion."""

from __future__ import annotations

import psycopg

from tests.factories import new_id
from tests.helpers import check_invariants, raises_sqlstate


def _started(plunk, n=5, **kwargs):
    p = plunk.project()
    ids = plunk.contacts(p, n)
    c = plunk.campaign(p, **kwargs)
    plunk.start(c)
    return p, c, ids


def test_emails_insert__links_claimed_recipients_in_flight(plunk, conn):
    p, c, _ = _started(plunk)
    claimed = [r[0] for r in plunk.claim(c, 3)]
    emails = plunk.create_emails(c, p, claimed)
    linked = dict(
        conn.execute(
            "SELECT contact_id, email_id FROM plunk_sql.recipients WHERE state = 'in_flight'"
        ).fetchall()
    )
    assert linked == dict(zip(claimed, emails, strict=True))
    assert plunk.progress(c)["in_flight"] == 3


def test_emails_insert__second_email_for_a_recipient_is_23505(plunk, conn):
    p, c, _ = _started(plunk)
    (first, *_) = [r[0] for r in plunk.claim(c, 2)]
    plunk.create_emails(c, p, [first])
    with raises_sqlstate("23505", f"campaign {c} already has an email for contact {first}"):
        plunk.create_emails(c, p, [first])
    assert (
        conn.execute(
            'SELECT count(*) FROM public.emails WHERE "contactId" = %s', (first,)
        ).fetchone()[0]
        == 1
    )


def test_emails_insert__duplicate_inside_one_statement_is_23505_and_nothing_lands(plunk, conn):
    p, c, _ = _started(plunk)
    a, b = [r[0] for r in plunk.claim(c, 2)]
    with raises_sqlstate("23505", f"contact {b}"):
        plunk.create_emails(c, p, [a, b, b])
    assert conn.execute("SELECT count(*) FROM public.emails").fetchone()[0] == 0
    assert plunk.progress(c)["claimed"] == 2


def test_emails_insert__concurrent_duplicate_waits_then_is_refused(plunk, db_url):
    p, c, _ = _started(plunk)
    (a,) = [r[0] for r in plunk.claim(c, 1)]
    with psycopg.connect(db_url) as t1, psycopg.connect(db_url) as t2:
        plunk.create_emails(c, p, [a], conn=t1)  # t1's transaction still open
        import threading

        errors: list[Exception] = []

        def second():
            try:
                plunk.create_emails(c, p, [a], conn=t2)
                t2.commit()
            except psycopg.Error as exc:
                errors.append(exc)
                t2.rollback()

        th = threading.Thread(target=second)
        th.start()
        th.join(0.5)
        assert th.is_alive(), "the second insert should wait on the recipient row lock"
        t1.commit()
        th.join(10)
        assert [e.sqlstate for e in errors] == ["23505"]


def test_emails_insert__contact_outside_snapshot_is_23503(plunk, conn):
    p, c, _ = _started(plunk)
    late = plunk.contact(p, prefix="late")
    with raises_sqlstate("23503", "not a recipient"):
        plunk.create_emails(c, p, [late])


def test_emails_insert__skipped_recipient_is_55000(plunk, conn):
    p, c, ids = _started(plunk, 3)
    conn.execute("UPDATE public.contacts SET subscribed = false WHERE id = %s", (ids[0],))
    plunk.claim(c)
    with raises_sqlstate("55000", "was skipped \\(unsubscribed\\)"):
        plunk.create_emails(c, p, [ids[0]])


def test_emails_insert__other_campaigns_and_transactional_mail_are_left_alone(plunk, conn):
    p = plunk.project()
    ids = plunk.contacts(p, 2)
    legacy = plunk.campaign(p, status="SENDING")
    plunk.create_emails(legacy, p, [ids[0], ids[0]])  # Plunk's own rules apply, not ours
    conn.execute(
        'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType", "projectId", "updatedAt")'
        " VALUES (%s, %s, 's', 'b', 'f', 'TRANSACTIONAL', %s, timezone('UTC', now()))",
        (new_id(), ids[1], p),
    )
    conn.execute("UPDATE public.emails SET status = 'SENT', \"updatedAt\" = timezone('UTC', now())")
    assert (
        conn.execute("SELECT count(*) FROM public.emails WHERE status = 'SENT'").fetchone()[0] == 3
    )
    assert conn.execute("SELECT count(*) FROM plunk_sql.campaign_runs").fetchone()[0] == 0


def test_emails_update__batched_settle_counts_on_the_claims_slot(plunk, conn):
    # One claim, one counter slot: the 500 settles update that slot row, never
    # the run or campaigns row; the end-game runs once, as the statement's
    # transaction commits (sql/48_counters.sql).
    p, c, _ = _started(plunk, 500)
    emails = plunk.create_emails(c, p, [r[0] for r in plunk.claim(c, 500)])
    plunk.set_email_status(emails, "SENDING")
    slots = conn.execute(
        "SELECT count(DISTINCT slot), min(slot) FROM plunk_sql.recipients WHERE campaign_id = %s",
        (c,),
    ).fetchone()
    assert slots[0] == 1 and slots[1] > 0, slots
    counters = (
        "SELECT pg_stat_get_xact_tuples_updated('plunk_sql.campaign_runs'::regclass),"
        " pg_stat_get_xact_tuples_updated('public.campaigns'::regclass),"
        " pg_stat_get_xact_tuples_updated('plunk_sql.recipients'::regclass),"
        " pg_stat_get_xact_tuples_updated('plunk_sql.run_slots'::regclass)"
    )
    with conn.transaction():
        # xact counters may still hold earlier, unflushed statements: take a delta
        before = conn.execute(counters).fetchone()
        assert plunk.set_email_status(emails, "SENT") == 500
        # What runs at commit (the end-game, "sentCount"), run now to count it.
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        after = conn.execute(counters).fetchone()
    runs, campaigns, recipients, slot_rows = (a - b for a, b in zip(after, before, strict=True))
    # The slot drained: one end-game writes finished_at, the recount and SENT.
    assert (runs, campaigns, recipients, slot_rows) == (1, 1, 500, 500)
    row = plunk.campaign_row(c)
    assert (row["status"], row["sentCount"], row["totalRecipients"]) == ("SENT", 500, 500)
    check_invariants(conn, c)


def test_emails_update__failed_and_suppressed_settle_as_failed_with_reason(plunk, conn):
    p, c, _ = _started(plunk, 3)
    e = plunk.create_emails(c, p, [r[0] for r in plunk.claim(c)])
    conn.execute(
        "UPDATE public.emails SET status = 'FAILED', error = 'mailbox full', \"updatedAt\" = timezone('UTC', now())"
        " WHERE id = %s",
        (e[0],),
    )
    plunk.set_email_status([e[1]], "SUPPRESSED")
    plunk.set_email_status([e[2]], "SENT")
    reasons = dict(
        conn.execute(
            "SELECT email_id, state::text || ':' || coalesce(reason, '') FROM plunk_sql.recipients"
        ).fetchall()
    )
    assert reasons == {e[0]: "failed:mailbox full", e[1]: "failed:email SUPPRESSED", e[2]: "sent:"}
    assert check_invariants(conn, c) | {} == {
        "total": 3,
        "sent": 1,
        "failed": 2,
        "skipped": 0,
        "status": "SENT",
    }


def test_emails_update__late_status_changes_count_once(plunk, conn):
    p, c, _ = _started(plunk, 2)
    e = plunk.create_emails(c, p, [r[0] for r in plunk.claim(c)])
    plunk.set_email_status(e, "SENT")
    assert plunk.campaign_row(c)["status"] == "SENT"
    for status in ("DELIVERED", "OPENED", "CLICKED", "BOUNCED", "COMPLAINED", "FAILED", "SENDING"):
        plunk.set_email_status(e, status)
    row = plunk.campaign_row(c)
    assert (row["status"], row["sentCount"]) == ("SENT", 2)
    assert check_invariants(conn, c)["sent"] == 2


def test_emails_update__plunk_worker_style_one_update_per_email(plunk, conn):
    # "sentCount" moves in steps of 32 per counter slot while the send runs (it
    # trails the recount by at most 31 per slot) and is the recount at the end.
    p, c, _ = _started(plunk, 70)
    emails = plunk.create_emails(c, p, [r[0] for r in plunk.claim(c, 70)])
    seen = []
    for i, email_id in enumerate(emails):
        conn.execute(
            "UPDATE public.emails SET status = 'SENT', \"sentAt\" = timezone('UTC', now()),"
            ' "messageId" = %s, "updatedAt" = timezone(\'UTC\', now()) WHERE id = %s AND "sentAt" IS NULL',
            (f"msg-{i}", email_id),
        )
        row = plunk.campaign_row(c)
        seen.append(row["sentCount"])
        assert row["status"] == ("SENT" if i == 69 else "SENDING")
        check_invariants(conn, c)
    assert seen == [32 * ((i + 1) // 32) for i in range(69)] + [70]


def test_emails_insert__already_final_rows_settle_at_once(plunk, conn):
    p, c, _ = _started(plunk, 2)
    plunk.create_emails(c, p, [r[0] for r in plunk.claim(c)], status="SENT")
    assert check_invariants(conn, c)["status"] == "SENT"


def test_emails_delete__in_flight_recipient_settles_as_skipped(plunk, conn):
    p, c, ids = _started(plunk, 3)
    emails = plunk.create_emails(c, p, [r[0] for r in plunk.claim(c)])
    plunk.set_email_status(emails[:1], "SENT")
    conn.execute("DELETE FROM public.emails WHERE id = %s", (emails[1],))
    conn.execute("DELETE FROM public.contacts WHERE id = %s", (ids[2],))  # cascades to its email
    reasons = dict(
        conn.execute(
            "SELECT contact_id, state::text || ':' || coalesce(reason, '') FROM plunk_sql.recipients"
        ).fetchall()
    )
    assert reasons[ids[1]] == reasons[ids[2]] == "skipped:email deleted"
    assert check_invariants(conn, c) == {
        "total": 3,
        "sent": 1,
        "failed": 0,
        "skipped": 2,
        "status": "SENT",
    }


def test_campaign_finished__notifies_once_on_commit(plunk, conn, db_url):
    p, c, _ = _started(plunk, 2)
    emails = plunk.create_emails(c, p, [r[0] for r in plunk.claim(c)])
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN plunk_sql_campaign_finished")
        plunk.set_email_status(emails[:1], "SENT")
        assert list(listener.notifies(timeout=0.3)) == []
        plunk.set_email_status(emails[1:], "FAILED")
        plunk.set_email_status(emails, "DELIVERED")
        notes = list(listener.notifies(timeout=2, stop_after=2))
    assert len(notes) == 1
    import json

    payload = json.loads(notes[0].payload)
    assert payload == {
        "campaign_id": c,
        "status": "SENT",
        "total": 2,
        "sent": 1,
        "failed": 1,
        "skipped": 0,
    }
