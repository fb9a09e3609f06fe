"""pause_campaign, resume_campaign, cancel_campaign: transitions, errors, concurrent workers."""

from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg
import pytest

from plunk_sql import cli
from plunk_sql.commands.common import EXIT_ILLEGAL_STATE, EXIT_NOT_FOUND
from plunk_sql.errors import IllegalTransition, NotFound, NullArgument, from_pg
from tests.helpers import recipient_states, started_campaign


def call(conn: psycopg.Connection, fn: str, campaign_id: str | None):
    return conn.execute(f"SELECT plunk_sql.{fn}(%s)", (campaign_id,)).fetchone()[0]


@pytest.mark.parametrize("fn", ["pause_campaign", "resume_campaign", "cancel_campaign"])
def test_lifecycle__null_and_unknown_ids_are_rejected(conn, fn):
    with pytest.raises(psycopg.errors.NullValueNotAllowed):
        call(conn, fn, None)
    with pytest.raises(psycopg.errors.NoDataFound) as err:
        call(conn, fn, "no-such-campaign")
    assert isinstance(from_pg(err.value), NotFound)


def test_lifecycle__pause_stops_claims_and_resume_restarts_them(conn, plunk):
    _, campaign, _ = started_campaign(plunk, 5)
    assert len(plunk.claim(campaign, batch_size=2)) == 2
    call(conn, "pause_campaign", campaign)
    assert plunk.progress(campaign)["paused"] is True
    assert plunk.claim(campaign) == []
    assert plunk.campaign_row(campaign)["status"] == "SENDING"
    call(conn, "resume_campaign", campaign)
    assert plunk.progress(campaign)["paused"] is False
    assert len(plunk.claim(campaign)) == 3


def test_lifecycle__paused_campaign_still_settles_its_emails(conn, plunk):
    project, campaign, contacts = started_campaign(plunk, 2)
    plunk.claim(campaign)
    emails = plunk.create_emails(campaign, project, contacts)
    call(conn, "pause_campaign", campaign)
    plunk.set_email_status(emails, "SENT")
    assert plunk.campaign_row(campaign)["status"] == "SENT"


def test_lifecycle__illegal_pause_and_resume(conn, plunk):
    project, campaign, _ = started_campaign(plunk, 1)
    draft = plunk.campaign(project)
    legacy = plunk.campaign(project, status="SENDING")
    for fn, cid, text in [
        ("pause_campaign", draft, "not started by plunk_sql"),
        ("pause_campaign", legacy, "not started by plunk_sql"),
        ("resume_campaign", campaign, "is not paused"),
        ("resume_campaign", draft, "is not paused"),
    ]:
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match=text):
            call(conn, fn, cid)
    call(conn, "pause_campaign", campaign)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="already paused"):
        call(conn, "pause_campaign", campaign)
    call(conn, "cancel_campaign", campaign)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
        call(conn, "pause_campaign", campaign)
    assert isinstance(from_pg(err.value), IllegalTransition)


def test_lifecycle__cancel_settles_open_recipients_deletes_unsent_emails(conn, plunk, db_url):
    project, campaign, contacts = started_campaign(plunk, 6)
    plunk.claim(campaign, batch_size=4)
    emails = plunk.create_emails(campaign, project, contacts[:3])
    plunk.set_email_status(emails[:1], "SENT")
    conn.execute("UPDATE public.emails SET status = 'SENDING' WHERE id = %s", (emails[1],))
    # contacts[2]: PENDING email; contacts[3]: claimed, no email; contacts[4:]: pending.
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN plunk_sql_campaign_finished")
        assert call(conn, "cancel_campaign", campaign) == "CANCELLED"
        notes = list(listener.notifies(timeout=2, stop_after=1))
    assert json.loads(notes[0].payload)["status"] == "CANCELLED"
    assert recipient_states(conn, campaign) == {
        ("sent", None): 1,
        ("in_flight", None): 1,
        ("skipped", "email deleted"): 1,
        ("skipped", "cancelled"): 3,
    }
    left = conn.execute(
        'SELECT id FROM public.emails WHERE "campaignId" = %s ORDER BY id', (campaign,)
    ).fetchall()
    assert sorted(r[0] for r in left) == sorted(emails[:2])
    row = plunk.campaign_row(campaign)
    assert (row["status"], row["sentCount"], row["totalRecipients"]) == ("CANCELLED", 1, 6)
    assert plunk.claim(campaign) == []
    # The SENDING email settles later; the campaign stays CANCELLED.
    plunk.set_email_status(emails[1:2], "SENT")
    row = plunk.campaign_row(campaign)
    assert (row["status"], row["sentCount"]) == ("CANCELLED", 2)
    progress = plunk.progress(campaign)
    assert (progress["sent"], progress["skipped"], progress["in_flight"]) == (2, 4, 0)
    assert progress["finished_at"] is not None


def test_lifecycle__cancel_with_nothing_sent_goes_back_to_draft_and_can_restart(conn, plunk):
    project, campaign, contacts = started_campaign(plunk, 3)
    plunk.claim(campaign, batch_size=1)
    plunk.create_emails(campaign, project, contacts[:1])  # PENDING: deleted by the cancel
    plunk.claim(campaign, batch_size=1, lease="10 milliseconds")  # a dead worker's claim
    time.sleep(0.05)
    assert call(conn, "cancel_campaign", campaign) == "DRAFT"
    row = plunk.campaign_row(campaign)
    assert (row["status"], row["sentCount"], row["totalRecipients"], row["sentAt"]) == (
        "DRAFT",
        0,
        0,
        None,
    )
    assert conn.execute(
        "SELECT count(*) FROM plunk_sql.recipients WHERE campaign_id = %s", (campaign,)
    ).fetchone() == (0,)
    assert conn.execute(
        'SELECT count(*) FROM public.emails WHERE "campaignId" = %s', (campaign,)
    ).fetchone() == (0,)
    assert plunk.start(campaign) == 3
    assert len(plunk.claim(campaign)) == 3


def test_lifecycle__cancel_with_a_live_claim_goes_back_to_draft_and_refuses_its_email(conn, plunk):
    """Nothing sent: DRAFT even with a live claim; the retired run refuses the late email
    (issue 13: before, a live claim forced CANCELLED because only a kept snapshot refused it)."""
    project, campaign, _ = started_campaign(plunk, 3)
    claimed = plunk.claim(campaign, batch_size=1)
    assert call(conn, "cancel_campaign", campaign) == "DRAFT"
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="retired"):
        plunk.create_emails(campaign, project, [claimed[0][0]])
    assert conn.execute(
        "SELECT state::text, reason, count(*) FROM plunk_sql.retired_recipients"
        " WHERE campaign_id = %s GROUP BY 1, 2",
        (campaign,),
    ).fetchall() == [("skipped", "cancelled", 3)]
    assert plunk.campaign_row(campaign)["sentCount"] == 0


def test_lifecycle__cancel_of_a_paused_campaign_clears_the_pause(conn, plunk):
    project, campaign, contacts = started_campaign(plunk, 2)
    plunk.claim(campaign, batch_size=1)
    plunk.create_emails(campaign, project, contacts[:1], status="SENT")
    call(conn, "pause_campaign", campaign)
    assert call(conn, "cancel_campaign", campaign) == "CANCELLED"
    assert plunk.progress(campaign)["paused"] is False


def test_lifecycle__cancel_scheduled_goes_back_to_draft(conn, plunk):
    project = plunk.project()
    plunk.contacts(project, 2)
    campaign = plunk.campaign(project, status="SCHEDULED", scheduled_for="2999-01-01 00:00:00")
    assert call(conn, "cancel_campaign", campaign) == "DRAFT"
    assert plunk.campaign_row(campaign)["status"] == "DRAFT"
    assert conn.execute("SELECT * FROM plunk_sql.sweep()").fetchall() == []


def test_lifecycle__cancel_waiting_on_a_concurrent_start_cancels_the_send(conn, plunk, db_url):
    """cancel_campaign on a SCHEDULED campaign whose row a start holds: it waits, sees the run
    the start made, and cancels the send (the internal started-concurrently path)."""
    pid = plunk.project()
    plunk.contacts(pid, 5)
    cid = plunk.campaign(pid, status="SCHEDULED", scheduled_for="2020-01-01")
    with psycopg.connect(db_url) as starter, psycopg.connect(db_url, autocommit=True) as canceller:
        assert starter.execute("SELECT plunk_sql.start_campaign(%s)", (cid,)).fetchone()[0] == 5
        result: list[object] = []
        thread = threading.Thread(
            target=lambda: result.append(call(canceller, "cancel_campaign", cid))
        )
        thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the cancel waits for the campaigns row
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%%cancel_campaign%%'"
            ).fetchone()[0]
            if waiting:
                break
            time.sleep(0.05)
        starter.commit()
        thread.join(10)
    assert result == ["DRAFT"]  # nothing had been sent
    assert plunk.campaign_row(cid)["status"] == "DRAFT"
    assert recipient_states(conn, cid) == {}  # the run was retired: no current recipients


@pytest.mark.parametrize("status", ["DRAFT", "SENT", "CANCELLED", "SENDING"])
def test_lifecycle__cancel_refuses_other_states(conn, plunk, status):
    project = plunk.project()
    campaign = plunk.campaign(project, status=status)  # SENDING here = legacy, no snapshot
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match=status) as err:
        call(conn, "cancel_campaign", campaign)
    assert plunk.campaign_row(campaign)["status"] == status
    assert isinstance(from_pg(err.value), IllegalTransition)


def test_lifecycle__cancel_twice_is_refused(conn, plunk):
    project, campaign, contacts = started_campaign(plunk, 2)
    plunk.claim(campaign, batch_size=1)
    plunk.create_emails(campaign, project, contacts[:1], status="SENT")
    assert call(conn, "cancel_campaign", campaign) == "CANCELLED"
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="CANCELLED"):
        call(conn, "cancel_campaign", campaign)


def test_lifecycle__worker_holding_a_claim_cannot_mail_after_cancel(conn, plunk):
    project, campaign, contacts = started_campaign(plunk, 2)
    plunk.create_emails(
        campaign, project, [plunk.claim(campaign, batch_size=1)[0][0]], status="SENT"
    )
    claimed = plunk.claim(campaign, batch_size=1)
    assert call(conn, "cancel_campaign", campaign) == "CANCELLED"
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="cancelled"):
        plunk.create_emails(campaign, project, [claimed[0][0]])
    assert claimed[0][0] in contacts


def test_lifecycle__cli_pause_resume_cancel(conn, plunk, db_url, capsys):
    _, campaign, _ = started_campaign(plunk, 2)
    base = ["--database-url", db_url]
    assert cli.main([*base, "pause", campaign]) == 0
    assert cli.main([*base, "pause", campaign]) == EXIT_ILLEGAL_STATE
    assert "already paused" in capsys.readouterr().err
    assert cli.main([*base, "resume", campaign]) == 0
    assert cli.main([*base, "cancel", campaign]) == 0
    assert f"campaign {campaign}: DRAFT" in capsys.readouterr().out
    assert cli.main([*base, "cancel", str(uuid.uuid4())]) == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert "does not exist" in err and "(P0002)" in err


class Workers:
    """N threads, each with its own connection, running the send loop of a worker:
    claim a batch, insert its emails (one statement), mark them SENT."""

    def __init__(self, db_url: str, campaign: str, project: str, n: int = 4) -> None:
        self.db_url, self.campaign, self.project = db_url, campaign, project
        self.stop = threading.Event()
        self.mailed: list[str] = []
        self.errors: list[BaseException] = []
        self.refused = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def __enter__(self) -> Workers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads), "a worker is stuck (deadlock?)"

    def _run(self) -> None:
        try:
            with psycopg.connect(self.db_url, autocommit=True) as c:
                while not self.stop.is_set():
                    batch = c.execute(
                        "SELECT contact_id FROM plunk_sql.claim_batch(%s, 7, '1 minute')",
                        (self.campaign,),
                    ).fetchall()
                    if not batch:
                        time.sleep(0.01)
                        continue
                    contacts = [r[0] for r in batch]
                    ids = [str(uuid.uuid4()) for _ in contacts]
                    try:
                        c.execute(
                            'INSERT INTO public.emails (id, "contactId", subject, body, "from",'
                            ' "sourceType", "campaignId", "projectId", "updatedAt")'
                            " SELECT e, k, 's', 'b', 'f@example.com', 'CAMPAIGN', %s, %s,"
                            " timezone('UTC', now()) FROM unnest(%s::text[], %s::text[]) AS u(e, k)",
                            (self.campaign, self.project, ids, contacts),
                        )
                    except psycopg.errors.ObjectNotInPrerequisiteState:
                        with self.lock:
                            self.refused += 1  # cancelled under our claim: mail nothing
                        continue
                    # Plunk's email job: SENDING first (a deleted email is not sent).
                    sending = c.execute(
                        "UPDATE public.emails SET status = 'SENDING',"
                        " \"updatedAt\" = timezone('UTC', now())"
                        " WHERE id = ANY(%s) AND status = 'PENDING' RETURNING id, \"contactId\"",
                        (ids,),
                    ).fetchall()
                    with self.lock:
                        self.mailed.extend(contact for _, contact in sending)
                    c.execute(
                        "UPDATE public.emails SET status = 'SENT',"
                        " \"sentAt\" = timezone('UTC', now()), \"updatedAt\" = timezone('UTC', now())"
                        ' WHERE id = ANY(%s) AND "sentAt" IS NULL',
                        ([i for i, _ in sending],),
                    )
        except BaseException as exc:
            self.errors.append(exc)


def invariants(conn: psycopg.Connection, campaign: str) -> dict:
    p = conn.execute(
        "SELECT total, pending + claimed + in_flight + sent + failed + skipped, sent"
        " FROM plunk_sql.campaign_progress WHERE campaign_id = %s",
        (campaign,),
    ).fetchone()
    recount = conn.execute(
        "SELECT count(*) FILTER (WHERE state = 'sent') FROM plunk_sql.recipients"
        " WHERE campaign_id = %s",
        (campaign,),
    ).fetchone()[0]
    dupes = conn.execute(
        'SELECT count(*) FROM (SELECT "contactId" FROM public.emails WHERE "campaignId" = %s'
        " GROUP BY 1 HAVING count(*) > 1) AS d",
        (campaign,),
    ).fetchone()[0]
    assert p[0] == p[1], "recipient states do not add up to total"
    assert p[2] == recount, "sent counter differs from a recount"
    assert dupes == 0, "a contact got two emails"
    return {"total": p[0], "sent": p[2]}


def test_lifecycle__pause_resume_cancel_under_concurrent_workers(conn, plunk, db_url):
    project, campaign, _ = started_campaign(plunk, 600)
    with Workers(db_url, campaign, project) as workers:
        deadline = time.monotonic() + 30
        while plunk.progress(campaign)["sent"] < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        call(conn, "pause_campaign", campaign)
        time.sleep(0.2)  # claims that began before the pause finish
        frozen = plunk.progress(campaign)
        time.sleep(0.3)
        during = plunk.progress(campaign)
        # Workers finish the batches they already hold; nothing new is claimed.
        assert during["pending"] == frozen["pending"] > 0
        call(conn, "resume_campaign", campaign)
        while plunk.progress(campaign)["sent"] < frozen["sent"] + 100:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert call(conn, "cancel_campaign", campaign) == "CANCELLED"
        time.sleep(0.2)
    assert not workers.errors, workers.errors
    result = invariants(conn, campaign)
    progress = plunk.progress(campaign)
    assert (progress["pending"], progress["claimed"], progress["in_flight"]) == (0, 0, 0)
    assert plunk.campaign_row(campaign)["status"] == "CANCELLED"
    assert len(workers.mailed) == len(set(workers.mailed)) == result["sent"]
    assert progress["skipped"] == result["total"] - result["sent"]


def test_lifecycle__cancel_right_after_start_under_workers_mails_nobody_after_it(
    conn, plunk, db_url
):
    for _ in range(3):
        project, campaign, _ = started_campaign(plunk, 300)
        with Workers(db_url, campaign, project, n=3) as workers:
            time.sleep(0.05)
            status = call(conn, "cancel_campaign", campaign)
        assert not workers.errors, workers.errors
        assert status in ("DRAFT", "CANCELLED")
        if status == "CANCELLED":
            invariants(conn, campaign)
            sent = conn.execute(
                "SELECT contact_id FROM plunk_sql.recipients"
                " WHERE campaign_id = %s AND state = 'sent'",
                (campaign,),
            ).fetchall()
            assert sorted(workers.mailed) == sorted(r[0] for r in sent)
        else:
            assert workers.mailed == []
            assert conn.execute(
                'SELECT count(*) FROM public.emails WHERE "campaignId" = %s', (campaign,)
            ).fetchone() == (0,)


def test_lifecycle__errors_map_to_exceptions(conn):
    with pytest.raises(psycopg.errors.NullValueNotAllowed) as err:
        call(conn, "cancel_campaign", None)
    assert isinstance(from_pg(err.value), NullArgument)
