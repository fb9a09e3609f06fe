"""claim_batch: leases, consent and existence re-checks, and its errors."""

from __future__ import annotations

import psycopg

from tests.helpers import check_invariants, raises_sqlstate


def _states(conn, campaign_id):
    return dict(
        conn.execute(
            "SELECT contact_id, state::text || coalesce(':' || reason, '') FROM plunk_sql.recipients"
            " WHERE campaign_id = %s",
            (campaign_id,),
        ).fetchall()
    )


def test_claim_batch__returns_contact_email_and_data_under_a_lease(plunk, conn):
    p = plunk.project()
    ids = plunk.contacts(p, 5, data={"firstName": "Ada"})
    c = plunk.campaign(p)
    plunk.start(c)

    rows = plunk.claim(c, batch_size=3, lease="2 minutes")

    assert [r[0] for r in rows] == ids[:3]
    assert rows[0][1] == f"{ids[0]}@example.com"
    assert rows[0][2] == {"firstName": "Ada"}
    leases = conn.execute(
        "SELECT lease_expires_at - now() FROM plunk_sql.recipients"
        " WHERE campaign_id = %s AND state = 'claimed'",
        (c,),
    ).fetchall()
    assert len(leases) == 3
    assert all(60 < lease.total_seconds() <= 120 for (lease,) in leases)
    assert plunk.progress(c)["claimed"] == 3
    assert len(plunk.claim(c, 10)) == 2
    assert plunk.claim(c, 10) == []


def test_claim_batch__skips_unsubscribed_and_deleted_contacts_with_reasons(plunk, conn):
    p = plunk.project()
    ids = plunk.contacts(p, 6)
    c = plunk.campaign(p)
    plunk.start(c)
    conn.execute("UPDATE public.contacts SET subscribed = false WHERE id = ANY(%s)", (ids[:2],))
    conn.execute("DELETE FROM public.contacts WHERE id = %s", (ids[2],))

    rows = plunk.claim(c, 10)

    assert {r[0] for r in rows} == set(ids[3:])
    states = _states(conn, c)
    assert states[ids[0]] == states[ids[1]] == "skipped:unsubscribed"
    assert states[ids[2]] == "skipped:contact deleted"
    progress = plunk.progress(c)
    assert (progress["skipped"], progress["claimed"]) == (3, 3)
    check_invariants(conn, c)


def test_claim_batch__transactional_campaign_ignores_consent(plunk, conn):
    p = plunk.project()
    ids = plunk.contacts(p, 3)
    c = plunk.campaign(p, type="TRANSACTIONAL")
    plunk.start(c)
    conn.execute("UPDATE public.contacts SET subscribed = false WHERE id = ANY(%s)", (ids,))
    assert len(plunk.claim(c)) == 3


def test_claim_batch__all_skipped_finishes_the_campaign(plunk, conn):
    p = plunk.project()
    ids = plunk.contacts(p, 4)
    c = plunk.campaign(p)
    plunk.start(c)
    conn.execute("UPDATE public.contacts SET subscribed = false WHERE id = ANY(%s)", (ids,))

    assert plunk.claim(c) == []

    assert plunk.campaign_row(c)["status"] == "SENT"
    assert check_invariants(conn, c)["skipped"] == 4


def test_claim_batch__nothing_for_campaigns_not_sending(plunk, conn):
    p = plunk.project()
    plunk.contacts(p, 3)
    draft = plunk.campaign(p)
    legacy = plunk.campaign(p, status="SENDING")  # not started by the toolkit
    assert plunk.claim(draft) == []
    assert plunk.claim(legacy) == []
    started = plunk.campaign(p)
    plunk.start(started)
    conn.execute(
        "UPDATE plunk_sql.campaign_runs SET paused_at = now() WHERE campaign_id = %s", (started,)
    )
    assert plunk.claim(started) == []


def test_claim_batch__claim_survives_the_claimers_disconnect(plunk, db_url, conn):
    p = plunk.project()
    plunk.contacts(p, 4)
    c = plunk.campaign(p)
    plunk.start(c)
    with psycopg.connect(db_url, autocommit=True) as worker:
        assert len(plunk.claim(c, 2, conn=worker)) == 2
    # the worker is gone; its claim is a committed row that only the lease returns
    assert plunk.progress(c)["claimed"] == 2
    assert len(plunk.claim(c, 10)) == 2


def test_claim_batch__bad_arguments(plunk, conn):
    p = plunk.project()
    c = plunk.campaign(p)
    with raises_sqlstate("22004"):
        conn.execute("SELECT * FROM plunk_sql.claim_batch(NULL)")
    with raises_sqlstate("22004"):
        conn.execute("SELECT * FROM plunk_sql.claim_batch(%s, NULL)", (c,))
    with raises_sqlstate("P0002"):
        conn.execute("SELECT * FROM plunk_sql.claim_batch('nope')")
    for size in (0, -5, 10001):
        with raises_sqlstate("22023", "batch_size"):
            conn.execute("SELECT * FROM plunk_sql.claim_batch(%s, %s)", (c, size))
    for lease in ("0 seconds", "-1 minute", "2 days"):
        with raises_sqlstate("22023", "lease"):
            conn.execute("SELECT * FROM plunk_sql.claim_batch(%s, 10, %s::interval)", (c, lease))
