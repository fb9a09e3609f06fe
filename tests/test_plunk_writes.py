"""Plunk's own writes beside a toolkit campaign (issue 13), replayed statement by statement.

Each statement below is written the way Plunk's Prisma client sends it (quoted "public"
tables, CAST to the enum, "updatedAt" set by the client): its cancel in three shapes, its
cleanup job, its DRAFT reset, its sender inserting emails without a claim, its email job, its
v2 completion writes, its suppression rules. Every test failed on the code before issue 13.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from tests import transition_recorder
from tests.factories import Plunk
from tests.helpers import check_invariants, raises_sqlstate, recipient_states, started_campaign


def one(conn: psycopg.Connection, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """The single row a query returns."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row


# --- Plunk's statements ---------------------------------------------------------------------


def plunk_set_status(conn: psycopg.Connection, campaign: str, status: str) -> None:
    """CampaignService.cancel: prisma.campaign.update({data: {status}})."""
    conn.execute(
        'UPDATE "public"."campaigns" SET "status" = CAST(%s::text AS "public"."CampaignStatus"),'
        ' "updatedAt" = timezone(\'UTC\', now()) WHERE ("public"."campaigns"."id" = %s AND 1=1)',
        (status, campaign),
    )


def plunk_cleanup_unsent(conn: psycopg.Connection, campaign: str) -> int:
    """The cancel cleanup job: unsent emails created before the cancel, 1,000 per statement."""
    deleted = 0
    while True:
        ids = [
            r[0]
            for r in conn.execute(
                'SELECT "public"."emails"."id" FROM "public"."emails" WHERE ("public"."emails"."campaignId" = %s'
                ' AND "public"."emails"."sentAt" IS NULL AND "public"."emails"."createdAt" <= %s)'
                " LIMIT 1000",
                (campaign, "2999-01-01"),
            ).fetchall()
        ]
        if not ids:
            return deleted
        deleted += conn.execute(
            'DELETE FROM "public"."emails" WHERE ("public"."emails"."id" = ANY(%s) AND 1=1)', (ids,)
        ).rowcount


def plunk_back_to_draft(conn: psycopg.Connection, campaign: str) -> None:
    """The cleanup's end when no email ever left: DRAFT, counters, sentAt, scheduledFor cleared."""
    conn.execute(
        'UPDATE "public"."campaigns" SET "status" = CAST(%s::text AS "public"."CampaignStatus"),'
        ' "sentCount" = 0, "deliveredCount" = 0, "openedCount" = 0, "clickedCount" = 0,'
        ' "bouncedCount" = 0, "sentAt" = NULL, "scheduledFor" = NULL,'
        ' "updatedAt" = timezone(\'UTC\', now()) WHERE ("public"."campaigns"."id" = %s AND 1=1)',
        ("DRAFT", campaign),
    )


def plunk_insert_email(
    conn: psycopg.Connection, campaign: str, project: str, contact: str, status: str = "PENDING"
) -> str:
    """Plunk's sender (processBatch -> sendCampaignEmail): one emails row, no claim."""
    eid = str(uuid.uuid4())
    conn.execute(
        'INSERT INTO "public"."emails" ("id","contactId","subject","body","from","sourceType",'
        '"campaignId","status","projectId","createdAt","updatedAt") VALUES'
        " (%s,%s,'s','b','news@example.com',CAST('CAMPAIGN'::text AS \"public\".\"EmailSourceType\"),"
        "%s,CAST(%s::text AS \"public\".\"EmailStatus\"),%s,timezone('UTC', now()),timezone('UTC', now()))",
        (eid, contact, campaign, status, project),
    )
    return eid


def plunk_record_sent(conn: psycopg.Connection, email: str) -> int:
    """The email job's recordSent: updateMany where id and sentAt null."""
    return conn.execute(
        'UPDATE "public"."emails" SET "status" = CAST(\'SENT\'::text AS "public"."EmailStatus"),'
        ' "sentAt" = timezone(\'UTC\', now()), "messageId" = %s, "error" = NULL,'
        " \"updatedAt\" = timezone('UTC', now())"
        ' WHERE ("public"."emails"."id" = %s AND "public"."emails"."sentAt" IS NULL)',
        (str(uuid.uuid4()), email),
    ).rowcount


def plunk_fail_for_stopped_campaign(conn: psycopg.Connection, email: str) -> int:
    """The email job's failForStoppedCampaign: PENDING -> FAILED 'Campaign cancelled'."""
    return conn.execute(
        'UPDATE "public"."emails" SET "status" = CAST(\'FAILED\'::text AS "public"."EmailStatus"),'
        " \"error\" = 'Campaign cancelled', \"updatedAt\" = timezone('UTC', now())"
        ' WHERE ("public"."emails"."id" = %s AND "public"."emails"."status" = CAST(\'PENDING\'::text'
        ' AS "public"."EmailStatus"))',
        (email,),
    ).rowcount


def plunk_reconcile_total(conn: psycopg.Connection, campaign: str) -> int:
    """v2's last batch: totalRecipients := the emails the campaign has."""
    n: int = one(
        conn,
        'SELECT COUNT(*) FROM "public"."emails" WHERE "public"."emails"."campaignId" = %s',
        (campaign,),
    )[0]
    conn.execute(
        'UPDATE "public"."campaigns" SET "totalRecipients" = %s, "updatedAt" = timezone(\'UTC\', now())'
        ' WHERE ("public"."campaigns"."id" = %s AND 1=1)',
        (n, campaign),
    )
    return n


def plunk_finalize_if_done(conn: psycopg.Connection, campaign: str) -> bool:
    """v2's finalizeIfDone, statement by statement. Returns whether it wrote SENT."""
    status, total = one(
        conn,
        'SELECT "status"::text, "totalRecipients" FROM "public"."campaigns" WHERE "id" = %s',
        (campaign,),
    )
    if status != "SENDING":
        return False
    if conn.execute(
        'SELECT 1 FROM "public"."emails" WHERE "campaignId" = %s'
        " AND \"status\" IN ('PENDING', 'SENDING') LIMIT 1",
        (campaign,),
    ).fetchone():
        return False
    processed, sent = one(
        conn,
        'SELECT count(*) FILTER (WHERE "sentAt" IS NOT NULL OR "status" = \'FAILED\'),'
        ' count(*) FILTER (WHERE "sentAt" IS NOT NULL) FROM "public"."emails" WHERE "campaignId" = %s',
        (campaign,),
    )
    if total > 0 and processed < total:
        return False
    conn.execute(
        'UPDATE "public"."campaigns" SET "status" = CAST(\'SENT\'::text AS "public"."CampaignStatus"),'
        ' "sentCount" = %s, "updatedAt" = timezone(\'UTC\', now()) WHERE ("public"."campaigns"."id" = %s AND 1=1)',
        (sent, campaign),
    )
    return True


def plunk_count_sent(conn: psycopg.Connection, campaign: str) -> None:
    """v2's countCampaignSent: "sentCount" as the emails with "sentAt" set."""
    conn.execute(
        'UPDATE "public"."campaigns" SET "sentCount" = (SELECT count(*) FROM "public"."emails"'
        ' WHERE "campaignId" = %s AND "sentAt" IS NOT NULL), "updatedAt" = timezone(\'UTC\', now())'
        ' WHERE ("public"."campaigns"."id" = %s AND 1=1)',
        (campaign, campaign),
    )


SUPPRESSION_DDL = """
CREATE TABLE "recipient_suppression_rules" (
 "id" TEXT NOT NULL, "projectId" TEXT NOT NULL, "name" TEXT NOT NULL,
 "kind" TEXT NOT NULL, "pattern" TEXT NOT NULL, "enabled" BOOLEAN NOT NULL DEFAULT true,
 "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "updatedAt" TIMESTAMP(3) NOT NULL,
 CONSTRAINT "recipient_suppression_rules_pkey" PRIMARY KEY ("id"),
 CONSTRAINT "recipient_suppression_rules_projectId_fkey" FOREIGN KEY ("projectId")
   REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "recipient_suppression_rules_projectId_enabled_idx"
  ON "recipient_suppression_rules"("projectId", "enabled");
"""


def add_rule(
    conn: psycopg.Connection, project: str, name: str, kind: str, pattern: str, enabled: bool = True
) -> str:
    rid = str(uuid.uuid4())
    conn.execute(
        'INSERT INTO "recipient_suppression_rules" ("id","projectId","name","kind","pattern","enabled",'
        "\"updatedAt\") VALUES (%s,%s,%s,%s,%s,%s,timezone('UTC', now()))",
        (rid, project, name, kind, pattern, enabled),
    )
    return rid


# --- helpers --------------------------------------------------------------------------------


def emails_per_contact(conn: psycopg.Connection, campaign: str) -> int:
    """The most emails any one contact has for the campaign (invariant 2: at most 1)."""
    n: int = one(
        conn,
        'SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM public.emails WHERE "campaignId" = %s'
        ' GROUP BY "contactId") AS x',
        (campaign,),
    )[0]
    return n


def stuck(conn: psycopg.Connection) -> dict[str, str]:
    return dict(
        conn.execute("SELECT campaign_id, reason FROM plunk_sql.stuck_campaigns").fetchall()
    )


# --- 1. Plunk's cancel, in each of its shapes -----------------------------------------------


def test_plunk_cancel__nothing_sent_back_to_draft_retires_run_and_restart_really_sends(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    project, campaign, contacts = started_campaign(plunk, 3)
    plunk_set_status(conn, campaign, "CANCELLED")
    assert plunk_cleanup_unsent(conn, campaign) == 0
    plunk_back_to_draft(conn, campaign)

    # The run is retired (kept for the record), not left as the current run.
    assert conn.execute(
        "SELECT count(*) FROM plunk_sql.campaign_runs WHERE campaign_id = %s", (campaign,)
    ).fetchone() == (0,)
    assert conn.execute(
        "SELECT retired_by, total, skipped FROM plunk_sql.retired_runs WHERE campaign_id = %s",
        (campaign,),
    ).fetchall() == [("plunk", 3, 3)]
    # Until a new start, emails for it are refused.
    with raises_sqlstate("55000", match="retired"):
        plunk_insert_email(conn, campaign, project, contacts[0])
    # The sweep has nothing to start over and over.
    assert conn.execute("SELECT * FROM plunk_sql.sweep()").fetchall() == []

    # A later start takes a fresh snapshot and really sends.
    plunk.contacts(project, 1, prefix="late")
    assert plunk.start(campaign) == 4
    assert plunk.campaign_row(campaign)["status"] == "SENDING"
    claimed = plunk.claim(campaign)
    assert len(claimed) == 4
    emails = plunk.create_emails(campaign, project, [c for c, _, _ in claimed])
    plunk.set_email_status(emails, "SENT")
    assert check_invariants(conn, campaign)["status"] == "SENT"
    # cancel_campaign and repair_campaign are usable again (no 55000 for a stale run).


def test_plunk_cancel__mid_send_unsent_deleted_settles_every_recipient(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    project, campaign, _ = started_campaign(plunk, 30)
    claimed = [c for c, _, _ in plunk.claim(campaign, batch_size=20)]
    emails = plunk.create_emails(campaign, project, claimed[:15])
    plunk.set_email_status(emails[:5], "SENT")
    conn.execute("UPDATE public.emails SET status = 'SENDING' WHERE id = %s", (emails[5],))
    # 5 sent, 1 SENDING, 9 PENDING emails, 5 claimed without email, 10 pending.
    plunk_set_status(conn, campaign, "CANCELLED")
    assert plunk_cleanup_unsent(conn, campaign) == 10  # sentAt null: the SENDING one too
    assert recipient_states(conn, campaign) == {
        ("sent", None): 5,
        ("skipped", "email deleted"): 10,
        ("skipped", "cancelled"): 15,
    }
    progress = plunk.progress(campaign)
    assert (
        progress["status"],
        progress["pending"],
        progress["claimed"],
        progress["in_flight"],
    ) == (
        "CANCELLED",
        0,
        0,
        0,
    )
    assert progress["finished_at"] is not None
    row = plunk.campaign_row(campaign)
    assert (row["totalRecipients"], row["sentCount"]) == (30, 5)
    assert campaign not in stuck(conn)


def test_plunk_cancel__emails_kept_settle_by_plunk_email_job(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    project, campaign, _ = started_campaign(plunk, 6)
    claimed = [c for c, _, _ in plunk.claim(campaign, batch_size=4)]
    emails = plunk.create_emails(campaign, project, claimed[:3])
    plunk.set_email_status(emails[:1], "SENT")
    plunk_set_status(conn, campaign, "CANCELLED")  # the version that deletes nothing
    assert recipient_states(conn, campaign) == {
        ("sent", None): 1,
        ("in_flight", None): 2,
        ("skipped", "cancelled"): 3,
    }
    # Plunk's email job then meets the queued emails of a stopped campaign.
    for email in emails[1:]:
        assert plunk_fail_for_stopped_campaign(conn, email) == 1
    assert recipient_states(conn, campaign) == {
        ("sent", None): 1,
        ("failed", "Campaign cancelled"): 2,
        ("skipped", "cancelled"): 3,
    }
    progress = plunk.progress(campaign)
    assert progress["status"] == "CANCELLED" and progress["finished_at"] is not None


def test_plunk_cancel__late_insert_of_a_claim_holder_is_refused(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    project, campaign, _ = started_campaign(plunk, 3)
    claimed = plunk.claim(campaign, batch_size=2)
    plunk_set_status(conn, campaign, "CANCELLED")
    with raises_sqlstate("55000", match="CANCELLED"):
        plunk.create_emails(campaign, project, [claimed[0][0]])
    assert recipient_states(conn, campaign) == {("skipped", "cancelled"): 3}


def test_plunk_cancel__sweep_finishes_what_the_trigger_left(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    """A worker held the rows (or the trigger was not there yet): the sweep backstops it."""
    _, cancelled, _ = started_campaign(plunk, 4)
    _, drafted, _ = started_campaign(plunk, 2)
    plunk.claim(cancelled, batch_size=1)
    conn.execute("ALTER TABLE public.campaigns DISABLE TRIGGER plunk_sql_campaigns_status_changed")
    plunk_set_status(conn, cancelled, "CANCELLED")
    plunk_set_status(conn, drafted, "CANCELLED")
    plunk_back_to_draft(conn, drafted)
    conn.execute("ALTER TABLE public.campaigns ENABLE TRIGGER plunk_sql_campaigns_status_changed")
    conn.execute("UPDATE plunk_sql.settings SET value = '1 millisecond' WHERE key = 'stuck_after'")
    time.sleep(0.01)
    listed = stuck(conn)
    assert listed[cancelled] == "cancelled with open recipients"
    assert listed[drafted] == "run not retired"

    actions = {(a, c): n for a, c, n in conn.execute("SELECT * FROM plunk_sql.sweep()").fetchall()}
    assert actions[("cancel_settled", cancelled)] == 4
    assert actions[("cancel_settled", drafted)] == 2
    assert actions[("run_retired", drafted)] == 2
    assert recipient_states(conn, cancelled) == {("skipped", "cancelled"): 4}
    assert plunk.start(drafted) == 2 and len(plunk.claim(drafted)) == 2
    assert cancelled not in stuck(conn)
    # The toolkit's own lifecycle works on it again (no 55000 for a stale run).
    assert one(conn, "SELECT plunk_sql.cancel_campaign(%s)", (drafted,)) == ("DRAFT",)


def test_plunk_cancel__while_a_worker_holds_the_counters_succeeds_and_the_sweep_settles(
    db_url: str, plunk: Plunk
) -> None:
    """Plunk's statement never waits on the toolkit: the trigger gives up after 100 ms on a
    row a worker holds (here the counter row, held by a claim that skipped a contact) and
    leaves the settling to the sweep."""
    _, campaign, contacts = started_campaign(plunk, 4)
    plunk.conn.execute(
        "UPDATE public.contacts SET subscribed = false WHERE id = %s", (contacts[0],)
    )
    with psycopg.connect(db_url) as a, psycopg.connect(db_url, autocommit=True) as b:
        assert (
            len(plunk.claim(campaign, batch_size=2, conn=a)) == 1
        )  # skipped one: holds the run row
        started = time.monotonic()
        plunk_set_status(b, campaign, "CANCELLED")
        assert time.monotonic() - started < 5
        a.commit()
    conn = plunk.conn
    assert recipient_states(conn, campaign) == {
        ("skipped", "unsubscribed"): 1,
        ("claimed", None): 1,
        ("pending", None): 2,
    }
    assert ("cancel_settled", campaign, 3) in conn.execute(
        "SELECT * FROM plunk_sql.sweep()"
    ).fetchall()
    assert recipient_states(conn, campaign) == {
        ("skipped", "unsubscribed"): 1,
        ("skipped", "cancelled"): 3,
    }
    assert plunk.progress(campaign)["finished_at"] is not None


def test_plunk_cancel__rescheduled_after_draft_starts_once_with_a_fresh_snapshot(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    """Before: the stale run made the sweep report scheduled_started on every pass while the
    campaign stayed SCHEDULED and nothing was claimable."""
    project, campaign, _ = started_campaign(plunk, 2)
    plunk_set_status(conn, campaign, "CANCELLED")
    plunk_back_to_draft(conn, campaign)
    plunk.contacts(project, 1, prefix="late")
    conn.execute(
        'UPDATE "public"."campaigns" SET "status" = CAST(\'SCHEDULED\'::text AS "public"."CampaignStatus"),'
        " \"scheduledFor\" = timezone('UTC', now()) - interval '1 minute',"
        ' "updatedAt" = timezone(\'UTC\', now()) WHERE ("public"."campaigns"."id" = %s AND 1=1)',
        (campaign,),
    )
    first = conn.execute("SELECT * FROM plunk_sql.start_next_scheduled()").fetchall()
    assert ("scheduled_started", campaign, 3) in first
    assert plunk.campaign_row(campaign)["status"] == "SENDING"
    assert len(plunk.claim(campaign)) == 3
    assert conn.execute("SELECT * FROM plunk_sql.sweep()").fetchall() == []
    assert conn.execute("SELECT * FROM plunk_sql.start_next_scheduled()").fetchall() == []


def test_toolkit_cancel__draft_retires_run_late_insert_refused_restart_judged_on_new_run(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    project, campaign, _ = started_campaign(plunk, 3)
    held = plunk.claim(campaign, batch_size=1)[0][0]  # a slow worker's live claim
    assert one(conn, "SELECT plunk_sql.cancel_campaign(%s)", (campaign,)) == ("DRAFT",)
    with raises_sqlstate("55000", match="retired"):
        plunk.create_emails(campaign, project, [held])
    assert conn.execute(
        "SELECT retired_by FROM plunk_sql.retired_runs WHERE campaign_id = %s", (campaign,)
    ).fetchall() == [("cancel_campaign",)]
    # Restart: a fresh snapshot; the slow worker's late email is now judged against the new run
    # (an unclaimed insert for a subscribed pending recipient links), so nobody gets two.
    assert plunk.start(campaign) == 3
    plunk.create_emails(campaign, project, [held])
    claimed = [c for c, _, _ in plunk.claim(campaign)]
    assert held not in claimed and len(claimed) == 2
    plunk.create_emails(campaign, project, claimed)
    assert emails_per_contact(conn, campaign) == 1
    check_invariants(conn, campaign)


# --- 2. One email per recipient whatever the order ------------------------------------------


def test_one_email__email_made_before_the_start_is_adopted(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    project = plunk.project()
    contacts = plunk.contacts(project, 3)
    campaign = plunk.campaign(project)
    early = plunk_insert_email(conn, campaign, project, contacts[0])  # DRAFT, no run yet
    plunk_insert_email(conn, campaign, project, contacts[1], status="SENT")
    assert plunk.start(campaign) == 3
    assert recipient_states(conn, campaign) == {
        ("in_flight", None): 1,
        ("sent", None): 1,
        ("pending", None): 1,
    }
    claimed = [c for c, _, _ in plunk.claim(campaign)]
    assert claimed == [contacts[2]]
    with raises_sqlstate("23505", match="already has an email"):
        plunk.create_emails(campaign, project, [contacts[0]])
    plunk.create_emails(campaign, project, claimed, status="SENT")
    plunk.set_email_status([early], "SENT")
    assert emails_per_contact(conn, campaign) == 1
    assert check_invariants(conn, campaign)["status"] == "SENT"


def test_one_email__late_insert_after_an_expired_lease_leaves_one_email(
    conn: psycopg.Connection, plunk: Plunk, db_url: str
) -> None:
    project, campaign, _ = started_campaign(plunk, 1)
    contact = plunk.claim(campaign, lease="10 milliseconds")[0][0]  # worker 1, then it stalls
    time.sleep(0.05)
    assert ("lease_expired", campaign, 1) in conn.execute(
        "SELECT * FROM plunk_sql.sweep()"
    ).fetchall()
    assert plunk.claim(campaign)[0][0] == contact  # worker 2
    plunk.create_emails(campaign, project, [contact])  # worker 1's late insert
    with raises_sqlstate("23505", match="already has an email"):
        plunk.create_emails(campaign, project, [contact])  # worker 2's
    assert emails_per_contact(conn, campaign) == 1


@pytest.mark.parametrize("claim_first", [True, False])
def test_one_email__unclaimed_insert_racing_a_live_claim(
    db_url: str, plunk: Plunk, claim_first: bool
) -> None:
    """Real concurrent sessions: a claim held open in A, an unclaimed insert in B."""
    project, campaign, _ = started_campaign(plunk, 1)
    with (
        psycopg.connect(db_url) as a,
        psycopg.connect(db_url, autocommit=True) as b,
    ):
        if claim_first:
            contact = plunk.claim(campaign, conn=a)[0][0]  # A's transaction stays open
            done: list[BaseException | None] = []

            def insert() -> None:
                try:
                    plunk_insert_email(b, campaign, project, contact)
                    done.append(None)
                except BaseException as exc:  # reported below
                    done.append(exc)

            t = threading.Thread(target=insert)
            t.start()
            time.sleep(0.3)
            assert not done, "the unclaimed insert must wait for the claim"
            a.commit()
            t.join(10)
            assert done == [None]  # it links the recipient the claim took...
            with raises_sqlstate("23505"):
                plunk.create_emails(campaign, project, [contact], conn=a)  # ...so A's is the extra
            a.rollback()
        else:
            contact = plunk.recipients(campaign).pop()
            b.execute("BEGIN")
            plunk_insert_email(b, campaign, project, contact)
            assert plunk.claim(campaign, conn=a) == []  # SKIP LOCKED: never waits, never gets it
            a.commit()
            b.execute("COMMIT")
            assert plunk.claim(campaign, conn=a) == []
            a.commit()
    assert emails_per_contact(plunk.conn, campaign) == 1
    check_invariants(plunk.conn, campaign)


# --- 3. Consent on every path -----------------------------------------------------------------


def test_consent__unclaimed_insert_for_an_unsubscribed_contact_is_refused(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    project, campaign, contacts = started_campaign(plunk, 2)
    conn.execute("UPDATE public.contacts SET subscribed = false WHERE id = %s", (contacts[0],))
    with raises_sqlstate("55000", match="unsubscribed"):
        plunk_insert_email(conn, campaign, project, contacts[0])
    # The raise rolled back everything: the next claim records the skip.
    assert recipient_states(conn, campaign) == {("pending", None): 2}
    assert [c for c, _, _ in plunk.claim(campaign)] == [contacts[1]]
    assert recipient_states(conn, campaign)[("skipped", "unsubscribed")] == 1
    # A subscribed contact's unclaimed email links as before.
    plunk_insert_email(conn, campaign, project, contacts[1])


def test_consent__unclaimed_insert_into_a_paused_campaign_is_refused(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    project, campaign, contacts = started_campaign(plunk, 2)
    claimed = plunk.claim(campaign, batch_size=1)[0][0]
    conn.execute("SELECT plunk_sql.pause_campaign(%s)", (campaign,))
    with raises_sqlstate("55000", match="paused"):
        plunk_insert_email(conn, campaign, project, contacts[1])
    plunk.create_emails(campaign, project, [claimed])  # a claim holder still may


def test_consent__transactional_campaign_mails_unsubscribed_contacts(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    project, campaign, contacts = started_campaign(plunk, 1, type="TRANSACTIONAL")
    conn.execute("UPDATE public.contacts SET subscribed = false WHERE id = %s", (contacts[0],))
    plunk_insert_email(conn, campaign, project, contacts[0])
    assert recipient_states(conn, campaign) == {("in_flight", None): 1}


# --- 4. Moving an email -----------------------------------------------------------------------


def test_move__update_of_campaign_or_contact_of_a_toolkit_email_is_refused(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    project, campaign, contacts = started_campaign(plunk, 2)
    other = plunk.campaign(project)
    claimed = [c for c, _, _ in plunk.claim(campaign)]
    (email,) = plunk.create_emails(campaign, project, claimed[:1])
    with raises_sqlstate("55000", match="cannot move"):
        conn.execute('UPDATE public.emails SET "campaignId" = %s WHERE id = %s', (other, email))
    with raises_sqlstate("55000", match="cannot move"):
        conn.execute(
            'UPDATE public.emails SET "contactId" = %s WHERE id = %s', (contacts[1], email)
        )
    legacy = plunk_insert_email(conn, other, project, contacts[0])  # no run: not the toolkit's
    with raises_sqlstate("55000", match="cannot move"):  # ...but not into a toolkit campaign
        conn.execute('UPDATE public.emails SET "campaignId" = %s WHERE id = %s', (campaign, legacy))
    conn.execute('UPDATE public.emails SET "contactId" = %s WHERE id = %s', (contacts[1], legacy))
    conn.execute("DELETE FROM public.campaigns WHERE id = %s", (other,))  # SET NULL still works
    check_invariants(conn, campaign)


# --- 5. Plunk v2's completion writes ----------------------------------------------------------


def test_plunk_v2_completion__total_and_sent_count_stay_the_toolkits(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    project, campaign, contacts = started_campaign(plunk, 4)
    conn.execute("UPDATE public.contacts SET subscribed = false WHERE id = %s", (contacts[3],))
    claimed = [c for c, _, _ in plunk.claim(campaign)]  # contacts[3] skipped
    emails = plunk.create_emails(campaign, project, claimed)
    assert plunk_reconcile_total(conn, campaign) == 3  # Plunk's last batch
    assert plunk.campaign_row(campaign)["totalRecipients"] == 4
    plunk_record_sent(conn, emails[0])
    assert not plunk_finalize_if_done(conn, campaign)  # two emails still PENDING
    # A FAILED email Plunk had stamped: its count says 2, the recount 1.
    conn.execute(
        "UPDATE public.emails SET status = 'FAILED', \"sentAt\" = timezone('UTC', now()),"
        " \"updatedAt\" = timezone('UTC', now()) WHERE id = %s",
        (emails[1],),
    )
    plunk_count_sent(conn, campaign)
    # Corrected to the toolkit's count: the recount (1) minus what is not
    # synced yet while the send runs (sql/48_counters.sql), never Plunk's 2.
    shown = conn.execute(
        "SELECT sent, shown_sent FROM plunk_sql.run_counts(%s)", (campaign,)
    ).fetchone()
    assert shown == (1, 0)
    assert plunk.campaign_row(campaign)["sentCount"] == 0
    # finalizeIfDone forced while a recipient is open (as if its count had been met): kept SENDING.
    conn.execute('UPDATE public.campaigns SET "totalRecipients" = 0 WHERE id = %s', (campaign,))
    conn.execute(
        "UPDATE public.campaigns SET status = 'SENT', \"sentCount\" = 2 WHERE id = %s", (campaign,)
    )
    assert plunk.campaign_row(campaign)["status"] == "SENDING"
    plunk_record_sent(conn, emails[2])
    plunk_finalize_if_done(conn, campaign)
    row = plunk.campaign_row(campaign)
    assert (row["status"], row["totalRecipients"], row["sentCount"]) == ("SENT", 4, 2)
    check_invariants(conn, campaign)


# --- 6. Suppression rules ---------------------------------------------------------------------


def test_suppression__claim_skips_a_matching_recipient_with_the_rule_in_the_reason(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    conn.execute(SUPPRESSION_DDL)
    project = plunk.project()
    other = plunk.project()
    addresses = [
        "exact@x.com",
        "a@blocked.org",
        "noreply-1@y.com",
        "bob+test@y.com",
        "ca%t@glob.net",
        "cat@glob.net",
        "fine@ok.com",
        "Off@Rule.com",
        "other@project.com",
        ("l" * 250) + "@z.io",
    ]
    ids = [plunk.contact_row(project, email=a) for a in addresses]
    rules = {
        "exact": add_rule(conn, project, "exact", "ADDRESS", "exact@x.com"),
        "domain": add_rule(conn, project, "domain", "DOMAIN", "blocked.org"),
        "prefix": add_rule(conn, project, "prefix", "PREFIX", "noreply"),
        "suffix": add_rule(conn, project, "suffix", "SUFFIX", "+test"),
        "glob": add_rule(conn, project, "glob", "WILDCARD", "ca%t@*.net"),
    }
    add_rule(conn, project, "off", "ADDRESS", "off@rule.com", enabled=False)
    add_rule(conn, other, "theirs", "DOMAIN", "project.com")
    add_rule(conn, project, "long", "DOMAIN", "z.io")  # the address is over 254 characters
    campaign = plunk.campaign(project)
    assert plunk.start(campaign) == len(ids)
    returned = {c for c, _, _ in plunk.claim(campaign)}
    by_contact: dict[str, str] = dict(
        conn.execute(
            "SELECT contact_id, reason FROM plunk_sql.recipients WHERE campaign_id = %s AND state = 'skipped'",
            (campaign,),
        ).fetchall()
    )
    expected = {
        ids[0]: "exact",
        ids[1]: "domain",
        ids[2]: "prefix",
        ids[3]: "suffix",
        ids[4]: "glob",
    }
    assert set(by_contact) == set(expected)
    for cid, rule in expected.items():
        assert (
            by_contact[cid].startswith(f"suppressed by rule {rule} (")
            and rules[rule] in by_contact[cid]
        )
    assert returned == set(ids) - set(expected)  # '%' literal: cat@glob.net is not matched
    # An unclaimed email for a suppressed address is refused too.
    transition_recorder.by_hand(
        conn,
        "UPDATE plunk_sql.recipients SET state = 'pending', reason = NULL, settled_at = NULL"
        " WHERE campaign_id = %s AND contact_id = %s",
        (campaign, ids[1]),
    )
    with raises_sqlstate("55000", match="suppressed by rule domain"):
        plunk_insert_email(conn, campaign, project, ids[1])


def test_suppression__without_the_table_nothing_changes(
    conn: psycopg.Connection, plunk: Plunk
) -> None:
    assert conn.execute("SELECT to_regclass('public.recipient_suppression_rules')").fetchone() == (
        None,
    )
    _, campaign, _ = started_campaign(plunk, 3)
    assert len(plunk.claim(campaign)) == 3


# --- guard runs are never refused here ---------------------------------------------------------


def test_guard_runs__no_refusal_and_no_correction(conn: psycopg.Connection, plunk: Plunk) -> None:
    project, campaign, contacts = started_campaign(plunk, 2)
    conn.execute(
        "UPDATE plunk_sql.campaign_runs SET kind = 'guard' WHERE campaign_id = %s", (campaign,)
    )
    conn.execute("UPDATE public.contacts SET subscribed = false WHERE id = %s", (contacts[0],))
    plunk_insert_email(conn, campaign, project, contacts[0])  # unclaimed, unsubscribed: followed
    plunk_reconcile_total(conn, campaign)
    assert plunk.campaign_row(campaign)["totalRecipients"] == 1
