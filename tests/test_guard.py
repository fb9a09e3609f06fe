"""Guard mode (issue 15): an unmodified Plunk's sends, replayed statement by statement
(tests/plunk_replay.py), with contacts unsubscribing, leaving the segment and being deleted
mid-send, late joiners, a lost send job and a cancel from Plunk's UI.

Guard mode off: nothing changes; the seed-era campaign stays SENDING forever (which proves the
replay reproduces the bug). Guard mode on: every campaign ends and every snapshot recipient has
exactly one outcome, with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.factories import Plunk
from tests.helpers import raises_sqlstate
from tests.plunk_replay import Era, PlunkSender, segment_audience

PRO = {
    "logic": "AND",
    "groups": [{"filters": [{"field": "data.plan", "operator": "equals", "value": "pro"}]}],
}
NOW = "timezone('UTC', now())"


def guard(conn: psycopg.Connection, mode: str, quiet: str = "1 second") -> None:
    conn.execute("SELECT plunk_sql.set_guard_mode(%s, %s::interval)", (mode, quiet))


def sweep(conn: psycopg.Connection) -> list[tuple[str, str, int]]:
    return [tuple(r) for r in conn.execute("SELECT * FROM plunk_sql.sweep()").fetchall()]


def campaign(conn: psycopg.Connection, campaign_id: str) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            'SELECT status::text AS status, "totalRecipients", "sentCount" FROM public.campaigns'
            " WHERE id = %s",
            (campaign_id,),
        ).fetchone()
    assert row is not None
    return row


def outcomes(conn: psycopg.Connection, campaign_id: str) -> dict[tuple[str, str | None], int]:
    rows = conn.execute(
        "SELECT state, reason, recipients FROM plunk_sql.recipient_outcomes WHERE campaign_id = %s",
        (campaign_id,),
    ).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def check_guarded(conn: psycopg.Connection, campaign_id: str, *, settled: bool) -> dict[str, Any]:
    """Invariant 1 about the snapshot, counters = recount, one outcome per snapshot recipient."""
    with conn.cursor(row_factory=dict_row) as cur:
        p = cur.execute(
            "SELECT * FROM plunk_sql.campaign_progress WHERE campaign_id = %s", (campaign_id,)
        ).fetchone()
        assert p is not None, "no guard snapshot"
        recount = cur.execute(
            "SELECT count(*) AS rows, count(DISTINCT contact_id) AS contacts,"
            " count(*) FILTER (WHERE state = 'sent') AS sent,"
            " count(*) FILTER (WHERE state = 'failed') AS failed,"
            " count(*) FILTER (WHERE state = 'skipped') AS skipped"
            " FROM plunk_sql.recipients WHERE campaign_id = %s",
            (campaign_id,),
        ).fetchone()
    assert recount is not None
    open_ = p["pending"] + p["claimed"] + p["in_flight"]
    assert open_ + p["sent"] + p["failed"] + p["skipped"] == p["total"] == recount["rows"]
    assert recount["rows"] == recount["contacts"]  # one row, so one outcome, per contact
    assert (p["sent"], p["failed"], p["skipped"]) == (
        recount["sent"],
        recount["failed"],
        recount["skipped"],
    )
    if settled:
        assert open_ == 0
    return p


@dataclass
class Scene:
    """A Plunk project with a dynamic segment 'plan = pro' of 40 contacts and a campaign on it."""

    conn: psycopg.Connection
    plunk: Plunk
    project: str
    contacts: list[str]
    campaign: str

    def sender(self, era: Era, batch_size: int = 10) -> PlunkSender:
        return PlunkSender(
            self.conn,
            self.campaign,
            self.project,
            era,
            segment_audience("plan", "pro"),
            batch_size=batch_size,
        )

    def churn(self) -> dict[str, list[str]]:
        """Between batches, contacts not reached yet change (ids sort after the first batches)."""
        unsubscribed, moved, deleted = (
            self.contacts[20:23],
            self.contacts[25:29],
            self.contacts[33:35],
        )
        self.conn.execute(
            f'UPDATE public.contacts SET subscribed = false, "updatedAt" = {NOW} WHERE id = ANY(%s)',
            (unsubscribed,),
        )
        self.conn.execute(
            'UPDATE public.contacts SET data = \'{"plan": "free"}\', "updatedAt" = '
            + NOW
            + " WHERE id = ANY(%s)",
            (moved,),
        )
        self.conn.execute("DELETE FROM public.contacts WHERE id = ANY(%s)", (deleted,))
        late = self.plunk.contacts(self.project, 3, data={"plan": "pro"}, prefix="zlate")
        return {"unsubscribed": unsubscribed, "moved": moved, "deleted": deleted, "late": late}


@pytest.fixture
def scene(conn: psycopg.Connection, plunk: Plunk) -> Scene:
    project = plunk.project()
    contacts = plunk.contacts(project, 40, data={"plan": "pro"})
    plunk.contacts(project, 10, data={"plan": "free"}, prefix="free")
    segment = plunk.segment(project, condition=PRO)
    campaign_id = plunk.campaign(project, audience="SEGMENT", segment_id=segment)
    conn.execute("UPDATE plunk_sql.settings SET value = '1 second' WHERE key = 'abandon_timeout'")
    return Scene(conn, plunk, project, contacts, campaign_id)


def replay_send(
    scene: Scene, era: Era, *, lose_one: bool
) -> tuple[PlunkSender, dict[str, list[str]]]:
    """Batch 1 and 2 (20 contacts) sent, then churn, then the rest; one email job lost."""
    s = scene.sender(era)
    assert s.start() == 40
    s.batch()
    s.batch()
    s.send_all()
    changed = scene.churn()
    s.run_batches()
    lost = {s.emails[-5]} if lose_one else set()
    s.send_all(lost=lost)
    return s, changed


def settle_time() -> None:
    time.sleep(1.2)  # abandon_timeout and guard_quiet_period are 1 second here


# --- guard mode off: nothing changes ------------------------------------------------------------


@pytest.mark.parametrize("era", ["seed", "v2"])
def test_guard__off_seed_and_v2_campaigns_stay_stuck(
    scene: Scene, conn: psycopg.Connection, era: Era
) -> None:
    s, changed = replay_send(scene, era, lose_one=era == "v2")
    settle_time()
    sweep(conn)
    assert campaign(conn, s.campaign_id)["status"] == "SENDING"  # the bug, reproduced
    assert conn.execute(
        "SELECT count(*) FROM plunk_sql.campaign_runs WHERE campaign_id = %s", (s.campaign_id,)
    ).fetchone() == (0,)
    # Plunk mailed a late joiner and dropped who left: 40 - 9 + 3 emails.
    assert len(s.emails) == 34
    assert set(changed["late"]) <= {
        r[0]
        for r in conn.execute(
            'SELECT "contactId" FROM public.emails WHERE "campaignId" = %s', (s.campaign_id,)
        )
    }


def test_guard__off_v2_without_lost_job_ends_by_itself(
    scene: Scene, conn: psycopg.Connection
) -> None:
    s, _ = replay_send(scene, "v2", lose_one=False)
    assert campaign(conn, s.campaign_id) == {
        "status": "SENT",
        "totalRecipients": 34,
        "sentCount": 34,
    }


# --- guard mode on: every campaign ends, every snapshot recipient has one outcome --------------

EXPECTED_SKIPPED: dict[tuple[str, str | None], int] = {
    ("skipped", "unsubscribed"): 3,
    ("skipped", "left the audience"): 4,
    ("skipped", "contact deleted"): 2,
}


@pytest.mark.parametrize("era", ["seed", "v2"])
def test_guard__on_churn_and_lost_job_campaign_ends_sent(
    scene: Scene, conn: psycopg.Connection, era: Era
) -> None:
    guard(conn, "on")
    s, changed = replay_send(scene, era, lose_one=True)
    p = check_guarded(conn, s.campaign_id, settled=False)
    assert (p["status"], p["total"], p["in_flight"], p["pending"]) == ("SENDING", 40, 1, 9)

    settle_time()
    actions = sweep(conn)
    assert ("email_abandoned", s.campaign_id, 1) in actions
    assert ("guard_finalized", s.campaign_id, 9) in actions

    p = check_guarded(conn, s.campaign_id, settled=True)
    assert (p["status"], p["sent"], p["failed"], p["skipped"]) == ("SENT", 30, 1, 9)
    assert outcomes(conn, s.campaign_id) == {
        ("sent", None): 30,
        ("failed", "abandoned by plunk_sql.sweep: PENDING for more than 00:00:01"): 1,
        **EXPECTED_SKIPPED,
    }
    # "totalRecipients" is the snapshot; "sentCount" Plunk's own count (late joiners included).
    assert campaign(conn, s.campaign_id) == {
        "status": "SENT",
        "totalRecipients": 40,
        "sentCount": 33,
    }
    late = conn.execute(
        "SELECT contact_id, kind, email_status FROM plunk_sql.late_joiners WHERE campaign_id = %s",
        (s.campaign_id,),
    ).fetchall()
    assert sorted(late) == sorted((c, "late joiner", "SENT") for c in changed["late"])
    status = conn.execute(
        "SELECT state, ended_by, settled_at_end, late_joiners, guard_mode FROM plunk_sql.guard_status"
        " WHERE campaign_id = %s",
        (s.campaign_id,),
    ).fetchone()
    assert status == ("finalized", "sweep", 9, 3, True)
    assert sweep(conn) == []  # finalized once


def test_guard__on_v2_plunk_ends_it_first_and_the_rest_settles(
    scene: Scene, conn: psycopg.Connection
) -> None:
    guard(conn, "on")
    s, _ = replay_send(scene, "v2", lose_one=False)
    # v2's finalizeIfDone set SENT with its own counts; 9 snapshot recipients are still open.
    assert campaign(conn, s.campaign_id) == {
        "status": "SENT",
        "totalRecipients": 34,
        "sentCount": 34,
    }
    assert check_guarded(conn, s.campaign_id, settled=False)["pending"] == 9
    settle_time()
    assert sweep(conn) == [("guard_finalized", s.campaign_id, 9)]
    check_guarded(conn, s.campaign_id, settled=True)
    assert outcomes(conn, s.campaign_id) == {("sent", None): 31, **EXPECTED_SKIPPED}
    assert campaign(conn, s.campaign_id)["totalRecipients"] == 34  # Plunk's row stands
    assert conn.execute(
        "SELECT ended_by, final_status FROM plunk_sql.guard_runs WHERE campaign_id = %s",
        (s.campaign_id,),
    ).fetchone() == ("plunk", "SENT")


def test_guard__on_quiet_period_waits_for_plunks_batches(
    scene: Scene, conn: psycopg.Connection
) -> None:
    guard(conn, "on", quiet="1 hour")
    s = scene.sender("seed")
    s.start()
    s.batch()
    s.send_all()
    # Nothing open, but batches remain (Plunk's chain) and the quiet period has not passed.
    assert sweep(conn) == []
    conn.execute("SELECT plunk_sql.set_guard_mode('on', '1 second')")
    s.run_batches()
    s.send_all()
    # The seed sender ended it itself (every snapshot contact mailed): the sweep settles nothing.
    assert campaign(conn, s.campaign_id)["status"] == "SENT"
    settle_time()
    assert sweep(conn) == [("guard_finalized", s.campaign_id, 0)]
    check_guarded(conn, s.campaign_id, settled=True)


def test_guard__on_cancel_from_plunks_ui_mid_send_stays_cancelled(
    scene: Scene, conn: psycopg.Connection
) -> None:
    guard(conn, "on")
    s = scene.sender("v2")
    s.start()
    s.batch()
    s.send_all()  # 10 sent
    s.batch()  # 10 more created, PENDING
    assert s.cancel() == "CANCELLED"
    s.send_all()  # the queued jobs find the campaign cancelled: FAILED 'Campaign cancelled'
    s.batch()  # the chain stops on the status check
    assert s.cancel_cleanup() == "CANCELLED"  # some were sent: stays CANCELLED
    settle_time()
    assert sweep(conn) == [("guard_finalized", s.campaign_id, 20)]
    check_guarded(conn, s.campaign_id, settled=True)
    assert outcomes(conn, s.campaign_id) == {
        ("sent", None): 10,
        ("failed", "Campaign cancelled"): 10,
        ("skipped", "cancelled"): 20,
    }
    assert campaign(conn, s.campaign_id)["status"] == "CANCELLED"


def test_guard__on_cancel_before_any_send_back_to_draft_then_sent_again(
    scene: Scene, conn: psycopg.Connection
) -> None:
    guard(conn, "on")
    s = scene.sender("v2")
    s.start()
    s.batch()
    s.cancel()
    assert s.cancel_cleanup() == "DRAFT"  # unsent emails deleted: recipients 'email deleted'
    settle_time()
    assert sweep(conn) == [("guard_finalized", s.campaign_id, 30)]
    assert outcomes(conn, s.campaign_id) == {
        ("skipped", "email deleted"): 10,
        ("skipped", "cancelled"): 30,
    }
    # Sent again from DRAFT: a fresh snapshot replaces the finished run.
    again = scene.sender("v2")
    again.start()
    again.run_batches()
    again.send_all()
    assert campaign(conn, s.campaign_id)["status"] == "SENT"
    p = check_guarded(conn, s.campaign_id, settled=True)
    assert (p["total"], p["sent"]) == (40, 40)


def test_guard__on_duplicate_and_foreign_emails_are_accepted(
    scene: Scene, conn: psycopg.Connection
) -> None:
    guard(conn, "on")
    s = scene.sender("v2")
    s.start()
    first = scene.contacts[0]
    other_project = scene.plunk.project("other")
    for project in (scene.project, scene.project, other_project):  # never refused
        conn.execute(
            'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
            ' "campaignId", status, "projectId", "updatedAt") VALUES (gen_random_uuid()::text, %s,'
            f" 's', 'b', 'f@example.com', 'CAMPAIGN', %s, 'PENDING', %s, {NOW})",
            (first, s.campaign_id, project),
        )
    p = check_guarded(conn, s.campaign_id, settled=False)
    assert (p["in_flight"], p["pending"]) == (1, 39)
    assert conn.execute(
        "SELECT count(*) FROM plunk_sql.late_joiners WHERE campaign_id = %s", (s.campaign_id,)
    ).fetchone() == (0,)


def test_guard__on_unsupported_audience_is_left_to_plunk(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    guard(conn, "on")
    project = plunk.project()
    plunk.contacts(project, 5)
    elsewhere = plunk.segment(plunk.project("other"), type="STATIC")
    condition = {
        "logic": "AND",
        "groups": [{"filters": [{"field": f"segment.{elsewhere}", "operator": "memberOfSegment"}]}],
    }
    c = plunk.campaign(project, audience="FILTERED", condition=condition)
    sender = PlunkSender(conn, c, project, "v2", '"projectId" = %(project)s AND subscribed = true')
    sender.start()  # Plunk's statement succeeds (the server logs a WARNING)
    assert campaign(conn, c)["status"] == "SENDING"
    row = conn.execute(
        "SELECT state, error LIKE '%%SQLSTATE 22023%%' FROM plunk_sql.guard_status WHERE campaign_id = %s",
        (c,),
    ).fetchone()
    assert row == ("left to Plunk", True)
    assert conn.execute(
        "SELECT count(*) FROM plunk_sql.campaign_runs WHERE campaign_id = %s", (c,)
    ).fetchone() == (0,)
    # Its emails are Plunk's alone: no refusal, no record.
    sender.run_batches()
    sender.send_all()
    assert campaign(conn, c)["status"] == "SENT"


def test_guard__on_toolkit_campaigns_keep_their_refusals(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    guard(conn, "on")
    project = plunk.project()
    contacts = plunk.contacts(project, 3)
    c = plunk.campaign(project)
    assert plunk.start(c) == 3
    assert conn.execute(
        "SELECT kind FROM plunk_sql.campaign_runs WHERE campaign_id = %s", (c,)
    ).fetchone() == ("toolkit",)
    assert not conn.execute("SELECT * FROM plunk_sql.guard_runs").fetchall()
    late = plunk.contact(project, prefix="late")
    with raises_sqlstate("23503"):
        plunk.create_emails(c, project, [late])
    rows = plunk.claim(c, 3)
    plunk.create_emails(c, project, [rows[0][0]])
    with raises_sqlstate("23505"):
        plunk.create_emails(c, project, [rows[0][0]])
    assert contacts


def test_guard__claim_batch_hands_out_nothing_of_a_guarded_run(
    scene: Scene, conn: psycopg.Connection
) -> None:
    guard(conn, "on")
    scene.sender("v2").start()
    assert scene.plunk.claim(scene.campaign, 10) == []


def test_guard__settings_are_validated_and_set_by_the_operator(
    conn: psycopg.Connection, db_url: str
) -> None:
    assert conn.execute("SELECT plunk_sql.setting('guard_mode')").fetchone() == ("off",)
    assert conn.execute("SELECT plunk_sql.setting('guard_quiet_period')").fetchone() == (
        "5 minutes",
    )
    with raises_sqlstate("22023"):
        conn.execute("UPDATE plunk_sql.settings SET value = 'yes' WHERE key = 'guard_mode'")
    with raises_sqlstate("22023"):
        conn.execute("SELECT plunk_sql.set_guard_mode('on', '-1 minute')")
    with raises_sqlstate("22004"):
        conn.execute("SELECT plunk_sql.set_guard_mode(NULL)")
    assert conn.execute("SELECT plunk_sql.setting('guard_mode')").fetchone() == ("off",)
    with psycopg.connect(db_url, autocommit=True) as op:
        op.execute("SET ROLE plunk_sql_operator")
        op.execute("SELECT plunk_sql.set_guard_mode('on', '2 minutes')")
        assert op.execute("SELECT count(*) FROM plunk_sql.guard_status").fetchone() == (0,)
    assert conn.execute(
        "SELECT plunk_sql.setting('guard_mode'), plunk_sql.setting('guard_quiet_period')"
    ).fetchone() == ("on", "00:02:00")


def test_guard__other_campaign_updates_never_enter_the_trigger(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'plunk_sql_guard_campaign_started'"
    ).fetchone()
    assert row is not None
    assert "AFTER UPDATE OF status ON public.campaigns" in row[0]
    assert "WHEN" in row[0]


def test_guard__doctor_says_whether_it_is_on_and_what_it_did(
    scene: Scene, conn: psycopg.Connection, plunk: Plunk
) -> None:
    from plunk_sql.commands.doctor import _text, diagnose

    guard(conn, "on")
    replay_send(scene, "v2", lose_one=False)
    settle_time()
    sweep(conn)
    elsewhere = plunk.segment(plunk.project("other"), type="STATIC")
    left = plunk.campaign(
        scene.project,
        audience="FILTERED",
        condition={
            "logic": "AND",
            "groups": [
                {"filters": [{"field": f"segment.{elsewhere}", "operator": "memberOfSegment"}]}
            ],
        },
    )
    PlunkSender(conn, left, scene.project, "v2", segment_audience("plan", "pro")).start()
    with psycopg.connect(conn.info.dsn, autocommit=True) as c:
        report = diagnose(c)
    assert report["guard"]["finalized"] == 1 and report["guard"]["settled_at_end"] == 9
    assert any(left in p and "could not follow" in p for p in report["problems"])
    text = _text(report)
    assert "guard mode: on (quiet period 00:00:01): following 0, finalized 1" in text


def test_guard__resend_that_cannot_be_snapshotted_drops_the_old_run(
    scene: Scene, conn: psycopg.Connection, plunk: Plunk
) -> None:
    guard(conn, "on")
    s = scene.sender("v2")
    s.start()
    s.cancel()
    assert s.cancel_cleanup() == "DRAFT"
    elsewhere = plunk.segment(plunk.project("other"), type="STATIC")
    conn.execute(  # Plunk's update of the draft: an audience the toolkit refuses
        'UPDATE public.campaigns SET "audienceType" = \'FILTERED\', "segmentId" = NULL,'
        ' "audienceCondition" = %s WHERE id = %s',
        (
            psycopg.types.json.Jsonb(
                {
                    "logic": "AND",
                    "groups": [
                        {
                            "filters": [
                                {"field": f"segment.{elsewhere}", "operator": "memberOfSegment"}
                            ]
                        }
                    ],
                }
            ),
            s.campaign_id,
        ),
    )
    scene.sender("v2").start()
    assert campaign(conn, s.campaign_id)["status"] == "SENDING"
    assert conn.execute(
        "SELECT count(*) FROM plunk_sql.campaign_runs WHERE campaign_id = %s", (s.campaign_id,)
    ).fetchone() == (0,)
    assert conn.execute(
        "SELECT state FROM plunk_sql.guard_status WHERE campaign_id = %s", (s.campaign_id,)
    ).fetchone() == ("left to Plunk",)


def test_guard__turned_off_mid_send_still_finishes_what_it_follows(
    scene: Scene, conn: psycopg.Connection
) -> None:
    guard(conn, "on")
    s = scene.sender("seed")
    s.start()
    s.batch()
    s.send_all()
    guard(conn, "off")
    scene.churn()
    s.run_batches()
    s.send_all()
    settle_time()
    assert sweep(conn) == [("guard_finalized", s.campaign_id, 9)]
    p = check_guarded(conn, s.campaign_id, settled=True)
    assert (p["status"], p["sent"], p["skipped"]) == ("SENT", 31, 9)


def test_guard__email_after_the_end_is_recorded_not_refused(
    scene: Scene, conn: psycopg.Connection
) -> None:
    guard(conn, "on")
    s, changed = replay_send(scene, "seed", lose_one=False)
    settle_time()
    assert sweep(conn) == [("guard_finalized", s.campaign_id, 9)]
    # A very late batch (after the quiet period) mails a contact that had left: accepted.
    moved = changed["moved"][0]
    conn.execute(
        'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
        ' "campaignId", status, "projectId", "updatedAt") VALUES (gen_random_uuid()::text, %s,'
        f" 's', 'b', 'f@example.com', 'CAMPAIGN', %s, 'PENDING', %s, {NOW})",
        (moved, s.campaign_id, scene.project),
    )
    assert conn.execute(
        "SELECT kind FROM plunk_sql.late_joiners WHERE campaign_id = %s AND contact_id = %s",
        (s.campaign_id, moved),
    ).fetchone() == ("after end",)
    p = check_guarded(conn, s.campaign_id, settled=True)
    assert (p["sent"], p["skipped"]) == (31, 9)


def test_guard__pause_holds_the_finalization(scene: Scene, conn: psycopg.Connection) -> None:
    guard(conn, "on")
    s, _ = replay_send(scene, "seed", lose_one=False)
    conn.execute("SELECT plunk_sql.pause_campaign(%s)", (s.campaign_id,))
    settle_time()
    assert sweep(conn) == []
    conn.execute("SELECT plunk_sql.resume_campaign(%s)", (s.campaign_id,))
    assert sweep(conn) == [("guard_finalized", s.campaign_id, 9)]
    assert campaign(conn, s.campaign_id)["status"] == "SENT"


def test_guard__lost_job_of_a_late_joiner_is_abandoned_too(
    scene: Scene, conn: psycopg.Connection
) -> None:
    guard(conn, "on")
    s = scene.sender("v2")
    s.start()
    s.batch()
    s.batch()
    s.send_all()
    changed = scene.churn()
    s.run_batches()
    s.send_all(lost={s.emails[-1]})  # the last email is a late joiner's
    settle_time()
    actions = sweep(conn)
    assert ("email_abandoned", s.campaign_id, 1) in actions
    assert ("guard_finalized", s.campaign_id, 9) in actions
    assert campaign(conn, s.campaign_id)["status"] == "SENT"
    statuses = conn.execute(
        "SELECT email_status, count(*) FROM plunk_sql.late_joiners WHERE campaign_id = %s"
        " GROUP BY 1 ORDER BY 1",
        (s.campaign_id,),
    ).fetchall()
    assert statuses == [("FAILED", 1), ("SENT", 2)]
    assert len(changed["late"]) == 3


def test_guard__stuck_campaigns_says_a_guarded_send_is_plunks_and_guard_mode_is_on(
    scene: Scene, conn: psycopg.Connection
) -> None:
    guard(conn, "on", quiet="1 hour")
    s = scene.sender("seed")
    s.start()
    s.batch()
    conn.execute("UPDATE plunk_sql.settings SET value = '1 second' WHERE key = 'stuck_after'")
    conn.execute(
        "UPDATE plunk_sql.campaign_runs SET started_at = now() - interval '1 minute',"
        " progressed_at = NULL WHERE campaign_id = %s",
        (s.campaign_id,),
    )
    rows = conn.execute(
        "SELECT reason, hint FROM plunk_sql.stuck_campaigns WHERE campaign_id = %s",
        (s.campaign_id,),
    ).fetchall()
    assert len(rows) == 1 and rows[0][0] == "no progress"
    assert "guarded send (guard mode on)" in rows[0][1]
    guard(conn, "off")
    hint = conn.execute(
        "SELECT hint FROM plunk_sql.stuck_campaigns WHERE campaign_id = %s", (s.campaign_id,)
    ).fetchone()
    assert hint is not None and "guard mode off" in hint[0]
