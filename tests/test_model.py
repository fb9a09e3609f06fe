"""Model-based test: a hypothesis RuleBasedStateMachine drives the public SQL API against a
plain-Python model of one campaign (design.md's recipient state machine) and checks the
invariants after every step.

Two sessions: B (autocommit, most rules) and A, which can hold a claim open in a transaction
while B acts. A statement of B that waits for A is detected with
pg_isolation_test_session_is_blocked (PostgreSQL's isolation-tester probe), A is then
committed or rolled back (drawn by hypothesis) and the model applies A's outcome before B's,
so interleavings are deterministic and shrink.

One database for the module, emptied between examples.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests import transition_recorder

CAMPAIGN = "camp-model"
PROJECT = "proj-model"
OPEN = ("pending", "claimed", "in_flight")
FINAL_STATUSES = ["SENT", "DELIVERED", "OPENED", "BOUNCED", "FAILED"]
URL: str = ""  # set by the fixture below (hypothesis machines are built by class)
STATS = {
    "steps": 0,
    "blocked_on_a": 0,
    "a_commits": 0,
    "a_rollbacks": 0,
    "plunk_cancels": 0,
    "plunk_drafts": 0,
    "late_inserts": 0,
}


def outcome(status: str) -> str | None:
    if status in ("PENDING", "SENDING"):
        return None
    return "failed" if status == "FAILED" else "sent"


@dataclass
class Model:
    transactional: bool
    subscribed: dict[str, bool]
    deleted: set[str] = field(default_factory=set)
    status: str = "DRAFT"
    started: bool = False
    paused: bool = False
    rec: dict[str, str] = field(default_factory=dict)
    reason: dict[str, str | None] = field(default_factory=dict)
    email_of: dict[str, str] = field(default_factory=dict)  # contact -> linked email
    emails: dict[str, list] = field(default_factory=dict)  # email -> [contact, status, stamped]
    # A run was retired (cancelled back to DRAFT): emails are refused until a new start.
    retired: bool = False

    def settle_check(self) -> None:
        """The end-game's rule (_finish_if_settled): SENDING with nothing open -> SENT."""
        if self.started and self.status == "SENDING" and not self.open():
            self.status = "SENT"

    def open(self) -> list[str]:
        return [c for c, s in self.rec.items() if s in OPEN]

    def start(self) -> int:
        if self.started:
            return len(self.rec)
        if self.status not in ("DRAFT", "SCHEDULED"):
            raise Expected("55000")
        self.rec = {
            c: "pending"
            for c, sub in self.subscribed.items()
            if c not in self.deleted and (sub or self.transactional)
        }
        self.reason = dict.fromkeys(self.rec)
        self.email_of = {}
        # Emails made before the start are linked (one per contact: a settled one first).
        for email, (c, status, _) in sorted(
            self.emails.items(), key=lambda kv: (kv[1][1] in ("PENDING", "SENDING"), kv[0])
        ):
            if self.rec.get(c) == "pending":
                self.rec[c] = outcome(status) or "in_flight"
                self.reason[c] = "email FAILED" if status == "FAILED" else None
                self.email_of[c] = email
        self.started = True
        self.status = "SENDING" if self.rec else "SENT"
        self.settle_check()
        return len(self.rec)

    def pick(self, n: int, exclude: set[str] = frozenset()) -> list[str]:
        if not self.started or self.status != "SENDING" or self.paused:
            return []
        return sorted(c for c, s in self.rec.items() if s == "pending" and c not in exclude)[:n]

    def claim_effects(self, picked: list[str]) -> dict[str, tuple[str, str | None]]:
        out = {}
        for c in picked:
            if c in self.deleted:
                out[c] = ("skipped", "contact deleted")
            elif not self.transactional and not self.subscribed[c]:
                out[c] = ("skipped", "unsubscribed")
            else:
                out[c] = ("claimed", None)
        return out

    def apply_claim(self, effects: dict[str, tuple[str, str | None]]) -> list[str]:
        for c, (state, why) in effects.items():
            self.rec[c], self.reason[c] = state, why
        if any(s == "skipped" for s, _ in effects.values()):
            self.settle_check()
        return sorted(c for c, (s, _) in effects.items() if s == "claimed")

    def create_email(self, contact: str, email: str) -> None:
        if contact in self.deleted:
            raise Expected("23503")  # the emails foreign key, before any trigger
        if not self.started:
            if self.retired and self.status != "SENDING":
                raise Expected("55000")  # cancelled back to DRAFT: nothing until a new start
            self.emails[email] = [contact, "PENDING", False]  # not the toolkit's (yet)
            return
        if self.status != "SENDING":
            raise Expected("55000")  # a stopped campaign mails nobody
        state = self.rec.get(contact)
        if state == "pending":
            # No claim: the claim's re-check (paused, unsubscribed) or a refusal.
            if self.paused or (not self.transactional and not self.subscribed[contact]):
                raise Expected("55000")
        elif state is None:
            raise Expected("23503")
        elif state == "skipped":
            raise Expected("55000")
        elif state in ("in_flight", "sent", "failed"):
            raise Expected("23505")
        self.emails[email] = [contact, "PENDING", False]
        self.rec[contact] = "in_flight"
        self.email_of[contact] = email

    def would_wait_for_a(self, contact: str, a_open) -> bool:
        """An email for a row A's open claim locked waits for A only if its statement reaches
        the link: the unclaimed re-check (made on the committed, pending row) passed."""
        if not a_open or contact not in a_open or contact in self.deleted:
            return False
        if not self.started or self.status != "SENDING" or self.rec.get(contact) != "pending":
            return False
        return not (self.paused or (not self.transactional and not self.subscribed[contact]))

    def set_status(self, email: str, status: str) -> None:
        contact = self.emails[email][0]
        self.emails[email][1] = status
        if outcome(status) == "sent":
            self.emails[email][2] = True  # "sentAt" stamped
        if (
            self.started
            and self.email_of.get(contact) == email
            and self.rec.get(contact) == "in_flight"
            and outcome(status)
        ):
            self.rec[contact] = outcome(status)
            self.reason[contact] = "email FAILED" if status == "FAILED" else None
            self.settle_check()

    def delete_contact(self, contact: str) -> None:
        self.deleted.add(contact)
        for email, (c, *_) in list(self.emails.items()):
            if c == contact:
                del self.emails[email]
                if self.email_of.get(c) == email and self.rec.get(c) == "in_flight":
                    self.rec[c], self.reason[c] = "skipped", "email deleted"
        self.settle_check()

    def cancel(self) -> str:
        if not self.started:
            raise Expected("55000")  # DRAFT (no SCHEDULED in this model), legacy, SENT
        if self.status != "SENDING":
            raise Expected("55000")
        for c, s in self.rec.items():
            if s in ("pending", "claimed"):
                self.rec[c], self.reason[c] = "skipped", "cancelled"
        for c, s in self.rec.items():
            email = self.email_of.get(c)
            if s == "in_flight" and email and self.emails[email][1] == "PENDING":
                del self.emails[email]
                self.rec[c], self.reason[c] = "skipped", "email deleted"
        self.paused = False
        counts = self.counts()
        if counts["sent"] == counts["failed"] == counts["in_flight"] == 0:
            # A live claim no longer keeps the snapshot: the retired run refuses its email.
            self.retire()
            return "DRAFT"
        self.status = "CANCELLED"
        return "CANCELLED"

    def retire(self) -> None:
        self.status, self.started, self.retired, self.paused = "DRAFT", False, True, False
        self.rec, self.reason, self.email_of = {}, {}, {}

    def plunk_cancel(self) -> None:
        """Plunk's cancel status write: open recipients without email settle skipped."""
        self.status = "CANCELLED"
        for c, s in self.rec.items():
            if s in ("pending", "claimed"):
                self.rec[c], self.reason[c] = "skipped", "cancelled"

    def plunk_cleanup(self) -> None:
        """Plunk's cleanup job: every email never stamped is deleted."""
        for email, (c, _, stamped) in list(self.emails.items()):
            if not stamped:
                del self.emails[email]
                if self.email_of.get(c) == email and self.rec.get(c) == "in_flight":
                    self.rec[c], self.reason[c] = "skipped", "email deleted"

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys((*OPEN, "sent", "failed", "skipped"), 0)
        for s in self.rec.values():
            out[s] += 1
        return out


class Expected(Exception):
    """The SQLSTATE the model expects a call to fail with."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def has_function(conn: psycopg.Connection, signature: str) -> bool:
    return bool(conn.execute("SELECT to_regprocedure(%s) IS NOT NULL", (signature,)).fetchone()[0])


class CampaignMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.obs = psycopg.connect(URL, autocommit=True)
        self.b = psycopg.connect(URL, autocommit=True)
        self.a = psycopg.connect(URL)
        self.a_pid = self.a.info.backend_pid
        self.b_pid = self.b.info.backend_pid
        self.a_open: dict[str, tuple[str, str | None]] | None = None  # A's uncommitted claim
        self.has_sweep = has_function(self.obs, "plunk_sql.sweep()")
        self.has_lifecycle = has_function(self.obs, "plunk_sql.cancel_campaign(text)")
        self.model: Model | None = None

    # ------------------------------------------------------------------ plumbing
    def teardown(self) -> None:
        for c in (self.a, self.b, self.obs):
            c.close()

    def run_b(self, sql: str, params: tuple, resolve_commit: bool):
        """Run a statement on B. When A holds a transaction, run it in a thread and, if it
        waits for A, end A (commit or rollback). Returns (rows | error, blocked)."""
        if self.a_open is None:
            try:
                return self.b.execute(sql, params).fetchall(), False
            except psycopg.Error as exc:
                return exc, False
        box: list = []

        def target() -> None:
            try:
                box.append(self.b.execute(sql, params).fetchall())
            except psycopg.Error as exc:
                box.append(exc)

        t = threading.Thread(target=target)
        t.start()
        blocked = False
        while t.is_alive():
            t.join(0.005)
            if (
                t.is_alive()
                and self.obs.execute(
                    "SELECT pg_isolation_test_session_is_blocked(%s, ARRAY[%s])",
                    (self.b_pid, self.a_pid),
                ).fetchone()[0]
            ):
                blocked = True
                STATS["blocked_on_a"] += 1
                self.end_a(resolve_commit)
                t.join(30)
                break
        assert not t.is_alive(), "B still waiting after A ended"
        return box[0], blocked

    def end_a(self, commit: bool) -> None:
        assert self.a_open is not None
        effects, self.a_open = self.a_open, None
        if commit:
            self.a.commit()
            self.model.apply_claim(effects)
            STATS["a_commits"] += 1
        else:
            self.a.rollback()
            STATS["a_rollbacks"] += 1

    def expect(self, result, expected_error: str | None) -> list:
        if expected_error is not None:
            assert isinstance(result, psycopg.Error), f"expected {expected_error}, got {result}"
            assert result.sqlstate == expected_error, (result.sqlstate, str(result))
            return []
        assert not isinstance(result, psycopg.Error), f"unexpected error {result!r}"
        return result

    # ------------------------------------------------------------------ setup
    @initialize(
        n=st.integers(1, 6),
        unsub=st.sets(st.integers(0, 5), max_size=3),
        transactional=st.booleans(),
    )
    def setup(self, n: int, unsub: set[int], transactional: bool) -> None:
        self.obs.execute(
            "TRUNCATE public.projects, plunk_sql.recipients, plunk_sql.campaign_runs,"
            " plunk_sql.retired_runs CASCADE"
        )
        self.obs.execute(
            'INSERT INTO public.projects (id, name, public, secret, "updatedAt")'
            " VALUES (%s, 'm', 'pub', 'sec', timezone('UTC', now()))",
            (PROJECT,),
        )
        self.contacts = [f"k{i}" for i in range(n)]
        subscribed = {c: i not in unsub for i, c in enumerate(self.contacts)}
        for c, sub in subscribed.items():
            self.obs.execute(
                'INSERT INTO public.contacts (id, email, subscribed, "projectId", "updatedAt")'
                " VALUES (%s, %s, %s, %s, timezone('UTC', now()))",
                (c, f"{c}@example.com", sub, PROJECT),
            )
        self.obs.execute(
            'INSERT INTO public.campaigns (id, name, subject, body, "from", type, "projectId",'
            " \"updatedAt\") VALUES (%s, 'm', 's', 'b', 'f@example.com', %s, %s,"
            " timezone('UTC', now()))",
            (CAMPAIGN, "TRANSACTIONAL" if transactional else "MARKETING", PROJECT),
        )
        self.model = Model(transactional=transactional, subscribed=subscribed)

    def contact(self, i: int) -> str:
        return self.contacts[i % len(self.contacts)]

    # ------------------------------------------------------------------ rules
    @rule(commit=st.booleans())
    def start(self, commit: bool) -> None:
        result, _ = self.run_b("SELECT plunk_sql.start_campaign(%s)", (CAMPAIGN,), commit)
        try:
            total = self.model.start()
        except Expected as exp:
            self.expect(result, exp.sqlstate)
            return
        assert self.expect(result, None) == [(total,)]

    @rule(n=st.integers(1, 4), commit=st.booleans(), keep_open=st.booleans())
    def claim(self, n: int, commit: bool, keep_open: bool) -> None:
        if keep_open and self.a_open is None:
            self.claim_in_open_transaction(n)
            return
        exclude = set(self.a_open or ())
        picked = self.model.pick(n, exclude)
        result, _ = self.run_b(
            "SELECT contact_id FROM plunk_sql.claim_batch(%s, %s, '1 hour')", (CAMPAIGN, n), commit
        )
        got = sorted(r[0] for r in self.expect(result, None))
        expected = self.model.apply_claim(self.model.claim_effects(picked))
        assert got == expected

    @precondition(lambda self: self.a_open is None)
    @rule(n=st.integers(1, 4))
    def claim_in_open_transaction(self, n: int) -> None:
        """Session A claims and keeps its transaction open."""
        picked = self.model.pick(n)
        rows = self.a.execute(
            "SELECT contact_id FROM plunk_sql.claim_batch(%s, %s, '1 hour')", (CAMPAIGN, n)
        ).fetchall()
        effects = self.model.claim_effects(picked)
        assert sorted(r[0] for r in rows) == sorted(
            c for c, (s, _) in effects.items() if s == "claimed"
        )
        self.a_open = effects

    @precondition(lambda self: self.a_open is not None)
    @rule(commit=st.booleans())
    def end_open_transaction(self, commit: bool) -> None:
        self.end_a(commit)

    @precondition(lambda self: self.model is not None)
    @rule(i=st.integers(0, 5), commit=st.booleans())
    def create_email(self, i: int, commit: bool) -> None:
        """Any sender, claimed or not: before the start, during the send, after a cancel (a
        late insert). Before any start, one email per contact (the toolkit cannot undo
        duplicates made before it was asked)."""
        contact = self.contact(i)
        m = self.model
        if not m.started and any(c == contact for c, *_ in m.emails.values()):
            return
        self.insert_email(contact, commit)

    @precondition(lambda self: self.model is not None and self.model.started)
    @rule(data=st.data(), commit=st.booleans())
    def plunk_sender_insert(self, data, commit: bool) -> None:
        """Plunk's own sender (or a worker skipping claim_batch): an email for a recipient
        nobody claimed, with Plunk's exact INSERT."""
        pending = sorted(c for c, s in self.model.rec.items() if s == "pending")
        if not pending:
            return
        self.insert_email(data.draw(st.sampled_from(pending)), commit)

    @precondition(
        lambda self: (
            self.model is not None and (self.model.retired or self.model.status == "CANCELLED")
        )
    )
    @rule(i=st.integers(0, 5), commit=st.booleans())
    def late_insert(self, i: int, commit: bool) -> None:
        """A slow worker's email after a cancel (its claim settled, or the run retired)."""
        STATS["late_inserts"] += 1
        self.insert_email(self.contact(i), commit)

    @precondition(lambda self: bool(self.a_open))
    @rule(data=st.data(), commit=st.booleans())
    def create_email_for_recipient_a_holds(self, data, commit: bool) -> None:
        """The interleaving that matters most: B writes an email for a row A's claim locked."""
        self.insert_email(data.draw(st.sampled_from(sorted(self.a_open))), commit)

    def insert_email(self, contact: str, commit: bool) -> None:
        email = str(uuid.uuid4())
        # The FK check (contact deleted) and the unclaimed re-check fail before the link waits.
        waits_for_a = self.model.would_wait_for_a(contact, self.a_open)
        result, blocked = self.run_b(
            'INSERT INTO "public"."emails" ("id","contactId","subject","body","from","sourceType",'
            '"campaignId","status","projectId","createdAt","updatedAt") VALUES (%s,%s,\'s\',\'b\','
            "'f@example.com',CAST('CAMPAIGN'::text AS \"public\".\"EmailSourceType\"),%s,"
            "CAST('PENDING'::text AS \"public\".\"EmailStatus\"),%s,timezone('UTC', now()),"
            "timezone('UTC', now())) RETURNING id",
            (email, contact, CAMPAIGN, PROJECT),
            commit,
        )
        if waits_for_a:
            assert blocked, "an email for a recipient A holds must wait for A"
        try:
            self.model.create_email(contact, email)
        except Expected as exp:
            self.expect(result, exp.sqlstate)
            return
        self.expect(result, None)

    @precondition(lambda self: self.model is not None and self.model.emails)
    @rule(
        data=st.data(), status=st.sampled_from(["SENDING", *FINAL_STATUSES]), commit=st.booleans()
    )
    def set_email_status(self, data, status: str, commit: bool) -> None:
        email = data.draw(st.sampled_from(sorted(self.model.emails)))
        result, _ = self.run_b(
            'UPDATE public.emails SET status = %s::"EmailStatus",'
            " \"sentAt\" = CASE WHEN %s IN ('SENT', 'DELIVERED', 'OPENED', 'BOUNCED')"
            ' THEN coalesce("sentAt", timezone(\'UTC\', now())) ELSE "sentAt" END,'
            " \"updatedAt\" = timezone('UTC', now()) WHERE id = %s RETURNING id",
            (status, status, email),
            commit,
        )
        self.expect(result, None)
        self.model.set_status(email, status)

    @rule(i=st.integers(0, 5), commit=st.booleans())
    def unsubscribe(self, i: int, commit: bool) -> None:
        contact = self.contact(i)
        result, _ = self.run_b(
            "UPDATE public.contacts SET subscribed = false, \"updatedAt\" = timezone('UTC', now())"
            " WHERE id = %s RETURNING id",
            (contact,),
            commit,
        )
        self.expect(result, None)
        if contact not in self.model.deleted:
            self.model.subscribed[contact] = False

    @rule(i=st.integers(0, 5), commit=st.booleans())
    def delete_contact(self, i: int, commit: bool) -> None:
        contact = self.contact(i)
        result, _ = self.run_b(
            "DELETE FROM public.contacts WHERE id = %s RETURNING id", (contact,), commit
        )
        self.expect(result, None)
        self.model.delete_contact(contact)

    @precondition(lambda self: self.has_sweep)
    @rule(i=st.integers(0, 5), commit=st.booleans())
    def expire_lease_and_sweep(self, i: int, commit: bool) -> None:
        """Time passes for one claim (its lease is moved into the past), then a sweep runs."""
        contact = self.contact(i)
        self.obs.execute(
            "UPDATE plunk_sql.recipients SET lease_expires_at = now() - interval '1 second'"
            " WHERE campaign_id = %s AND contact_id = %s AND state = 'claimed'",
            (CAMPAIGN, contact),
        )
        result, _ = self.run_b("SELECT * FROM plunk_sql.sweep()", (), commit)
        self.expect(result, None)
        if self.model.started and self.model.rec.get(contact) == "claimed":
            self.model.rec[contact] = "pending"

    @precondition(lambda self: self.has_sweep)
    @rule(commit=st.booleans())
    def sweep(self, commit: bool) -> None:
        result, _ = self.run_b("SELECT * FROM plunk_sql.sweep()", (), commit)
        self.expect(result, None)

    @precondition(lambda self: self.has_lifecycle)
    @rule(commit=st.booleans())
    def pause(self, commit: bool) -> None:
        result, _ = self.run_b("SELECT plunk_sql.pause_campaign(%s)", (CAMPAIGN,), commit)
        m = self.model
        if m.started and m.status == "SENDING" and not m.paused:
            self.expect(result, None)
            m.paused = True
        else:
            self.expect(result, "55000")

    @precondition(lambda self: self.has_lifecycle)
    @rule(commit=st.booleans())
    def resume(self, commit: bool) -> None:
        result, _ = self.run_b("SELECT plunk_sql.resume_campaign(%s)", (CAMPAIGN,), commit)
        m = self.model
        if m.started and m.status == "SENDING" and m.paused:
            self.expect(result, None)
            m.paused = False
        else:
            self.expect(result, "55000")

    @precondition(lambda self: self.has_lifecycle)
    @rule(commit=st.booleans())
    def cancel(self, commit: bool) -> None:
        result, _ = self.run_b("SELECT plunk_sql.cancel_campaign(%s)", (CAMPAIGN,), commit)
        try:
            status = self.model.cancel()
        except Expected as exp:
            self.expect(result, exp.sqlstate)
            return
        assert self.expect(result, None) == [(status,)]

    @precondition(lambda self: self.model is not None)
    @rule(shape=st.sampled_from(["kept", "deleted", "draft"]), commit_a=st.booleans())
    def plunk_cancel(self, shape: str, commit_a: bool) -> None:
        """Plunk's cancel, with its exact statements, in each of its three shapes: CANCELLED
        with unsent emails kept, CANCELLED with them deleted, then DRAFT when none left.
        (With no open claim in A: the trigger then never has to leave work to the sweep. A
        claim A holds is ended first: since claims and settles no longer share a counter row,
        B rarely waits for A, and A would otherwise stay open through most of the run.)"""
        if self.a_open is not None:
            self.end_a(commit_a)
        m = self.model
        if m.status not in ("SENDING", "CANCELLED"):
            return  # Plunk's API refuses (HTTP 400): no statement
        if m.status == "SENDING":
            self.b.execute(
                'UPDATE "public"."campaigns" SET "status" = CAST(\'CANCELLED\'::text AS'
                ' "public"."CampaignStatus"), "updatedAt" = timezone(\'UTC\', now())'
                ' WHERE ("public"."campaigns"."id" = %s AND 1=1)',
                (CAMPAIGN,),
            )
            m.plunk_cancel()
            STATS["plunk_cancels"] += 1
        if shape == "kept":
            return
        self.b.execute(
            'DELETE FROM "public"."emails" WHERE ("public"."emails"."campaignId" = %s'
            ' AND "public"."emails"."sentAt" IS NULL AND "public"."emails"."createdAt" <= %s)',
            (CAMPAIGN, "2999-01-01"),
        )
        m.plunk_cleanup()
        if shape == "draft" and not any(stamped for *_, stamped in m.emails.values()):
            self.b.execute(
                'UPDATE "public"."campaigns" SET "status" = CAST(\'DRAFT\'::text AS'
                ' "public"."CampaignStatus"), "sentCount" = 0, "sentAt" = NULL,'
                ' "scheduledFor" = NULL, "updatedAt" = timezone(\'UTC\', now())'
                ' WHERE ("public"."campaigns"."id" = %s AND 1=1)',
                (CAMPAIGN,),
            )
            STATS["plunk_drafts"] += 1
            if m.started:
                m.retire()
            else:
                m.status = "DRAFT"

    @precondition(lambda self: self.has_lifecycle)
    @rule(commit=st.booleans())
    def repair(self, commit: bool) -> None:
        """Only legacy campaigns (no snapshot) can be repaired; this one never is one."""
        result, _ = self.run_b("SELECT plunk_sql.repair_campaign(%s)", (CAMPAIGN,), commit)
        self.expect(result, "55000")

    # ------------------------------------------------------------------ invariants
    @invariant()
    def matches_model(self) -> None:
        if self.model is None:
            return
        STATS["steps"] += 1
        m = self.model
        status, total, sent_count = self.obs.execute(
            'SELECT status::text, "totalRecipients", "sentCount" FROM public.campaigns'
            " WHERE id = %s",
            (CAMPAIGN,),
        ).fetchone()
        assert status == m.status
        rows = self.obs.execute(
            "SELECT contact_id, state::text, reason FROM plunk_sql.recipients"
            " WHERE campaign_id = %s ORDER BY contact_id",
            (CAMPAIGN,),
        ).fetchall()
        # A's uncommitted claims are invisible here: compare with the committed model.
        assert {c: s for c, s, _ in rows} == m.rec
        assert {c: r for c, _, r in rows} == m.reason
        emails = dict(
            self.obs.execute(
                'SELECT id, status::text FROM public.emails WHERE "campaignId" = %s', (CAMPAIGN,)
            ).fetchall()
        )
        assert emails == {e: s for e, (_, s, *_) in m.emails.items()}
        run = self.obs.execute(
            "SELECT r.total, n.sent, n.failed, n.skipped, r.paused_at IS NOT NULL, n.shown_sent"
            " FROM plunk_sql.campaign_runs AS r CROSS JOIN plunk_sql.run_counts(r.campaign_id) AS n"
            " WHERE r.campaign_id = %s",
            (CAMPAIGN,),
        ).fetchone()
        counts = m.counts()
        if not m.started:
            assert run is None
            assert not rows
            return
        # Invariant 1: the states add up to the snapshot size and "totalRecipients".
        assert run[0] == len(rows) == total == sum(counts.values())
        # Invariant 3: counters equal a recount; "sentCount" too.
        assert run[1:4] == (counts["sent"], counts["failed"], counts["skipped"])
        # "sentCount" may trail while something is open (at most 31 per counter
        # slot, sql/48_counters.sql) and is the recount once nothing is.
        assert sent_count == run[5]
        assert 0 <= counts["sent"] - sent_count <= 31 * 33
        if not m.open():
            assert sent_count == counts["sent"]
        assert run[4] == m.paused
        progress = self.obs.execute(
            "SELECT pending, claimed, in_flight, sent, failed, skipped FROM"
            " plunk_sql.campaign_progress WHERE campaign_id = %s",
            (CAMPAIGN,),
        ).fetchone()
        assert progress == tuple(counts[k] for k in (*OPEN, "sent", "failed", "skipped"))
        # Invariant 2: at most one email per recipient, and linked ones are theirs.
        per_contact = self.obs.execute(
            'SELECT count(*) FROM (SELECT "contactId" FROM public.emails WHERE "campaignId" = %s'
            " GROUP BY 1 HAVING count(*) > 1) AS d",
            (CAMPAIGN,),
        ).fetchone()[0]
        assert per_contact == 0
        # Invariant 4: SENT exactly when every recipient is settled (unless cancelled).
        if m.status != "CANCELLED":
            assert (status == "SENT") == (not m.open())


@pytest.fixture(scope="module")
def model_db(pg_server, template_db):
    name = f"plunk_sql_model_{os.getpid()}"
    with pg_server.admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield pg_server.url(name)
    with pg_server.admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_model__campaign_state_machine(model_db):
    global URL
    URL = model_db
    examples = os.environ.get("PLUNK_SQL_MODEL_EXAMPLES")
    CampaignMachine.TestCase.settings = settings(
        max_examples=int(examples or "40"),
        # Reproducible in CI (the interleaving counts below hold); a longer search is random.
        derandomize=examples is None,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    with psycopg.connect(model_db, autocommit=True) as rec:
        transition_recorder.install(rec)
    CampaignMachine.TestCase().runTest()
    print(f"model test: {STATS}")
    with psycopg.connect(model_db, autocommit=True) as rec:
        moves = transition_recorder.recorded(rec)
        print(f"model test recipient moves: {moves}")
        # Every state move the workload made is one sql/12_recipient_states.sql allows.
        assert transition_recorder.disallowed(rec) == {}
        transition_recorder.uninstall(rec)
    # The interleavings were exercised: B waited for A's open claim, and both endings occurred.
    assert STATS["blocked_on_a"] > 0
    assert STATS["a_commits"] > 0 and STATS["a_rollbacks"] > 0
    # Plunk's cancel (to DRAFT too) and late inserts after a stop were exercised.
    assert STATS["plunk_cancels"] > 0 and STATS["plunk_drafts"] > 0 and STATS["late_inserts"] > 0
