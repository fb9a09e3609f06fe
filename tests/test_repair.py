"""repair_campaign and plunk_sql.stuck_campaigns: legacy campaigns stuck before the toolkit."""

from __future__ import annotations

import json

import psycopg
import pytest

from plunk_sql import cli
from plunk_sql.commands.common import EXIT_ILLEGAL_STATE, EXIT_NOT_FOUND
from plunk_sql.errors import IllegalTransition, from_pg


def legacy_campaign(conn: psycopg.Connection, plunk, *, audience: int, emails: int) -> str:
    """A campaign sent by Plunk's own code (no snapshot): "totalRecipients" = audience counted
    at start, one SENT email per contact that was still in the segment at its batch."""
    project = plunk.project()
    conn.execute(
        'INSERT INTO public.contacts (id, email, "projectId", "updatedAt")'
        " SELECT %s || '-c' || i, 'c' || i || '@example.com', %s, timezone('UTC', now())"
        " FROM generate_series(1, %s) AS i",
        (project, project, audience),
    )
    campaign = plunk.campaign(project, status="SENDING")
    conn.execute(
        'UPDATE public.campaigns SET "totalRecipients" = %s, "sentCount" = %s,'
        " \"sentAt\" = timezone('UTC', now()) - interval '2 days',"
        " \"updatedAt\" = timezone('UTC', now()) - interval '2 days' WHERE id = %s",
        (audience, emails, campaign),
    )
    conn.execute(
        'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
        ' "campaignId", status, "sentAt", "projectId", "updatedAt")'
        " SELECT %s || '-' || i, %s || '-c' || i, 's', 'b', 'f@example.com', 'CAMPAIGN', %s,"
        " 'SENT', timezone('UTC', now()) - interval '2 days', %s, timezone('UTC', now())"
        " FROM generate_series(1, %s) AS i",
        (campaign, project, campaign, project, emails),
    )
    return campaign


def stuck(conn: psycopg.Connection) -> list[dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT * FROM plunk_sql.stuck_campaigns ORDER BY campaign_id"
        ).fetchall()


def test_repair__the_39883_of_39884_campaign(conn, plunk, db_url):
    campaign = legacy_campaign(conn, plunk, audience=39_884, emails=39_883)
    [row] = stuck(conn)
    assert (row["campaign_id"], row["reason"], row["open_emails"], row["repairable"]) == (
        campaign,
        "sending without snapshot",
        0,
        True,
    )
    assert row["total"] == 39_884
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN plunk_sql_campaign_finished")
        assert conn.execute("SELECT plunk_sql.repair_campaign(%s)", (campaign,)).fetchone() == (
            "SENT",
        )
        [note] = list(listener.notifies(timeout=2, stop_after=1))
    after = plunk.campaign_row(campaign)
    assert (after["status"], after["totalRecipients"], after["sentCount"]) == (
        "SENT",
        39_883,
        39_883,
    )
    assert json.loads(note.payload)["repaired"] is True
    assert stuck(conn) == []


def test_repair__refuses_while_emails_are_open_and_says_how_many(conn, plunk):
    campaign = legacy_campaign(conn, plunk, audience=10, emails=8)
    conn.execute(
        "UPDATE public.emails SET status = 'PENDING', \"sentAt\" = NULL WHERE id IN (%s, %s)",
        (f"{campaign}-1", f"{campaign}-2"),
    )
    conn.execute(
        "UPDATE public.emails SET status = 'SENDING', \"sentAt\" = NULL WHERE id = %s",
        (f"{campaign}-3",),
    )
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="3 open emails") as err:
        conn.execute("SELECT plunk_sql.repair_campaign(%s)", (campaign,))
    assert isinstance(from_pg(err.value), IllegalTransition)
    row = plunk.campaign_row(campaign)
    assert (row["status"], row["totalRecipients"], row["sentCount"]) == ("SENDING", 10, 8)
    [listed] = stuck(conn)
    assert (listed["open_emails"], listed["repairable"]) == (3, False)
    # Failed emails are closed: repair counts them as created, not sent.
    conn.execute(
        "UPDATE public.emails SET status = 'FAILED' WHERE \"campaignId\" = %s"
        " AND status IN ('PENDING', 'SENDING')",
        (campaign,),
    )
    assert conn.execute("SELECT plunk_sql.repair_campaign(%s)", (campaign,)).fetchone() == ("SENT",)
    row = plunk.campaign_row(campaign)
    assert (row["totalRecipients"], row["sentCount"]) == (8, 5)


def test_repair__refuses_toolkit_and_non_sending_campaigns(conn, plunk):
    project = plunk.project()
    plunk.contacts(project, 2)
    started = plunk.campaign(project)
    plunk.start(started)
    draft = plunk.campaign(project)
    sent = plunk.campaign(project, status="SENT")
    for campaign, text in [(started, "started by plunk_sql"), (draft, "DRAFT"), (sent, "SENT")]:
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match=text):
            conn.execute("SELECT plunk_sql.repair_campaign(%s)", (campaign,))
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("SELECT plunk_sql.repair_campaign('nope')")
    with pytest.raises(psycopg.errors.NullValueNotAllowed):
        conn.execute("SELECT plunk_sql.repair_campaign(NULL)")


def test_repair__recently_active_legacy_campaign_is_not_listed_as_stuck(conn, plunk):
    campaign = legacy_campaign(conn, plunk, audience=3, emails=3)
    conn.execute(
        "UPDATE public.campaigns SET \"updatedAt\" = timezone('UTC', now()) WHERE id = %s",
        (campaign,),
    )
    assert stuck(conn) == []


def test_repair__stuck_view_lists_toolkit_campaigns_without_progress(conn, plunk):
    project = plunk.project()
    contacts = plunk.contacts(project, 3)
    campaign = plunk.campaign(project)
    plunk.start(campaign)
    plunk.claim(campaign, batch_size=1)
    plunk.create_emails(campaign, project, contacts[:1], status="SENT")
    overdue = plunk.campaign(project, status="SCHEDULED", scheduled_for="2020-01-01 00:00:00")
    assert [r["campaign_id"] for r in stuck(conn)] == [overdue]
    conn.execute("UPDATE plunk_sql.settings SET value = '1 millisecond' WHERE key = 'stuck_after'")
    rows = {r["campaign_id"]: r for r in stuck(conn)}
    assert rows[campaign]["reason"] == "no progress"
    assert rows[campaign]["open_recipients"] == 2
    assert rows[overdue]["reason"] == "scheduled start overdue"
    progressed = conn.execute(
        "SELECT n.progressed_at > r.started_at FROM plunk_sql.campaign_runs AS r,"
        " plunk_sql.run_counts(r.campaign_id) AS n WHERE r.campaign_id = %s",
        (campaign,),
    ).fetchone()
    assert progressed == (True,)
    conn.execute("SELECT plunk_sql.pause_campaign(%s)", (campaign,))
    assert campaign not in {r["campaign_id"] for r in stuck(conn)}


def test_repair__cli_dry_run_then_apply_all_stuck(conn, plunk, db_url, capsys):
    good = legacy_campaign(conn, plunk, audience=5, emails=4)
    blocked = legacy_campaign(conn, plunk, audience=3, emails=3)
    conn.execute("UPDATE public.emails SET status = 'PENDING' WHERE id = %s", (f"{blocked}-1",))
    base = ["--database-url", db_url, "repair"]

    assert cli.main([*base, good]) == 0
    out = capsys.readouterr().out
    assert "would repair" in out and "totalRecipients 5 -> 4, sentCount 4 -> 4" in out
    assert "dry run" in out
    assert plunk.campaign_row(good)["status"] == "SENDING"

    assert cli.main([*base, "--all-stuck"]) == EXIT_ILLEGAL_STATE  # one would be refused
    out = capsys.readouterr().out
    assert f"would repair: campaign {good}" in out
    assert f"would refuse: campaign {blocked} still has 1 open emails" in out

    assert cli.main([*base, "--all-stuck", "--apply"]) == EXIT_ILLEGAL_STATE
    captured = capsys.readouterr()
    assert f"repaired: campaign {good}" in captured.out
    assert "1 open emails" in captured.err
    assert plunk.campaign_row(good)["status"] == "SENT"
    assert plunk.campaign_row(blocked)["status"] == "SENDING"

    assert cli.main([*base, "no-such-campaign", "--apply"]) == EXIT_NOT_FOUND
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(base) == 2  # neither an id nor --all-stuck
