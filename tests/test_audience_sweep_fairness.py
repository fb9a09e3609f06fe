"""Scheduled starts beside the sweep: no tenant stalls another (issue 12, point 5).

Starts run outside plunk_sql.sweep(), one campaign per statement under statement_timeout
(plunk_sql.start_next_scheduled, called by `plunk-sql sweep` and the pg_cron starts job).
Broken schedules are retried with a backoff behind due valid ones; an audience over the cost
bound fails at once; a slow accepted audience neither delays the sweep (leases of other projects
are released while it runs) nor, once over its budget, the next due campaign.
"""

from __future__ import annotations

import threading
import time

import psycopg

from plunk_sql import cron
from plunk_sql.commands.sweep import start_scheduled
from tests.factories import Plunk


def sweep(conn: psycopg.Connection) -> list[tuple[str, str, int]]:
    return [tuple(r) for r in conn.execute("SELECT * FROM plunk_sql.sweep()").fetchall()]


def starts(conn: psycopg.Connection, timeout: float | None = None) -> list[tuple[str, str, int]]:
    """What a `plunk-sql sweep` pass does after the sweep: one start per statement."""
    return [(str(a), str(c), n) for a, c, n in start_scheduled(conn, timeout)]


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

    assert sweep(conn) == [("lease_expired", leased, 3)]
    rows = starts(conn)
    assert rows[-1] == ("scheduled_started", good, 2)
    assert sum(1 for r in rows if r[0] == "start_failed") == 1000
    backoff = conn.execute(
        "SELECT count(*), min(attempts), bool_and(next_attempt_at > now()) FROM plunk_sql.start_attempts"
    ).fetchone()
    assert backoff == (1000, 1, True)

    # The next pass leaves the broken ones backing off and starts a newly due valid one.
    late = plunk.campaign(good_project, status="SCHEDULED", scheduled_for="2021-01-02 00:00:00")
    assert starts(conn) == [("scheduled_started", late, 2)]


def test_fairness__failed_starts_retry_after_their_backoff_behind_fresh_ones(conn, plunk):
    project = plunk.project()
    plunk.contacts(project, 1)
    broken_schedules(conn, project, 3)
    assert [r[0] for r in starts(conn)] == ["start_failed"] * 3
    conn.execute(
        "UPDATE plunk_sql.start_attempts SET next_attempt_at = now() - interval '1 second'"
    )
    fresh = plunk.campaign(project, status="SCHEDULED", scheduled_for="2025-01-01 00:00:00")
    rows = starts(conn)
    assert rows[0] == ("scheduled_started", fresh, 1)
    assert [r[0] for r in rows[1:]] == ["start_failed"] * 3
    assert conn.execute("SELECT min(attempts) FROM plunk_sql.start_attempts").fetchone() == (2,)
    # Fixed at last: the row goes away with the start.
    conn.execute("""UPDATE public.campaigns SET "audienceType" = 'ALL' WHERE id = 'broken-1'""")
    conn.execute(
        "UPDATE plunk_sql.start_attempts SET next_attempt_at = now() - interval '1 second'"
    )
    assert ("scheduled_started", "broken-1", 1) in starts(conn)
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
    assert sweep(conn) == [("lease_expired", leased, 3)]
    rows = starts(conn)
    assert time.monotonic() - started < 10  # was about 100 s of planning before the cost bound
    assert rows == [("start_failed", hostile, 0), ("scheduled_started", good, 2)]
    error = conn.execute(
        "SELECT last_sqlstate, last_error FROM plunk_sql.start_attempts WHERE campaign_id = %s",
        (hostile,),
    ).fetchone()
    assert error[0] == "22023" and "cost limit" in error[1]


# Accepted (150 filters, under the cost limits) but slow: every filter reads a 3 kB string of
# every contact; about 2-4 s for 5,000 contacts on an idle machine.
SLOW = {
    "logic": "AND",
    "groups": [
        {
            "filters": [
                {"field": "data.bio", "operator": "notContains", "value": f"zz{i}"}
                for i in range(150)
            ]
        }
    ],
}


def slow_schedule(conn: psycopg.Connection, plunk: Plunk, contacts: int = 5000) -> str:
    project = plunk.project()
    conn.execute(
        'INSERT INTO public.contacts (id, email, "projectId", data, "updatedAt")'
        " SELECT 'slow-' || g, 'slow' || g || '@example.com', %s,"
        " jsonb_build_object('bio', repeat('x', 3000)), timezone('UTC', now())"
        " FROM generate_series(1, %s) AS g",
        (project, contacts),
    )
    return plunk.campaign(
        project,
        audience="FILTERED",
        condition=SLOW,
        status="SCHEDULED",
        scheduled_for="2020-01-01 00:00:00",
    )


def test_fairness__a_slow_start_runs_beside_the_sweep_not_inside_it(db_url, conn, plunk):
    slow = slow_schedule(conn, plunk)
    leased = expired_lease(plunk)
    result: list[tuple[str, str, int]] = []
    with psycopg.connect(db_url, autocommit=True) as starter:
        thread = threading.Thread(target=lambda: result.extend(starts(starter)))
        began = time.monotonic()
        thread.start()
        deadline = began + 10
        while not conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE state = 'active'"
            " AND query LIKE %s AND pid <> pg_backend_pid()",
            ("%start_next_scheduled%",),
        ).fetchone():
            assert time.monotonic() < deadline, "the start never began"
            time.sleep(0.01)
        time.sleep(0.2)  # well inside the slow start
        t = time.monotonic()
        rows = sweep(conn)
        sweep_seconds = time.monotonic() - t
        start_running = thread.is_alive()
        thread.join(timeout=120)
        start_seconds = time.monotonic() - began
    print(f"sweep {sweep_seconds:.3f} s while the slow start ran {start_seconds:.3f} s")
    assert rows == [("lease_expired", leased, 3)]  # committed: the leases are pending now
    assert start_running, f"the start ended before the sweep did ({start_seconds:.2f} s)"
    assert sweep_seconds < 1.0 < start_seconds
    assert result == [("scheduled_started", slow, 5000)]


def test_fairness__a_start_over_its_budget_is_cancelled_and_the_next_due_one_starts(conn, plunk):
    slow = slow_schedule(conn, plunk)
    project = plunk.project()
    plunk.contacts(project, 2)
    good = plunk.campaign(project, status="SCHEDULED", scheduled_for="2021-01-01 00:00:00")
    t = time.monotonic()
    rows = starts(conn, timeout=0.3)
    seconds = time.monotonic() - t
    print(f"a pass with a 0.3 s start budget: {seconds:.3f} s")
    assert rows == [("start_failed", slow, 0), ("scheduled_started", good, 2)]
    assert seconds < 1.5
    attempt = conn.execute(
        "SELECT attempts, last_sqlstate, next_attempt_at > now() FROM plunk_sql.start_attempts"
        " WHERE campaign_id = %s",
        (slow,),
    ).fetchone()
    assert attempt == (1, "57014", True)
    assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)  # SET LOCAL only
    assert starts(conn, timeout=0.3) == []  # backing off


def test_fairness__the_pg_cron_starts_command_bounds_each_start(conn, plunk):
    """The starts job's command as pg_cron sends it (one simple query): each statement under its
    own statement_timeout and in its own transaction."""
    slow = slow_schedule(conn, plunk)
    project = plunk.project()
    plunk.contacts(project, 2)
    good = plunk.campaign(project, status="SCHEDULED", scheduled_for="2021-01-01 00:00:00")
    later = plunk.campaign(project, status="SCHEDULED", scheduled_for="2021-01-02 00:00:00")
    with psycopg.connect(conn.info.dsn, autocommit=True) as job:
        t = time.monotonic()
        result = job.pgconn.exec_(cron.starts_command(300, 3).encode())
        seconds = time.monotonic() - t
    assert result.error_message == b"", result.error_message
    print(f"the starts job command, 3 statements, 0.3 s budget: {seconds:.3f} s")
    assert seconds < 2.0
    assert plunk.campaign_row(slow)["status"] == "SCHEDULED"
    assert plunk.campaign_row(good)["status"] == "SENDING"
    assert plunk.campaign_row(later)["status"] == "SENDING"
    row = conn.execute(
        "SELECT last_sqlstate FROM plunk_sql.start_attempts WHERE campaign_id = %s", (slow,)
    ).fetchone()
    assert row == ("57014",)
