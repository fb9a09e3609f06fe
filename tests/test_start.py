"""start_campaign: the snapshot, its audiences, idempotence and its errors."""

from __future__ import annotations

import threading

import psycopg

from tests.helpers import raises_sqlstate


def _recipients(conn, campaign_id):
    return {
        r[0]
        for r in conn.execute(
            "SELECT contact_id FROM plunk_sql.recipients WHERE campaign_id = %s", (campaign_id,)
        )
    }


def test_start_campaign__all_audience_snapshots_subscribed_contacts_of_the_project(plunk, conn):
    p = plunk.project()
    subscribed = plunk.contacts(p, 5)
    plunk.contacts(p, 2, subscribed=False, prefix="unsub")
    other = plunk.project("other")
    plunk.contacts(other, 3, prefix="other")
    c = plunk.campaign(p)

    assert plunk.start(c) == 5

    assert _recipients(conn, c) == set(subscribed)
    row = plunk.campaign_row(c)
    assert row["status"] == "SENDING"
    assert row["totalRecipients"] == 5
    assert row["sentCount"] == 0
    assert row["sentAt"] is not None
    assert row["updatedAt"] >= row["createdAt"]


def test_start_campaign__transactional_campaign_includes_unsubscribed(plunk, conn):
    p = plunk.project()
    plunk.contacts(p, 2)
    plunk.contacts(p, 3, subscribed=False, prefix="unsub")
    c = plunk.campaign(p, type="TRANSACTIONAL")
    assert plunk.start(c) == 5


def test_start_campaign__static_segment_uses_active_memberships(plunk, conn):
    p = plunk.project()
    ids = plunk.contacts(p, 6)
    unsub = plunk.contact(p, subscribed=False, prefix="unsub")
    s = plunk.segment(p, type="STATIC", members=[*ids[:4], unsub])
    conn.execute(
        "UPDATE public.segment_memberships SET \"exitedAt\" = timezone('UTC', now())"
        ' WHERE "segmentId" = %s AND "contactId" = %s',
        (s, ids[0]),
    )
    c = plunk.campaign(p, audience="SEGMENT", segment_id=s)
    assert plunk.start(c) == 3
    assert _recipients(conn, c) == set(ids[1:4])


def test_start_campaign__dynamic_segment_and_filtered_conditions(plunk, conn):
    p = plunk.project()
    pro = plunk.contacts(p, 4, data={"plan": "pro", "seats": 10}, prefix="pro")
    plunk.contacts(p, 3, data={"plan": "free", "seats": 1}, prefix="free")
    plunk.contacts(p, 2, prefix="nodata")
    condition = {
        "logic": "OR",
        "groups": [
            {"filters": [{"field": "data.plan", "operator": "equals", "value": "pro"}]},
            {
                "filters": [{"field": "email", "operator": "contains", "value": "NODATA"}],
                "conditions": {
                    "logic": "AND",
                    "groups": [{"filters": [{"field": "data.plan", "operator": "notExists"}]}],
                },
            },
        ],
    }
    s = plunk.segment(p, condition=condition)
    seg_campaign = plunk.campaign(p, audience="SEGMENT", segment_id=s)
    filtered = plunk.campaign(
        p,
        audience="FILTERED",
        condition={
            "logic": "AND",
            "groups": [
                {"filters": [{"field": "data.seats", "operator": "greaterThan", "value": 5}]}
            ],
        },
    )
    assert plunk.start(seg_campaign) == 6
    assert plunk.start(filtered) == 4
    assert _recipients(conn, filtered) == set(pro)


def test_start_campaign__second_call_returns_same_count_and_changes_nothing(plunk, conn):
    p = plunk.project()
    plunk.contacts(p, 4)
    c = plunk.campaign(p)
    assert plunk.start(c) == 4
    before = plunk.campaign_row(c)
    plunk.contacts(p, 3, prefix="late")  # joins after the snapshot: not a recipient

    assert plunk.start(c) == 4
    assert plunk.campaign_row(c) == before
    assert len(_recipients(conn, c)) == 4


def test_start_campaign__scheduled_campaign_can_start(plunk):
    p = plunk.project()
    plunk.contacts(p, 2)
    c = plunk.campaign(p, status="SCHEDULED", scheduled_for="2020-01-01 00:00:00")
    assert plunk.start(c) == 2
    assert plunk.campaign_row(c)["status"] == "SENDING"


def test_start_campaign__empty_audience_is_sent_at_once(plunk, conn):
    p = plunk.project()
    plunk.contacts(p, 2, subscribed=False)
    c = plunk.campaign(p)
    conn.execute("LISTEN plunk_sql_campaign_finished")

    assert plunk.start(c) == 0

    row = plunk.campaign_row(c)
    assert (row["status"], row["totalRecipients"], row["sentCount"]) == ("SENT", 0, 0)
    assert plunk.progress(c)["finished_at"] is not None
    notes = list(conn.notifies(timeout=2, stop_after=1))
    assert notes and c in notes[0].payload


def test_start_campaign__concurrent_starts_snapshot_once(plunk, db_url):
    p = plunk.project()
    plunk.contacts(p, 300)
    c = plunk.campaign(p)
    results: list[int] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        with psycopg.connect(db_url, autocommit=True) as own:
            barrier.wait()
            results.append(own.execute("SELECT plunk_sql.start_campaign(%s)", (c,)).fetchone()[0])

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [300] * 4
    assert (
        plunk.conn.execute(
            "SELECT count(*) FROM plunk_sql.recipients WHERE campaign_id = %s", (c,)
        ).fetchone()[0]
        == 300
    )


def test_start_campaign__null_id_is_22004(conn):
    with raises_sqlstate("22004", "must not be null"):
        conn.execute("SELECT plunk_sql.start_campaign(NULL)")


def test_start_campaign__unknown_id_is_P0002(conn):
    with raises_sqlstate("P0002", "does not exist"):
        conn.execute("SELECT plunk_sql.start_campaign('nope')")


def test_start_campaign__sending_campaign_not_started_by_toolkit_is_55000(plunk, conn):
    p = plunk.project()
    for status in ("SENDING", "SENT", "CANCELLED"):
        c = plunk.campaign(p, status=status)
        with raises_sqlstate("55000", f"is {status}"):
            plunk.start(c)
    assert conn.execute("SELECT count(*) FROM plunk_sql.campaign_runs").fetchone()[0] == 0


def test_start_campaign__invalid_audience_is_22023_with_no_partial_effect(plunk, conn):
    p = plunk.project()
    plunk.contacts(p, 3)
    other = plunk.project("other")
    foreign = plunk.segment(other, type="STATIC", members=plunk.contacts(other, 2, prefix="o"))
    cases = [
        (plunk.campaign(p, audience="SEGMENT", segment_id=foreign), "another project"),
        (plunk.campaign(p, audience="FILTERED"), "no audienceCondition"),
        (
            plunk.campaign(
                p,
                audience="FILTERED",
                condition={
                    "logic": "AND",
                    "groups": [{"filters": [{"field": "nope", "operator": "equals", "value": 1}]}],
                },
            ),
            "unknown field nope",
        ),
        (
            plunk.campaign(
                p,
                audience="FILTERED",
                condition={"logic": "XOR", "groups": []},
            ),
            "logic must be",
        ),
    ]
    for campaign_id, message in cases:
        with raises_sqlstate("22023", message):
            plunk.start(campaign_id)
        row = plunk.campaign_row(campaign_id)
        assert (row["status"], row["totalRecipients"], row["sentAt"]) == ("DRAFT", 0, None)
    assert conn.execute("SELECT count(*) FROM plunk_sql.campaign_runs").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM plunk_sql.recipients").fetchone()[0] == 0


def test_preview_audience__counts_without_starting(plunk, conn):
    p = plunk.project()
    plunk.contacts(p, 7)
    c = plunk.campaign(p)
    assert conn.execute("SELECT plunk_sql.preview_audience(%s)", (c,)).fetchone()[0] == 7
    assert plunk.campaign_row(c)["status"] == "DRAFT"
    assert conn.execute("SELECT count(*) FROM plunk_sql.recipients").fetchone()[0] == 0


def test_campaign_delete__removes_its_snapshot(plunk, conn):
    p = plunk.project()
    plunk.contacts(p, 5)
    c = plunk.campaign(p)
    plunk.start(c)
    conn.execute("DELETE FROM public.campaigns WHERE id = %s", (c,))
    assert conn.execute("SELECT count(*) FROM plunk_sql.recipients").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM plunk_sql.campaign_runs").fetchone()[0] == 0


def _settings(conn):
    return conn.execute("SELECT current_setting('work_mem'), current_setting('jit')").fetchone()


def test_start_campaign__leaves_the_callers_work_mem_and_jit(plunk, conn):
    # start_campaign runs with its own work_mem and without JIT; the caller's
    # values (session, or SET LOCAL in its transaction) are back after it.
    p = plunk.project()
    plunk.contacts(p, 3)
    conn.execute("SET work_mem = '5MB'")
    with conn.transaction():
        assert plunk.start(plunk.campaign(p)) == 3
        assert _settings(conn) == ("5MB", "on")
    with conn.transaction():
        conn.execute("SET LOCAL work_mem = '6MB'")
        assert plunk.start(plunk.campaign(p)) == 3
        assert _settings(conn) == ("6MB", "on")
    with conn.transaction():
        conn.execute("SET LOCAL work_mem = '256MB'")
        assert plunk.start(plunk.campaign(p)) == 3
        assert _settings(conn) == ("256MB", "on")
    assert _settings(conn) == ("5MB", "on")


def test_start_campaign__failed_start_in_a_savepoint_leaves_the_callers_work_mem(plunk, conn):
    p = plunk.project()
    c = plunk.campaign(p, audience="FILTERED")  # no audienceCondition: 22023
    conn.execute("SET work_mem = '5MB'")
    with conn.transaction():
        with raises_sqlstate("22023", "no audienceCondition"), conn.transaction():
            plunk.start(c)
        assert _settings(conn) == ("5MB", "on")
