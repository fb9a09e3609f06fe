"""The recipient state machine, defined once (sql/12_recipient_states.sql), the CHECK
constraints that tie each state to its columns (migration 0009_recipient_checks), and no
caller session setting steering what the toolkit decides (issue 14)."""

from __future__ import annotations

import psycopg
import pytest

from tests import transition_recorder
from tests.helpers import started_campaign

SETTLED = ("sent", "failed", "skipped")


def test_recipient_transitions__settled_states_never_move(conn):
    moves = transition_recorder.allowed(conn)
    assert [m for m in moves if m[0] in SETTLED] == []
    assert [m for m in moves if m[0] == m[1]] == []
    # Every state is reachable from pending, and every open state can settle.
    reached = {"pending"}
    while True:
        more = {t for f, t in moves if f in reached} - reached
        if not more:
            break
        reached |= more
    assert reached == {"pending", "claimed", "in_flight", *SETTLED}


def test_recipient_transition_allowed__matches_the_table(conn):
    states = ("pending", "claimed", "in_flight", *SETTLED)
    moves = transition_recorder.allowed(conn)
    for f in states:
        for t in states:
            (ok,) = conn.execute(
                "SELECT plunk_sql.recipient_transition_allowed(%s, %s)", (f, t)
            ).fetchone()
            assert ok == ((f, t) in moves), (f, t)
    assert conn.execute(
        "SELECT plunk_sql.recipient_transition_allowed(NULL, 'sent')"
    ).fetchone() == (None,)


def test_recipient_transitions__every_move_of_a_send_is_allowed(conn, plunk):
    # claim, skip at claim, link, settle sent and failed, email deleted, release both edges,
    # lease expiry, cancel: each recorded move is in the definition.
    transition_recorder.install(conn)
    pid, cid, ids = started_campaign(plunk, 10)
    conn.execute("UPDATE public.contacts SET subscribed = false WHERE id = %s", (sorted(ids)[0],))
    claimed = [r[0] for r in plunk.claim(cid, batch_size=8)]
    emails = plunk.create_emails(cid, pid, claimed[:5])
    plunk.set_email_status(emails[:1], "SENT")
    plunk.set_email_status(emails[1:2], "FAILED")
    conn.execute("DELETE FROM public.emails WHERE id = %s", (emails[2],))
    conn.execute(
        "SELECT * FROM plunk_sql.release_claims(%s, %s, %s)", (cid, claimed[5:6], emails[3:4])
    )
    conn.execute(
        "UPDATE plunk_sql.recipients SET lease_expires_at = now() - interval '1 minute'"
        " WHERE campaign_id = %s AND state = 'claimed'",
        (cid,),
    )
    conn.execute("SELECT * FROM plunk_sql.sweep()")
    conn.execute("SELECT plunk_sql.cancel_campaign(%s)", (cid,))
    recorded = transition_recorder.recorded(conn)
    assert transition_recorder.disallowed(conn) == {}
    assert {
        ("pending", "claimed"),
        ("pending", "skipped"),
        ("claimed", "in_flight"),
        ("in_flight", "sent"),
        ("in_flight", "failed"),
        ("in_flight", "skipped"),
        ("in_flight", "pending"),
        ("claimed", "pending"),
    } <= set(recorded)


@pytest.mark.parametrize(
    ("assignment", "rule"),
    [
        ("settled_at = NULL, state = 'sent', email_id = 'e'", "recipients_settled_at_iff_settled"),
        ("settled_at = now()", "recipients_settled_at_iff_settled"),
        ("email_id = 'e'", "recipients_email_id_when_linked"),
        ("state = 'in_flight', in_flight_at = now()", "recipients_email_id_when_linked"),
        ("state = 'skipped', settled_at = now()", "recipients_reason_iff_failed_or_skipped"),
        ("reason = 'because'", "recipients_reason_iff_failed_or_skipped"),
        ("state = 'claimed'", "recipients_lease_when_claimed"),
        ("lease_expires_at = now()", "recipients_lease_when_claimed"),
    ],
)
def test_recipient_columns__a_row_that_contradicts_its_state_is_reported(
    conn, plunk, assignment, rule
):
    # Checked, not enforced (migration 0010 dropped 0009's CHECK constraints: 13-25 us per
    # settle): check_invariants names the rule a hand-written row breaks.
    _, cid, _ = started_campaign(plunk, 1)
    assert _violations(conn, cid) == {}
    conn.execute(f"UPDATE plunk_sql.recipients SET {assignment} WHERE campaign_id = %s", (cid,))
    assert rule in _violations(conn, cid)


def test_recipient_columns__no_check_constraint_on_the_settle_path(conn):
    rows = conn.execute(
        "SELECT conname FROM pg_constraint"
        " WHERE conrelid = 'plunk_sql.recipients'::regclass AND contype = 'c'"
    ).fetchall()
    assert rows == []


@pytest.mark.parametrize(
    "tamper",
    [
        # the sums still equal the recount: only a per-slot rule can see these
        "sent = sent - 1 WHERE slot = 0 OR slot = 1; UPDATE plunk_sql.run_slots SET sent = sent + 2"
        " WHERE slot = 2",
        "unsynced = sent + 1 WHERE slot = 3",
        "taken = -1 WHERE slot = 4; UPDATE plunk_sql.run_slots SET taken = taken + 1 WHERE slot = 5",
    ],
)
def test_counter_slots__a_slot_that_breaks_a_counter_rule_is_reported(conn, plunk, tamper):
    # Checked, not enforced (migration 0012 dropped run_slots' CHECK constraints: about
    # 10 us per settle).
    _, cid, _ = started_campaign(plunk, 3)
    assert _violations(conn, cid) == {}
    conn.execute(f"UPDATE plunk_sql.run_slots SET {tamper}")
    assert "counters_differ_from_recount" in _violations(conn, cid)


def test_counter_slots__no_constraint_on_the_settle_path_and_they_go_with_their_run(conn, plunk):
    rows = conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'plunk_sql.run_slots'::regclass"
        " AND contype IN ('c', 'f')"
    ).fetchall()
    assert rows == []
    _, cid, _ = started_campaign(plunk, 3)
    _, other, _ = started_campaign(plunk, 3)
    slots = "SELECT count(*) FROM plunk_sql.run_slots WHERE campaign_id = %s"
    assert conn.execute(slots, (cid,)).fetchone()[0] == 33
    conn.execute("DELETE FROM public.campaigns WHERE id = %s", (cid,))  # Plunk's delete
    assert conn.execute(slots, (cid,)).fetchone()[0] == 0
    assert conn.execute(slots, (other,)).fetchone()[0] == 33


def _violations(conn, cid: str) -> dict[str, int]:
    return {
        name: n
        for name, n in conn.execute(
            "SELECT invariant, violations FROM plunk_sql.check_invariants(%s)", (cid,)
        ).fetchall()
        if n
    }


def test_session_settings__cancelling_guc_does_not_keep_a_settled_campaign_sending(
    db_url, conn, plunk
):
    # issue 14: a caller's session setting must never change what the toolkit decides.
    pid, cid, _ = started_campaign(plunk, 2)
    claimed = [r[0] for r in plunk.claim(cid)]
    emails = plunk.create_emails(cid, pid, claimed)
    plunk.set_email_status(emails[:1], "SENT")
    with psycopg.connect(db_url, autocommit=True) as caller:
        caller.execute("SELECT set_config('plunk_sql.cancelling', %s, false)", (cid,))
        plunk.set_email_status(emails[1:], "SENT", conn=caller)
    assert plunk.campaign_row(cid)["status"] == "SENT"
    assert plunk.progress(cid)["sent"] == 2


READS_A_SETTING = "current_setting\\s*\\(\\s*'(?!lock_timeout')"


def test_session_settings__no_toolkit_function_reads_a_caller_setting(conn):
    # Only lock_timeout is read (saved, then restored around a retry loop): no decision.
    assert conn.execute(
        "SELECT %(guc)s ~ %(re)s, %(lock)s ~ %(re)s",
        {
            "guc": "current_setting('plunk_sql.cancelling', true)",
            "lock": "current_setting('lock_timeout')",
            "re": READS_A_SETTING,
        },
    ).fetchone() == (True, False)
    rows = conn.execute(
        "SELECT p.proname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'plunk_sql' AND p.prosrc ~ %s",
        (READS_A_SETTING,),
    ).fetchall()
    assert rows == []
