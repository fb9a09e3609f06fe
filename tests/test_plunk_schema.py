"""migrate checks Plunk's schema first: an unsupported one is refused with one line and the
database is left exactly as it was; every supported version is accepted."""

from __future__ import annotations

import re
import subprocess
import sys

import psycopg
import pytest

from plunk_sql import plunk_schema, resources
from plunk_sql.migrate import UnsupportedPlunkSchema, migrate

# Plunk v2's newest optional tables and columns (plunk-facts.md): accepted, never required.
# (segment_memberships' "createdAt"/"updatedAt" are in sql/plunk_tables.sql already: v2 has them.)
NEWEST_V2 = """
ALTER TABLE public.contacts ADD COLUMN "snoozedUntil" timestamp(3), ADD COLUMN timezone text;
ALTER TABLE public.campaigns ADD COLUMN archived boolean NOT NULL DEFAULT false;
ALTER TABLE public.emails
    ADD COLUMN "recipientAddress" text, ADD COLUMN suppression jsonb,
    ADD COLUMN "renderedSubject" text, ADD COLUMN "renderedBody" text,
    ADD COLUMN simulated boolean NOT NULL DEFAULT false;
CREATE TABLE public.recipient_suppression_rules (
    id text PRIMARY KEY, "projectId" text NOT NULL, name text NOT NULL, kind text NOT NULL,
    pattern text NOT NULL, enabled boolean NOT NULL DEFAULT true,
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "updatedAt" timestamp(3) NOT NULL
);
"""

# Plunk v1: no segments (and so no memberships, no SEGMENT audience on campaigns).
V1 = """
ALTER TABLE public.campaigns DROP COLUMN "segmentId";
DROP TABLE public.segment_memberships;
DROP TABLE public.segments;
"""

SNAPSHOT = """
SELECT n.nspname, c.relname, c.relkind
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
UNION ALL
SELECT nspname, '', 'n' FROM pg_namespace
UNION ALL
SELECT n.nspname, p.oid::regprocedure::text, 'f'
FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2, 3
"""


def _plunk_tables(url: str, extra_sql: str = "") -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(resources.plunk_tables_file().read_text())
        if extra_sql:
            conn.execute(extra_sql)


def _snapshot(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(SNAPSHOT).fetchall()


def test_plunk_schema__required_columns_cover_what_the_sql_quotes():
    quoted = set()
    for path in resources.function_files():
        quoted |= set(re.findall(r'"([a-z]+[A-Z][A-Za-z]*)"', path.read_text()))
    required = {c for cols in plunk_schema.REQUIRED_COLUMNS.values() for c in cols}
    assert quoted - required - plunk_schema.OPTIONAL_COLUMNS == set()


def test_plunk_schema__seed_era_tables_pass(empty_db):
    _plunk_tables(empty_db)
    with psycopg.connect(empty_db) as conn:
        assert plunk_schema.missing(conn) == []


def test_plunk_schema__newest_v2_is_accepted(empty_db, plunk_factory_for):
    _plunk_tables(empty_db, NEWEST_V2)
    migrate(empty_db)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        plunk = plunk_factory_for(conn)
        pid = plunk.project()
        plunk.contacts(pid, 3)
        assert plunk.start(plunk.campaign(pid)) == 3


@pytest.mark.parametrize(
    ("breakage", "named"),
    [
        (V1, 'public.campaigns."segmentId", public.segments, public.segment_memberships'),
        ('ALTER TABLE public.emails DROP COLUMN "campaignId"', 'public.emails."campaignId"'),
    ],
    ids=["plunk-v1", "no-campaignId"],
)
def test_plunk_schema__unsupported_is_refused_and_nothing_changes(empty_db, breakage, named):
    _plunk_tables(empty_db, breakage)
    before = _snapshot(empty_db)
    with pytest.raises(UnsupportedPlunkSchema) as info:
        migrate(empty_db)
    for part in named.split(", "):
        assert part in str(info.value)
    assert _snapshot(empty_db) == before  # no schema plunk_sql, no yoyo tables, no functions

    res = subprocess.run(
        [sys.executable, "-m", "plunk_sql.cli", "--database-url", empty_db, "migrate"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("plunk-sql migrate: this Plunk schema is not supported")
    assert _snapshot(empty_db) == before
