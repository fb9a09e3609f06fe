"""Plunk rows for tests, written the way Prisma writes them (client ids, UTC
timestamps, "updatedAt" always set)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def new_id() -> str:
    return str(uuid.uuid4())


class Plunk:
    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def project(self, name: str = "acme") -> str:
        pid = new_id()
        self.conn.execute(
            'INSERT INTO public.projects (id, name, public, secret, "updatedAt")'
            " VALUES (%s, %s, %s, %s, timezone('UTC', now()))",
            (pid, name, new_id(), new_id()),
        )
        return pid

    def contacts(
        self,
        project_id: str,
        n: int,
        *,
        subscribed: bool = True,
        data: dict[str, Any] | None = None,
        prefix: str = "user",
    ) -> list[str]:
        """n contacts with ids that sort in creation order."""
        ids = [f"{prefix}-{i:07d}-{new_id()[:8]}" for i in range(n)]
        with self.conn.cursor() as cur:
            cur.executemany(
                'INSERT INTO public.contacts (id, email, data, subscribed, "projectId", "updatedAt")'
                " VALUES (%s, %s, %s, %s, %s, timezone('UTC', now()))",
                [
                    (
                        cid,
                        f"{cid}@example.com",
                        Jsonb(data) if data is not None else None,
                        subscribed,
                        project_id,
                    )
                    for cid in ids
                ],
            )
        return ids

    def contact(self, project_id: str, **kwargs: Any) -> str:
        return self.contacts(project_id, 1, **kwargs)[0]

    def segment(
        self,
        project_id: str,
        *,
        type: str = "DYNAMIC",
        condition: dict | None = None,
        members: Iterable[str] = (),
        track_membership: bool = False,
        segment_id: str | None = None,
    ) -> str:
        sid = segment_id or new_id()
        self.conn.execute(
            'INSERT INTO public.segments (id, name, type, condition, "trackMembership",'
            ' "projectId", "updatedAt")'
            " VALUES (%s, %s, %s, %s, %s, %s, timezone('UTC', now()))",
            (
                sid,
                f"segment {sid[:8]}",
                type,
                Jsonb(condition) if condition is not None else None,
                track_membership,
                project_id,
            ),
        )
        with self.conn.cursor() as cur:
            cur.executemany(
                'INSERT INTO public.segment_memberships ("contactId", "segmentId", "updatedAt")'
                " VALUES (%s, %s, timezone('UTC', now()))",
                [(cid, sid) for cid in members],
            )
        return sid

    def campaign(
        self,
        project_id: str,
        *,
        audience: str = "ALL",
        condition: dict | None = None,
        segment_id: str | None = None,
        type: str = "MARKETING",
        status: str = "DRAFT",
        scheduled_for: str | None = None,
    ) -> str:
        cid = new_id()
        self.conn.execute(
            'INSERT INTO public.campaigns (id, name, status, subject, body, "from", type,'
            ' "audienceType", "audienceCondition", "segmentId", "scheduledFor",'
            ' "projectId", "updatedAt")'
            " VALUES (%s, 'c', %s, 'Hello {{ data.firstName }}', '<p>Hi</p>', 'news@example.com',"
            " %s, %s, %s, %s, %s, %s, timezone('UTC', now()))",
            (
                cid,
                status,
                type,
                audience,
                Jsonb(condition) if condition is not None else None,
                segment_id,
                scheduled_for,
                project_id,
            ),
        )
        return cid

    def campaign_row(self, campaign_id: str) -> dict[str, Any]:
        with self.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute("SELECT * FROM public.campaigns WHERE id = %s", (campaign_id,))
            row = cur.fetchone()
        assert row is not None
        return row

    def progress(self, campaign_id: str) -> dict[str, Any]:
        with self.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(
                "SELECT * FROM plunk_sql.campaign_progress WHERE campaign_id = %s", (campaign_id,)
            )
            row = cur.fetchone()
        assert row is not None
        return row

    def start(self, campaign_id: str) -> int:
        return self.conn.execute("SELECT plunk_sql.start_campaign(%s)", (campaign_id,)).fetchone()[
            0
        ]

    def claim(
        self,
        campaign_id: str,
        batch_size: int = 500,
        lease: str = "5 minutes",
        conn: psycopg.Connection | None = None,
    ) -> list[tuple[str, str, Any]]:
        c = conn or self.conn
        return c.execute(
            "SELECT * FROM plunk_sql.claim_batch(%s, %s, %s::interval)",
            (campaign_id, batch_size, lease),
        ).fetchall()

    def create_emails(
        self,
        campaign_id: str,
        project_id: str,
        contact_ids: Iterable[str],
        *,
        status: str = "PENDING",
        conn: psycopg.Connection | None = None,
    ) -> list[str]:
        """One emails row per contact in ONE INSERT statement, as a batching worker would."""
        c = conn or self.conn
        contact_ids = list(contact_ids)
        ids = [new_id() for _ in contact_ids]
        c.execute(
            'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
            ' "campaignId", status, "projectId", "updatedAt")'
            " SELECT e, k, 's', 'b', 'news@example.com', 'CAMPAIGN', %s, %s::\"EmailStatus\", %s,"
            " timezone('UTC', now())"
            " FROM unnest(%s::text[], %s::text[]) AS u(e, k)",
            (campaign_id, status, project_id, ids, contact_ids),
        )
        return ids

    def set_email_status(
        self, email_ids: Iterable[str], status: str, conn: psycopg.Connection | None = None
    ) -> int:
        """One UPDATE for all given emails (a batched settle)."""
        c = conn or self.conn
        cur = c.execute(
            'UPDATE public.emails SET status = %s::"EmailStatus", "updatedAt" = timezone(\'UTC\', now()),'
            " \"sentAt\" = CASE WHEN %s IN ('SENT', 'DELIVERED') THEN timezone('UTC', now()) ELSE \"sentAt\" END"
            " WHERE id = ANY(%s)",
            (status, status, list(email_ids)),
        )
        return cur.rowcount

    # --- audience grammar helpers -------------------------------------------------------------

    def contact_row(
        self,
        project_id: str,
        *,
        contact_id: str | None = None,
        email: str | None = None,
        data: Any = None,
        subscribed: bool = True,
        created_at: Any = None,
        updated_at: Any = None,
    ) -> str:
        """One contact with every audience-relevant column chosen (UTC naive datetimes)."""
        cid = contact_id or new_id()
        self.conn.execute(
            'INSERT INTO public.contacts (id, email, data, subscribed, "projectId", "createdAt",'
            ' "updatedAt") VALUES (%s, %s, %s, %s, %s,'
            " coalesce(%s::timestamp, timezone('UTC', now())),"
            " coalesce(%s::timestamp, timezone('UTC', now())))",
            (
                cid,
                email or f"{cid}@example.com",
                Jsonb(data) if data is not None else None,
                subscribed,
                project_id,
                created_at,
                updated_at,
            ),
        )
        return cid

    def event(
        self,
        project_id: str,
        contact_id: str | None,
        name: str,
        created_at: Any = None,
    ) -> str:
        """One events row (created_at: UTC naive datetime, default now)."""
        eid = new_id()
        self.conn.execute(
            'INSERT INTO public.events (id, name, data, "projectId", "contactId", "createdAt")'
            " VALUES (%s, %s, '{}', %s, %s, coalesce(%s::timestamp, timezone('UTC', now())))",
            (eid, name, project_id, contact_id, created_at),
        )
        return eid

    ACTIVITY_COLUMNS = (
        "sentAt",
        "deliveredAt",
        "openedAt",
        "clickedAt",
        "bouncedAt",
        "complainedAt",
    )

    def activity_email(
        self,
        project_id: str,
        contact_id: str,
        times: dict[str, Any] | None = None,
        *,
        campaign_id: str | None = None,
    ) -> str:
        """One emails row (TRANSACTIONAL unless a campaign is given) with activity timestamps,
        e.g. times={"openedAt": datetime(...)}."""
        times = times or {}
        unknown = set(times) - set(self.ACTIVITY_COLUMNS)
        assert not unknown, unknown
        eid = new_id()
        self.conn.execute(
            'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
            ' "campaignId", status, "projectId", "sentAt", "deliveredAt", "openedAt",'
            ' "clickedAt", "bouncedAt", "complainedAt", "updatedAt")'
            " VALUES (%s, %s, 's', 'b', 'news@example.com', %s, %s, 'SENT', %s,"
            " %s, %s, %s, %s, %s, %s, timezone('UTC', now()))",
            (
                eid,
                contact_id,
                "CAMPAIGN" if campaign_id else "TRANSACTIONAL",
                campaign_id,
                project_id,
                *(times.get(col) for col in self.ACTIVITY_COLUMNS),
            ),
        )
        return eid

    def membership(self, contact_id: str, segment_id: str, exited_at: Any = None) -> None:
        self.conn.execute(
            'INSERT INTO public.segment_memberships ("contactId", "segmentId", "exitedAt", "updatedAt")'
            " VALUES (%s, %s, %s, timezone('UTC', now()))",
            (contact_id, segment_id, exited_at),
        )

    def preview(self, campaign_id: str) -> int:
        return self.conn.execute(
            "SELECT plunk_sql.preview_audience(%s)", (campaign_id,)
        ).fetchone()[0]

    def recipients(self, campaign_id: str) -> set[str]:
        rows = self.conn.execute(
            "SELECT contact_id FROM plunk_sql.recipients WHERE campaign_id = %s", (campaign_id,)
        ).fetchall()
        return {r[0] for r in rows}
