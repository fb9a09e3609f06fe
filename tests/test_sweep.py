"""plunk_sql.sweep(): leases, abandoned emails, the finalize backstop, concurrency; the scheduled
starts next to it (plunk_sql.start_next_scheduled, one statement each; `plunk-sql sweep` runs both)."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

from plunk_sql import cli
from plunk_sql.commands.sweep import start_scheduled


def sweep(conn: psycopg.Connection) -> list[tuple[str, str, int]]:
    return [tuple(r) for r in conn.execute("SELECT * FROM plunk_sql.sweep()").fetchall()]


def states(conn: psycopg.Connection, campaign_id: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT state::text, count(*) FROM plunk_sql.recipients WHERE campaign_id = %s GROUP BY 1",
        (campaign_id,),
    ).fetchall()
    return dict(rows)


def set_setting(conn: psycopg.Connection, key: str, value: str) -> None:
    conn.execute("UPDATE plunk_sql.settings SET value = %s WHERE key = %s", (value, key))


def sending(plunk, n: int) -> tuple[str, str, list[str]]:
    project = plunk.project()
    contacts = plunk.contacts(project, n)
    campaign = plunk.campaign(project)
    assert plunk.start(campaign) == n
    return project, campaign, contacts


def age_in_flight(conn: psycopg.Connection, campaign_id: str, by: str = "2 hours") -> None:
    """Make the campaign's in-flight recipients and their emails look `by` old."""
    conn.execute(
        "UPDATE plunk_sql.recipients SET in_flight_at = in_flight_at - %s::interval"
        " WHERE campaign_id = %s AND state = 'in_flight'",
        (by, campaign_id),
    )
    conn.execute(
        'UPDATE public.emails SET "updatedAt" = "updatedAt" - %s::interval WHERE "campaignId" = %s',
        (by, campaign_id),
    )


def test_sweep__nothing_to_do_returns_no_rows_and_records_the_run(conn, plunk):
    sending(plunk, 3)
    assert sweep(conn) == []
    last = conn.execute("SELECT last_run_at IS NOT NULL, last_actions FROM plunk_sql.sweep_state")
    assert last.fetchone() == (True, 0)


def test_sweep__expired_lease_goes_back_to_pending_and_is_reclaimed(conn, plunk):
    _, campaign, contacts = sending(plunk, 5)
    first = plunk.claim(campaign, batch_size=3, lease="10 milliseconds")
    assert len(first) == 3
    time.sleep(0.05)
    assert ("lease_expired", campaign, 3) in sweep(conn)
    assert states(conn, campaign) == {"pending": 5}
    again = plunk.claim(campaign, batch_size=5)
    assert sorted(r[0] for r in again) == sorted(contacts)
    claims = conn.execute(
        "SELECT contact_id, claims FROM plunk_sql.recipients WHERE campaign_id = %s", (campaign,)
    ).fetchall()
    assert {c for c, n in claims if n == 2} == {r[0] for r in first}


def test_sweep__live_lease_is_left_alone(conn, plunk):
    _, campaign, _ = sending(plunk, 4)
    plunk.claim(campaign, batch_size=4, lease="5 minutes")
    assert sweep(conn) == []
    assert states(conn, campaign) == {"claimed": 4}


def test_sweep__expired_lease_of_an_emailed_recipient_is_not_released(conn, plunk):
    project, campaign, contacts = sending(plunk, 2)
    plunk.claim(campaign, batch_size=2, lease="10 milliseconds")
    plunk.create_emails(campaign, project, contacts[:1])
    time.sleep(0.05)
    assert sweep(conn) == [("lease_expired", campaign, 1)]
    assert states(conn, campaign) == {"in_flight": 1, "pending": 1}


def test_sweep__batches_are_bounded_by_sweep_batch_size(conn, plunk):
    set_setting(conn, "sweep_batch_size", "10")
    _, campaign, _ = sending(plunk, 25)
    plunk.claim(campaign, batch_size=25, lease="10 milliseconds")
    time.sleep(0.05)
    assert [sweep(conn), sweep(conn), sweep(conn), sweep(conn)] == [
        [("lease_expired", campaign, 10)],
        [("lease_expired", campaign, 10)],
        [("lease_expired", campaign, 5)],
        [],
    ]


def test_sweep__abandoned_emails_fail_and_the_campaign_finishes(conn, plunk):
    project, campaign, contacts = sending(plunk, 4)
    plunk.claim(campaign, batch_size=4)
    emails = plunk.create_emails(campaign, project, contacts)
    plunk.set_email_status(emails[:2], "SENT")
    conn.execute("UPDATE public.emails SET status = 'SENDING' WHERE id = %s", (emails[2],))
    assert sweep(conn) == []  # younger than abandon_timeout (1 hour)
    age_in_flight(conn, campaign)
    assert sweep(conn) == [("email_abandoned", campaign, 2)]
    rows = conn.execute(
        "SELECT status::text, error, \"updatedAt\" > timezone('UTC', now()) - interval '1 minute'"
        " FROM public.emails WHERE id = ANY(%s) ORDER BY id",
        (emails[2:],),
    ).fetchall()
    assert {r[0] for r in rows} == {"FAILED"}
    assert all(r[1].startswith("abandoned by plunk_sql.sweep") and r[2] for r in rows)
    assert {r[1].split(": ")[1].split(" ")[0] for r in rows} == {"PENDING", "SENDING"}
    reasons = conn.execute(
        "SELECT reason FROM plunk_sql.recipients WHERE campaign_id = %s AND state = 'failed'",
        (campaign,),
    ).fetchall()
    assert len(reasons) == 2 and all("abandoned" in r[0] for r in reasons)
    progress = plunk.progress(campaign)
    assert (progress["status"], progress["sent"], progress["failed"]) == ("SENT", 2, 2)
    assert plunk.campaign_row(campaign)["sentCount"] == 2


def test_sweep__abandon_timeout_is_a_setting_and_recent_updates_keep_an_email(conn, plunk):
    set_setting(conn, "abandon_timeout", "1 second")
    project, campaign, contacts = sending(plunk, 2)
    plunk.claim(campaign)
    emails = plunk.create_emails(campaign, project, contacts)
    age_in_flight(conn, campaign, "5 seconds")
    # A worker touched the second email just now (SENDING retry): it is alive.
    conn.execute(
        "UPDATE public.emails SET status = 'SENDING', \"updatedAt\" = timezone('UTC', now())"
        " WHERE id = %s",
        (emails[1],),
    )
    assert sweep(conn) == [("email_abandoned", campaign, 1)]
    assert states(conn, campaign) == {"failed": 1, "in_flight": 1}


def test_sweep__due_schedule_starts_and_future_schedule_waits(conn, plunk):
    project = plunk.project()
    plunk.contacts(project, 3)
    due = plunk.campaign(project, status="SCHEDULED", scheduled_for="2020-01-01 00:00:00")
    future = plunk.campaign(project, status="SCHEDULED", scheduled_for="2999-01-01 00:00:00")
    assert sweep(conn) == []  # the sweep itself no longer starts campaigns
    assert plunk.campaign_row(due)["status"] == "SCHEDULED"
    assert start_scheduled(conn) == [("scheduled_started", due, 3)]
    assert plunk.campaign_row(due)["status"] == "SENDING"
    assert plunk.campaign_row(future)["status"] == "SCHEDULED"
    assert states(conn, due) == {"pending": 3}
    assert states(conn, future) == {}
    assert start_scheduled(conn) == []


def test_sweep__a_schedule_that_becomes_due_starts_on_the_next_sweep(conn, plunk):
    project = plunk.project()
    plunk.contacts(project, 1)
    campaign = plunk.campaign(project, status="SCHEDULED", scheduled_for="2999-01-01 00:00:00")
    assert start_scheduled(conn) == []
    # "scheduledFor" is timestamp(3): now() would round *up* to the millisecond, possibly past
    # the sweep's utc_now() a moment later (2 runs in 9 failed). Truncated, it is <= any later now.
    conn.execute(
        "UPDATE public.campaigns"
        " SET \"scheduledFor\" = date_trunc('milliseconds', timezone('UTC', now())) WHERE id = %s",
        (campaign,),
    )
    assert start_scheduled(conn) == [("scheduled_started", campaign, 1)]


def test_sweep__a_scheduled_start_that_fails_is_reported_and_does_not_block_others(conn, plunk):
    project = plunk.project()
    plunk.contacts(project, 2)
    bad = plunk.campaign(
        project,
        audience="FILTERED",
        condition={"logic": "AND", "groups": [{"filters": [{"field": "nope", "operator": "x"}]}]},
        status="SCHEDULED",
        scheduled_for="2020-01-01 00:00:00",
    )
    good = plunk.campaign(project, status="SCHEDULED", scheduled_for="2020-01-02 00:00:00")
    assert start_scheduled(conn) == [("start_failed", bad, 0), ("scheduled_started", good, 2)]
    assert plunk.campaign_row(bad)["status"] == "SCHEDULED"


def test_sweep__finalize_backstop_sets_sent_and_notifies(conn, plunk, db_url):
    project, campaign, contacts = sending(plunk, 2)
    plunk.claim(campaign)
    plunk.create_emails(campaign, project, contacts, status="SENT")
    assert plunk.campaign_row(campaign)["status"] == "SENT"
    # Simulate a missed completion: counters complete, status still SENDING.
    conn.execute("UPDATE public.campaigns SET status = 'SENDING' WHERE id = %s", (campaign,))
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN plunk_sql_campaign_finished")
        assert sweep(conn) == [("finalized", campaign, 2)]
        notes = list(listener.notifies(timeout=2, stop_after=1))
    assert plunk.campaign_row(campaign)["status"] == "SENT"
    payload = json.loads(notes[0].payload)
    assert payload == {
        "campaign_id": campaign,
        "status": "SENT",
        "total": 2,
        "sent": 2,
        "failed": 0,
        "skipped": 0,
    }


def test_sweep__finalize_waits_for_open_recipients(conn, plunk):
    _, campaign, _ = sending(plunk, 2)
    assert sweep(conn) == []
    assert plunk.campaign_row(campaign)["status"] == "SENDING"


def test_sweep__paused_campaign_keeps_its_emails_but_leases_still_expire(conn, plunk):
    project, campaign, contacts = sending(plunk, 4)
    plunk.claim(campaign, batch_size=2)
    plunk.create_emails(campaign, project, contacts[:2])
    age_in_flight(conn, campaign)
    plunk.claim(campaign, batch_size=2, lease="10 milliseconds")
    conn.execute("SELECT plunk_sql.pause_campaign(%s)", (campaign,))
    time.sleep(0.05)
    assert sweep(conn) == [("lease_expired", campaign, 2)]
    assert states(conn, campaign) == {"in_flight": 2, "pending": 2}
    conn.execute("SELECT plunk_sql.resume_campaign(%s)", (campaign,))
    assert sweep(conn) == [("email_abandoned", campaign, 2)]


def test_sweep__legacy_campaign_emails_are_never_touched(conn, plunk):
    project = plunk.project()
    contacts = plunk.contacts(project, 2)
    legacy = plunk.campaign(project, status="SENDING")
    emails = plunk.create_emails(legacy, project, contacts)
    conn.execute(
        "UPDATE public.emails SET \"updatedAt\" = timezone('UTC', now()) - interval '3 hours'"
        " WHERE id = ANY(%s)",
        (emails,),
    )
    assert sweep(conn) == []
    assert plunk.campaign_row(legacy)["status"] == "SENDING"


def test_sweep__a_second_sweep_skips_while_one_holds_the_lock(conn, plunk, db_url):
    _, campaign, _ = sending(plunk, 3)
    plunk.claim(campaign, lease="10 milliseconds")
    time.sleep(0.05)
    with psycopg.connect(db_url) as first:
        assert sweep(first) == [("lease_expired", campaign, 3)]  # transaction still open
        started = time.monotonic()
        assert sweep(conn) == []  # skipped at once, did not wait
        assert time.monotonic() - started < 1
        first.commit()
    assert sweep(conn) == []
    assert states(conn, campaign) == {"pending": 3}


def test_sweep__concurrent_sweeps_act_exactly_once(conn, plunk, db_url):
    _, campaign, _ = sending(plunk, 40)
    plunk.claim(campaign, batch_size=40, lease="10 milliseconds")
    time.sleep(0.05)
    barrier = threading.Barrier(6)
    results: list[list[tuple[str, str, int]]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                barrier.wait(timeout=10)
                for _ in range(3):
                    results.append(sweep(c))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    released = sum(n for rows in results for (action, _, n) in rows if action == "lease_expired")
    assert released == 40
    assert states(conn, campaign) == {"pending": 40}


def test_sweep__settings_are_validated(conn):
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        set_setting(conn, "abandon_timeout", "soon")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        set_setting(conn, "abandon_timeout", "-1 hour")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        set_setting(conn, "sweep_batch_size", "0")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        set_setting(conn, "sweep_schedule", " ")
    set_setting(conn, "sweep_batch_size", "50")
    assert conn.execute("SELECT plunk_sql.setting('sweep_batch_size')").fetchone()[0] == "50"
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("SELECT plunk_sql.setting('nope')")
    with pytest.raises(psycopg.errors.NullValueNotAllowed):
        conn.execute("SELECT plunk_sql.setting(NULL)")


def test_sweep__cli_once_prints_json(conn, plunk, db_url, capsys):
    project = plunk.project()
    plunk.contacts(project, 2)
    due = plunk.campaign(project, status="SCHEDULED", scheduled_for="2020-01-01 00:00:00")
    assert cli.main(["--database-url", db_url, "sweep", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line) for line in out] == [
        {"action": "scheduled_started", "campaign_id": due, "affected": 2}
    ]
    assert cli.main(["--database-url", db_url, "sweep"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_sweep__cli_loop_runs_the_sweep_every_period(conn, plunk, db_url, capsys):
    _, campaign, _ = sending(plunk, 2)
    plunk.claim(campaign, lease="150 milliseconds")
    assert cli.main(["--database-url", db_url, "sweep", "--every", "100ms", "--count", "4"]) == 0
    out = capsys.readouterr().out
    assert f"lease_expired      {campaign}  2" in out
    assert states(conn, campaign) == {"pending": 2}
    last = conn.execute(
        "SELECT last_run_at > now() - interval '1 minute' FROM plunk_sql.sweep_state"
    )
    assert last.fetchone()[0]


def test_sweep__cli_rejects_a_bad_duration(db_url, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--database-url", db_url, "sweep", "--every", "soon"])
    assert "invalid duration" in capsys.readouterr().err
