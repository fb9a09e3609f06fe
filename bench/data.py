"""Set-based Plunk-schema data for the benchmarks (generate_series, no client loops).

Contact ids are md5-derived uuids (random order, like Prisma's client uuids), so
keyset cursors and index inserts see realistic ordering.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import psycopg

from plunk_sql.migrate import migrate
from plunk_sql.testing.cluster import start_cluster


@contextlib.contextmanager
def migrated_database(**settings: str) -> Iterator[str]:
    """A throwaway cluster (server settings as given) with one database, `bench`, holding
    Plunk's tables and the toolkit: its URL. The cluster is removed at exit."""
    cluster = start_cluster(settings=settings)
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        url = cluster.url("bench")
        migrate(url, with_plunk_tables=True)
        yield url
    finally:
        cluster.destroy()


# A mixed dynamic-segment condition: JSON equality (GIN-indexable), a numeric
# comparison, a createdAt bound, and, when the toolkit compiles it, an event
# filter. OR of two AND groups.
BASE_CONDITION = {
    "logic": "OR",
    "groups": [
        {
            "filters": [
                {"field": "data.plan", "operator": "equals", "value": "pro"},
                {"field": "data.age", "operator": "greaterThan", "value": 30},
            ]
        },
        {
            "filters": [
                {"field": "data.country", "operator": "equals", "value": "DE"},
                {"field": "createdAt", "operator": "greaterThan", "value": "2024-06-01"},
            ]
        },
    ],
}
EVENT_FILTER = {
    "field": "event.purchase",
    "operator": "triggeredWithin",
    "value": 60,
    "unit": "days",
}

# Share of contacts() that the condition above selects (26,931 of 100,000; the data
# is deterministic, so the share holds at every size within rounding).
AUDIENCE_SHARE = 0.26931


def contacts_for_audience(recipients: int) -> int:
    """How many contacts() give about `recipients` recipients under the condition."""
    return max(round(recipients / AUDIENCE_SHARE), 10)


def project(conn: psycopg.Connection, pid: str) -> None:
    conn.execute(
        'INSERT INTO public.projects (id, name, public, secret, "updatedAt")'
        " VALUES (%(p)s, %(p)s, %(p)s || '-public', %(p)s || '-secret', timezone('UTC', now()))",
        {"p": pid},
    )


def contacts(conn: psycopg.Connection, pid: str, n: int, *, events: bool = True) -> None:
    """n contacts with custom data (95% subscribed) and, optionally, one purchase
    event for every second contact (half of them within the last 60 days)."""
    conn.execute(
        'INSERT INTO public.contacts (id, email, data, subscribed, "projectId", "createdAt",'
        ' "updatedAt")'
        " SELECT md5(%(p)s || i)::uuid::text, 'user' || i || '@' || %(p)s || '.example.com',"
        "  jsonb_build_object('firstName', 'User' || i,"
        "   'plan', (ARRAY['free', 'pro', 'team'])[1 + i %% 3],"
        "   'age', 18 + (i * 7) %% 60,"
        "   'country', (ARRAY['DE', 'FR', 'US', 'GB', 'NL'])[1 + i %% 5],"
        "   'signupDate', to_char(date '2024-01-01' + (i %% 700), 'YYYY-MM-DD')),"
        "  i %% 20 <> 0, %(p)s, timestamp '2024-01-01' + (i %% 700) * interval '1 day',"
        "  timezone('UTC', now())"
        " FROM generate_series(1, %(n)s) AS i",
        {"p": pid, "n": n},
    )
    if events:
        conn.execute(
            'INSERT INTO public.events (id, name, data, "projectId", "contactId", "createdAt")'
            " SELECT md5('ev' || %(p)s || i)::uuid::text, 'purchase',"
            "  jsonb_build_object('amount', i %% 100), %(p)s, md5(%(p)s || i)::uuid::text,"
            "  timezone('UTC', now()) - (i %% 120) * interval '1 day'"
            " FROM generate_series(2, %(n)s, 2) AS i",
            {"p": pid, "n": n},
        )


def background_emails(conn: psycopg.Connection, pid: str, n: int) -> None:
    """n delivered transactional emails of the project (no campaign), as a live Plunk
    database holds: the emails table and its statistics are never those of an empty
    table. (Planned while `emails` was analyzed empty, a long-running session's cached
    plans keep a sequential scan while the table grows: see BENCHMARKS.md.)"""
    conn.execute(
        'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
        ' status, "sentAt", "projectId", "createdAt", "updatedAt")'
        " SELECT md5('bg' || c.id)::uuid::text, c.id, 'Receipt', '<p>Thanks</p>',"
        "  'shop@example.com', 'TRANSACTIONAL', 'SENT', c.\"createdAt\", %(p)s, c.\"createdAt\","
        '  c."createdAt"'
        ' FROM public.contacts AS c WHERE c."projectId" = %(p)s LIMIT %(n)s',
        {"p": pid, "n": n},
    )


def condition(conn: psycopg.Connection, pid: str) -> tuple[dict, bool]:
    """The mixed condition, with the event filter when this toolkit version compiles it."""
    cond = json.loads(json.dumps(BASE_CONDITION))
    cond["groups"][1]["filters"].append(EVENT_FILTER)
    try:
        with conn.transaction():
            conn.execute(
                "SELECT plunk_sql.compile_condition(%s::jsonb, %s)", (json.dumps(cond), pid)
            )
        return cond, True
    except psycopg.Error:
        return json.loads(json.dumps(BASE_CONDITION)), False


def segment(conn: psycopg.Connection, pid: str, cond: dict) -> str:
    sid = f"{pid}-segment"
    conn.execute(
        'INSERT INTO public.segments (id, name, type, condition, "projectId", "updatedAt")'
        " VALUES (%s, 'bench segment', 'DYNAMIC', %s::jsonb, %s, timezone('UTC', now()))",
        (sid, json.dumps(cond), pid),
    )
    return sid


def campaign(conn: psycopg.Connection, cid: str, pid: str, *, segment_id: str | None = None) -> str:
    conn.execute(
        'INSERT INTO public.campaigns (id, name, subject, body, "from", "audienceType",'
        ' "segmentId", "projectId", "updatedAt")'
        " VALUES (%s, 'bench', 'Hello', '<p>Hi</p>', 'news@example.com', %s, %s, %s,"
        " timezone('UTC', now()))",
        (cid, "SEGMENT" if segment_id else "ALL", segment_id, pid),
    )
    return cid


def predicate(conn: psycopg.Connection, cid: str) -> str:
    return conn.execute(
        "SELECT plunk_sql.audience_predicate(c) FROM public.campaigns AS c WHERE c.id = %s",
        (cid,),
    ).fetchone()[0]
