"""`new Date(string)` as Plunk's where-builder runs it (Node, V8, TZ unset = UTC), against
plunk_sql.js_date_ms (sql/15_jsvalue.sql) and the reference's port (tests/js_date.py).

A differential test: a generated corpus of date strings (ISO variants, legacy forms such as
"April 1, 2025" or JavaScript's own Date#toString, random token soups and junk) must give the
same epoch milliseconds, or Invalid Date, in Node and in SQL. Node runs from the test when it
is installed; tests/data/js_dates.json is a frozen corpus of (string, Node's ms or null) so the
comparison also runs without it (regenerate: PLUNK_SQL_WRITE_JS_DATES=1 with node installed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from tests import js_date
from tests.js_date_corpus import corpus
from tests.test_audience_grammar import Audience, cond, f

FROZEN = Path(__file__).parent / "data" / "js_dates.json"
NODE = shutil.which("node")
NODE_SCRIPT = (
    "const a = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
    "console.log(JSON.stringify(a.map(s => { const t = new Date(s).getTime();"
    " return Number.isNaN(t) ? null : t; })));"
)


def node_ms(strings: list[str]) -> list[int | None]:
    """new Date(s).getTime() of each string in Node with TZ=UTC (None: Invalid Date)."""
    assert NODE is not None
    out = subprocess.run(
        [NODE, "-e", NODE_SCRIPT],
        input=json.dumps(strings),
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
        check=True,
        timeout=60,
    ).stdout
    return [None if t is None else int(t) for t in json.loads(out)]


def sql_ms(conn: psycopg.Connection, strings: list[str]) -> list[int | None]:
    rows = conn.execute(
        "SELECT plunk_sql.js_date_ms(s)::bigint FROM unnest(%s::text[]) WITH ORDINALITY AS x(s, n)"
        " ORDER BY n",
        (strings,),
    ).fetchall()
    return [r[0] for r in rows]


def differences(strings, expected, got):
    return [(s, e, g) for s, e, g in zip(strings, expected, got, strict=True) if e != g]


def test_js_dates__frozen_corpus_matches_sql_and_the_reference(conn):
    cases = json.loads(FROZEN.read_text())
    strings = [s for s, _ in cases]
    expected = [ms for _, ms in cases]
    assert sum(ms is not None for ms in expected) > 100  # not a corpus of Invalid Dates
    assert differences(strings, expected, sql_ms(conn, strings)) == []
    assert differences(strings, expected, [js_date.parse(s) for s in strings]) == []


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_js_dates__generated_corpus_matches_node(conn):
    strings = corpus(2500, seed=12)
    expected = node_ms(strings)
    print(f"{len(strings)} strings, {sum(t is not None for t in expected)} valid dates in Node")
    assert differences(strings, expected, sql_ms(conn, strings)) == []
    assert differences(strings, expected, [js_date.parse(s) for s in strings]) == []
    if os.environ.get("PLUNK_SQL_WRITE_JS_DATES"):
        frozen = corpus(600, seed=2025)
        FROZEN.write_text(
            json.dumps([[s, t] for s, t in zip(frozen, node_ms(frozen), strict=True)], indent=0)
            + "\n"
        )


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("April 1, 2025", "2025-04-01T00:00:00.000Z"),
        ("2025/04/10", "2025-04-10T00:00:00.000Z"),
        ("Tue Apr 01 2025 10:00:00 GMT+0200", "2025-04-01T08:00:00.000Z"),
        (
            "Tue Apr 01 2025 10:00:00 GMT+0200 (Central European Summer Time)",
            "2025-04-01T08:00:00.000Z",
        ),
        ("1 Apr 2025 10:00 UTC", "2025-04-01T10:00:00.000Z"),
        ("Tue, 01 Apr 2025 08:00:00 GMT", "2025-04-01T08:00:00.000Z"),
        ("04/10/2025 10:00 PM", "2025-04-10T22:00:00.000Z"),
        ("2025-04-10 08:00", "2025-04-10T08:00:00.000Z"),  # local time: UTC
        ("12", "2001-12-01T00:00:00.000Z"),  # a lone month: the year defaults to 2001
        ("April 1", "2001-04-01T00:00:00.000Z"),
    ],
)
def test_js_dates__legacy_forms_plunk_reads(conn, text, iso):
    got = conn.execute("SELECT plunk_sql.js_iso(plunk_sql.js_date_ms(%s))", (text,)).fetchone()
    assert got == (iso,)


def test_js_dates__created_at_filters_read_legacy_strings_and_refuse_invalid_dates(plunk):
    aud = Audience(plunk)
    aud.contact("early", created_at=datetime(2025, 3, 31, 23, 0))
    aud.contact("late", created_at=datetime(2025, 4, 1, 9, 0))
    after = aud.of(cond(f("createdAt", "greaterThan", "Tue Apr 01 2025 10:00:00 GMT+0200")))
    assert after == {"late"}  # 08:00 UTC
    assert aud.of(cond(f("createdAt", "greaterThan", "April 1, 2025"))) == {"late"}
    assert aud.of(cond(f("createdAt", "lessThan", "1 Apr 2025 00:00 UTC"))) == {"early"}
    assert aud.of(cond(f("createdAt", "greaterThan", ["2025", "4", "1"]))) == {"late"}  # "2025,4,1"
    for invalid in ("not a date", "April 2025 13:00 pm", "2025-04-10T25:00", "Tue5 Apr 2025"):
        message = aud.error(cond(f("createdAt", "greaterThan", invalid)))
        assert "invalid date" in message and "createdAt" in message, message
