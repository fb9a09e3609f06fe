"""Scheduled starts in the sweep: no tenant stalls another (issue 12, point 5).

Broken schedules are retried with a backoff behind due valid ones; an audience over the cost
bound fails at once; the other sweep actions (expired leases) still happen in the same pass.
"""

from __future__ import annotations

import time

import psycopg

from tests.factories import Plunk


def sweep(conn: psycopg.Connection) -> list[tuple[str, str, int]]:
    return [tuple(r) for r in conn.execute("SELECT * FROM plunk_sql.sweep()").fetchall()]


BROKEN = {
    "logic": "AND",
    "groups": [{"filters": [{"field": "nope", "operator": "equals", "value": 1}]}],
}
HOSTILE = {
    "logic": "AND",
    "groups": [
        {
            "filters": [
                {
                    "field": "email.opened",
                    "operator": "triggeredWithin",
                    "value": i + 1,
                    "unit": "days",
                }
                for i in range(300)
            ]
        }
    ],
}


def expired_lease(plunk: Plunk) -> str:
    """A SENDING campaign of its own project with 3 recipients whose leases have passed."""
    project = plunk.project()
    plunk.contacts(project, 3)
    campaign = plunk.campaign(project)
    plunk.start(campaign)
    assert len(plunk.claim(campaign, batch_size=3, lease="10 milliseconds")) == 3
    time.sleep(0.05)
    return campaign


def broken_schedules(conn: psycopg.Connection, project: str, n: int) -> None:
    conn.execute(
        'INSERT INTO public.campaigns (id, name, status, subject, body, "from", "audienceType",'
        ' "audienceCondition", "scheduledFor", "projectId", "updatedAt")'
        " SELECT 'broken-' || g, 'b', 'SCHEDULED', 's', 'b', 'f@example.com', 'FILTERED', %s::jsonb,"
        " timestamp '2020-01-01' + g * interval '1 second', %s, timezone('UTC', now())"
        " FROM generate_series(1, %s) AS g",
        (psycopg.types.json.Jsonb(BROKEN), project, n),
    )


def test_fairness__a_thousand_broken_schedules_do_not_starve_a_valid_one(conn, plunk):
    bad_project = plunk.project()
    broken_schedules(conn, bad_project, 1000)
    good_project = plunk.project()
    plunk.contacts(good_project, 2)
    good = plunk.campaign(good_project, status="SCHEDULED", scheduled_for="2021-01-01 00:00:00")
    leased = expired_lease(plunk)
    conn.execute("UPDATE plunk_sql.settings SET value = '100' WHERE key = 'sweep_batch_size'")

    rows = sweep(conn)
    assert ("scheduled_started", good, 2) in rows
    assert ("lease_expired", leased, 3) in rows
    assert sum(1 for r in rows if r[0] == "start_failed") == 1000
    backoff = conn.execute(
        "SELECT count(*), min(attempts), bool_and(next_attempt_at > now()) FROM plunk_sql.start_attempts"
    ).fetchone()
    assert backoff == (1000, 1, True)

    # The next pass leaves the broken ones backing off and starts a newly due valid one.
    late = plunk.campaign(good_project, status="SCHEDULED", scheduled_for="2021-01-02 00:00:00")
    assert sweep(conn) == [("scheduled_started", late, 2)]


def test_fairness__failed_starts_retry_after_their_backoff_behind_fresh_ones(conn, plunk):
    project = plunk.project()
    plunk.contacts(project, 1)
    broken_schedules(conn, project, 3)
    assert [r[0] for r in sweep(conn)] == ["start_failed"] * 3
    conn.execute(
        "UPDATE plunk_sql.start_attempts SET next_attempt_at = now() - interval '1 second'"
    )
    fresh = plunk.campaign(project, status="SCHEDULED", scheduled_for="2025-01-01 00:00:00")
    rows = sweep(conn)
    assert rows[0] == ("scheduled_started", fresh, 1)
    assert [r[0] for r in rows[1:]] == ["start_failed"] * 3
    assert conn.execute("SELECT min(attempts) FROM plunk_sql.start_attempts").fetchone() == (2,)
    # Fixed at last: the row goes away with the start.
    conn.execute("""UPDATE public.campaigns SET "audienceType" = 'ALL' WHERE id = 'broken-1'""")
    conn.execute(
        "UPDATE plunk_sql.start_attempts SET next_attempt_at = now() - interval '1 second'"
    )
    assert ("scheduled_started", "broken-1", 1) in sweep(conn)
    assert conn.execute(
        "SELECT count(*) FROM plunk_sql.start_attempts WHERE campaign_id = 'broken-1'"
    ).fetchone() == (0,)


def test_fairness__a_hostile_condition_fails_fast_beside_other_tenants(conn, plunk):
    hostile_project = plunk.project()
    plunk.contacts(hostile_project, 50)
    hostile = plunk.campaign(
        hostile_project,
        audience="FILTERED",
        condition=HOSTILE,
        status="SCHEDULED",
        scheduled_for="2020-01-01 00:00:00",
    )
    good_project = plunk.project()
    plunk.contacts(good_project, 2)
    good = plunk.campaign(good_project, status="SCHEDULED", scheduled_for="2021-01-01 00:00:00")
    leased = expired_lease(plunk)
    started = time.monotonic()
    rows = sweep(conn)
    assert time.monotonic() - started < 10  # was about 100 s of planning before the cost bound
    assert ("start_failed", hostile, 0) in rows
    assert ("scheduled_started", good, 2) in rows
    assert ("lease_expired", leased, 3) in rows
    error = conn.execute(
        "SELECT last_sqlstate, last_error FROM plunk_sql.start_attempts WHERE campaign_id = %s",
        (hostile,),
    ).fetchone()
    assert error[0] == "22023" and "cost limit" in error[1]
