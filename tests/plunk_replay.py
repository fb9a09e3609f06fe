"""Plunk's two campaign senders, replayed statement by statement (shared/plunk-facts.md;
useplunk/plunk apps/api/src/services/CampaignService.ts and the email worker).

Neither sender knows the toolkit: each method issues the SQL Prisma sends for Plunk's code, one
autocommitted statement at a time (Plunk uses no transaction around them), so the toolkit's
triggers see exactly the writes of an unmodified Plunk. BullMQ is the test's hand: a batch job
or an email job runs when the test calls it, and a "lost job" is one the test never runs.

- Seed era (image sha-7834b9e): `start` counts the audience into "totalRecipients" and sets
  SENDING; each `batch` re-runs the audience after the cursor and inserts one PENDING email per
  contact; `send_email` sets SENDING, then SENT (guarded on "sentAt" IS NULL), counts the
  campaign's stamped emails and sets SENT with "sentCount" when they reach "totalRecipients".
- Current v2: the same batches; the last one rewrites "totalRecipients" to the number of emails
  and calls finalize_if_done; the email job claims PENDING -> SENDING only while the campaign is
  SENDING, fails an email whose campaign stopped ('Campaign cancelled'), records SENT, rewrites
  "sentCount" and calls finalize_if_done (also after a terminal FAILED).
- Cancel (v2): CANCELLED at once; the cleanup job deletes unstamped emails created before the
  cancel, 1,000 per statement, then returns the campaign to DRAFT when none was ever sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

import psycopg
from psycopg import sql

Era = Literal["seed", "v2"]

NOW = "timezone('UTC', now())"  # what Prisma writes for new Date() (UTC wall clock)


def _id() -> str:
    return str(uuid.uuid4())


@dataclass
class PlunkSender:
    """One campaign send as Plunk's own code performs it.

    `audience` is the WHERE clause Prisma builds for the campaign's audience over
    public.contacts (Plunk's buildRecipientWhereAsync), with %(project)s for the project.
    """

    conn: psycopg.Connection
    campaign_id: str
    project_id: str
    era: Era
    audience: str
    batch_size: int = 500
    cursor: str | None = None
    has_more: bool = True
    emails: list[str] = field(default_factory=list)

    # --- CampaignService ---------------------------------------------------------------------

    def _where(self) -> sql.Composable:
        return sql.SQL(self.audience)  # fixed test fragments only

    def count_audience(self) -> int:
        row = self.conn.execute(
            sql.SQL("SELECT count(*) FROM public.contacts WHERE ") + self._where(),
            {"project": self.project_id},
        ).fetchone()
        assert row is not None
        return int(row[0])

    def start(self) -> int:
        """startSending: the live count into "totalRecipients", SENDING, "sentAt"; batch 1 queued."""
        total = self.count_audience()
        self.conn.execute(
            "UPDATE public.campaigns SET status = 'SENDING', \"totalRecipients\" = %s,"
            f' "sentAt" = {NOW}, "updatedAt" = {NOW} WHERE id = %s',
            (total, self.campaign_id),
        )
        return total

    def status(self) -> str:
        row = self.conn.execute(
            "SELECT status::text FROM public.campaigns WHERE id = %s", (self.campaign_id,)
        ).fetchone()
        assert row is not None
        return str(row[0])

    def batch(self) -> list[str]:
        """processBatch: skip unless SENDING; re-run the audience after the cursor (id order,
        batch_size + 1 to learn hasMore); one INSERT per contact. Returns the new email ids."""
        if self.status() != "SENDING" or not self.has_more:
            return []
        query = sql.SQL("SELECT id FROM public.contacts WHERE ") + self._where()
        if self.cursor is not None:
            query += sql.SQL(" AND id > %(cursor)s")
        query += sql.SQL(" ORDER BY id LIMIT %(take)s")
        rows = self.conn.execute(
            query, {"project": self.project_id, "cursor": self.cursor, "take": self.batch_size + 1}
        ).fetchall()
        self.has_more = len(rows) > self.batch_size
        contacts = [str(r[0]) for r in rows[: self.batch_size]]
        created: list[str] = []
        for contact in contacts:  # EmailService.sendCampaignEmail, one row per statement
            email = _id()
            self.conn.execute(
                'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
                ' "campaignId", status, "projectId", "createdAt", "updatedAt")'
                " VALUES (%s, %s, 'Hello', '<p>Hi</p>', 'news@example.com', 'CAMPAIGN', %s,"
                f" 'PENDING', %s, {NOW}, {NOW})",
                (email, contact, self.campaign_id, self.project_id),
            )
            created.append(email)
        self.emails.extend(created)
        if contacts:
            self.cursor = contacts[-1]
        if not self.has_more and self.era == "v2":
            # Last batch: "totalRecipients" = emails created, then finalizeIfDone.
            self.conn.execute(
                'UPDATE public.campaigns SET "totalRecipients" ='
                ' (SELECT count(*) FROM public.emails WHERE "campaignId" = %s),'
                f' "updatedAt" = {NOW} WHERE id = %s',
                (self.campaign_id, self.campaign_id),
            )
            self.finalize_if_done()
        return created

    def run_batches(self) -> None:
        while self.has_more and self.status() == "SENDING":
            self.batch()

    def finalize_if_done(self) -> None:
        """v2's finalizeIfDone: nothing while an email is PENDING/SENDING; SENT when the stamped
        plus FAILED emails reach "totalRecipients"."""
        row = self.conn.execute(
            'SELECT c.status::text, c."totalRecipients",'
            " count(e.id) FILTER (WHERE e.status::text IN ('PENDING', 'SENDING')),"
            " count(e.id) FILTER (WHERE e.\"sentAt\" IS NOT NULL OR e.status::text = 'FAILED'),"
            ' count(e.id) FILTER (WHERE e."sentAt" IS NOT NULL)'
            ' FROM public.campaigns c LEFT JOIN public.emails e ON e."campaignId" = c.id'
            " WHERE c.id = %s GROUP BY c.id",
            (self.campaign_id,),
        ).fetchone()
        assert row is not None
        status, total, open_, processed, sent = row
        if status != "SENDING" or open_ > 0 or (total > 0 and processed < total):
            return
        self.conn.execute(
            "UPDATE public.campaigns SET status = 'SENT', \"sentCount\" = %s,"
            f' "updatedAt" = {NOW} WHERE id = %s',
            (sent, self.campaign_id),
        )

    # --- the email worker ----------------------------------------------------------------------

    def send_email(self, email_id: str, *, outcome: Literal["SENT", "FAILED"] = "SENT") -> None:
        """One email job, as the era's worker runs it; SES accepts (or rejects for good)."""
        row = self.conn.execute(
            "SELECT e.status::text, c.status::text FROM public.emails e LEFT JOIN public.campaigns c"
            ' ON c.id = e."campaignId" WHERE e.id = %s',
            (email_id,),
        ).fetchone()
        if row is None:
            return  # deleted (a cancel's cleanup): nothing to send
        email_status, campaign_status = row
        if self.era == "seed":
            self._send_seed(email_id, email_status, outcome)
        else:
            self._send_v2(email_id, email_status, campaign_status, outcome)

    def _send_seed(self, email_id: str, email_status: str, outcome: str) -> None:
        if email_status != "PENDING":
            return
        self.conn.execute(
            f"UPDATE public.emails SET status = 'SENDING', \"updatedAt\" = {NOW} WHERE id = %s",
            (email_id,),
        )
        if outcome == "FAILED":
            self.conn.execute(
                "UPDATE public.emails SET status = 'FAILED', error = 'SES rejected',"
                f' "updatedAt" = {NOW} WHERE id = %s',
                (email_id,),
            )
            return
        self.conn.execute(
            "UPDATE public.emails SET status = 'SENT', \"sentAt\" = " + NOW + ","
            f' "messageId" = %s, "updatedAt" = {NOW} WHERE id = %s AND "sentAt" IS NULL',
            (_id(), email_id),
        )
        row = self.conn.execute(
            'SELECT count(*) FROM public.emails WHERE "campaignId" = %s AND "sentAt" IS NOT NULL',
            (self.campaign_id,),
        ).fetchone()
        total = self.conn.execute(
            'SELECT "totalRecipients" FROM public.campaigns WHERE id = %s', (self.campaign_id,)
        ).fetchone()
        assert row is not None and total is not None
        if row[0] >= total[0]:
            self.conn.execute(
                "UPDATE public.campaigns SET status = 'SENT', \"sentCount\" = %s,"
                f' "updatedAt" = {NOW} WHERE id = %s',
                (row[0], self.campaign_id),
            )

    def _send_v2(
        self, email_id: str, email_status: str, campaign_status: str | None, outcome: str
    ) -> None:
        if email_status != "PENDING":
            return
        if campaign_status is not None and campaign_status != "SENDING":
            # failForStoppedCampaign
            self.conn.execute(
                "UPDATE public.emails SET status = 'FAILED', error = %s,"
                f" \"updatedAt\" = {NOW} WHERE id = %s AND status = 'PENDING'",
                (f"Campaign {campaign_status.lower()}", email_id),
            )
            return
        claimed = self.conn.execute(
            f"UPDATE public.emails SET status = 'SENDING', \"updatedAt\" = {NOW}"
            " WHERE id = %s AND status = 'PENDING' AND EXISTS (SELECT 1 FROM public.campaigns c"
            " WHERE c.id = public.emails.\"campaignId\" AND c.status = 'SENDING')",
            (email_id,),
        ).rowcount
        if claimed == 0:
            return
        if outcome == "FAILED":  # markTerminalFailure, then finalizeIfDone
            self.conn.execute(
                "UPDATE public.emails SET status = 'FAILED', error = 'SES rejected',"
                f' "updatedAt" = {NOW} WHERE id = %s AND status = \'SENDING\' AND "sentAt" IS NULL',
                (email_id,),
            )
            self.finalize_if_done()
            return
        self.conn.execute(
            "UPDATE public.emails SET status = 'SENT', \"sentAt\" = " + NOW + ","
            f' "messageId" = %s, error = NULL, "updatedAt" = {NOW}'
            ' WHERE id = %s AND "sentAt" IS NULL',
            (_id(), email_id),
        )
        self.conn.execute(  # countCampaignSent
            'UPDATE public.campaigns SET "sentCount" = (SELECT count(*) FROM public.emails'
            ' WHERE "campaignId" = %s AND "sentAt" IS NOT NULL),'
            f' "updatedAt" = {NOW} WHERE id = %s',
            (self.campaign_id, self.campaign_id),
        )
        self.finalize_if_done()

    def send_all(self, *, lost: set[str] | None = None) -> None:
        """Run every email job not run yet, except the lost ones."""
        for email in self.emails:
            if lost and email in lost:
                continue
            self.send_email(email)

    # --- cancel from Plunk's UI ----------------------------------------------------------------

    def cancel(self) -> str:
        """v2 cancel: CANCELLED at once; cleanup deletes unstamped emails created before it,
        1,000 per statement; back to DRAFT when no email of the campaign was ever sent."""
        self.conn.execute(
            f"UPDATE public.campaigns SET status = 'CANCELLED', \"updatedAt\" = {NOW} WHERE id = %s",
            (self.campaign_id,),
        )
        return self.status()

    def cancel_cleanup(self) -> str:
        while True:
            deleted = self.conn.execute(
                "DELETE FROM public.emails WHERE id IN (SELECT id FROM public.emails"
                ' WHERE "campaignId" = %s AND "sentAt" IS NULL LIMIT 1000)',
                (self.campaign_id,),
            ).rowcount
            if deleted == 0:
                break
        row = self.conn.execute(
            'SELECT count(*) FROM public.emails WHERE "campaignId" = %s AND "sentAt" IS NOT NULL',
            (self.campaign_id,),
        ).fetchone()
        assert row is not None
        if row[0] == 0:
            self.conn.execute(
                "UPDATE public.campaigns SET status = 'DRAFT', \"sentCount\" = 0,"
                ' "deliveredCount" = 0, "openedCount" = 0, "clickedCount" = 0,'
                ' "bouncedCount" = 0, "sentAt" = NULL, "scheduledFor" = NULL,'
                f' "updatedAt" = {NOW} WHERE id = %s',
                (self.campaign_id,),
            )
        return self.status()


def segment_audience(key: str, value: str) -> str:
    """Prisma's where for a DYNAMIC segment {data.<key> equals <value>} of a MARKETING campaign."""
    assert key.isidentifier() and value.isidentifier()  # fixed test values only
    return (
        '"projectId" = %(project)s AND subscribed = true'
        f" AND (data #> '{{{key}}}') = '\"{value}\"'::jsonb"
    )
