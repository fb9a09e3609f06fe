"""The Plunk tables and columns the toolkit's SQL uses, checked before migrate changes anything.

Plunk's older v1 schema has no `segments` table; creating the toolkit's
functions there fails half-way (`type "public.segments" does not exist`) after
schema plunk_sql and yoyo's tables were made. `missing(conn)` lists what the
toolkit needs and the database lacks, so `migrate` can refuse up front with one
line and leave the database as it was.

Required: what every supported Plunk version has (the seed-era image
sha-7834b9e and current v2). Columns and tables only newer versions have
(`contacts."snoozedUntil"`, `campaigns.archived`, `emails."recipientAddress"`,
`recipient_suppression_rules`, ...) are never required: code that uses one
checks for it at run time. tests/test_plunk_schema.py keeps this list in step
with the camelCase columns the SQL files quote.
"""

from __future__ import annotations

from typing import Any

import psycopg

from plunk_sql.queries import query

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "projects": ("id",),
    "contacts": ("id", "email", "data", "subscribed", "projectId", "createdAt", "updatedAt"),
    "segments": ("id", "type", "condition", "trackMembership", "projectId"),
    "segment_memberships": ("contactId", "segmentId", "exitedAt"),
    "events": ("id", "name", "projectId", "contactId", "createdAt"),
    "campaigns": (
        "id",
        "status",
        "subject",
        "body",
        "from",
        "fromName",
        "replyTo",
        "type",
        "audienceType",
        "audienceCondition",
        "segmentId",
        "scheduledFor",
        "totalRecipients",
        "sentCount",
        "projectId",
        "sentAt",
        "createdAt",
        "updatedAt",
    ),
    "emails": (
        "id",
        "contactId",
        "subject",
        "body",
        "from",
        "sourceType",
        "campaignId",
        "status",
        "sentAt",
        "deliveredAt",
        "openedAt",
        "clickedAt",
        "bouncedAt",
        "complainedAt",
        "error",
        "messageId",
        "projectId",
        "createdAt",
        "updatedAt",
    ),
}

# Types the SQL casts to by name (status values are compared as text everywhere else).
REQUIRED_TYPES = ("CampaignStatus",)

# Columns of newer Plunk versions only: the SQL may use them, checking first.
OPTIONAL_COLUMNS = frozenset(
    {"snoozedUntil", "archived", "recipientAddress", "suppression", "renderedSubject"}
    | {"renderedBody", "simulated", "sendAtLocal", "timezone"}
)


def missing(conn: psycopg.Connection[Any]) -> list[str]:
    """What the toolkit needs and the database lacks: `public.T` for a missing table,
    `public.T."column"` for a missing column. Empty when the schema is supported."""
    tables = list(REQUIRED_COLUMNS)
    rows = conn.execute(query("plunk_columns"), {"tables": tables}).fetchall()
    present: dict[str, set[str]] = {}
    for table, column in rows:
        present.setdefault(table, set())
        if column is not None:
            present[table].add(column)
    out: list[str] = []
    for table, columns in REQUIRED_COLUMNS.items():
        if table not in present:
            out.append(f"public.{table}")
            continue
        out += [f'public.{table}."{c}"' for c in columns if c not in present[table]]
    for name in REQUIRED_TYPES:
        row = conn.execute("SELECT to_regtype(%s) IS NOT NULL", (f'public."{name}"',)).fetchone()
        if not (row and row[0]):
            out.append(f'type public."{name}"')
    return out


def refusal(what: list[str]) -> str:
    """The one-line message migrate prints for an unsupported schema."""
    return (
        "this Plunk schema is not supported (an older Plunk version?): missing "
        + ", ".join(what)
        + "; upgrade Plunk first (prisma migrate deploy). Nothing was changed"
    )
