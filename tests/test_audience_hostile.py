"""Hostile conditions: each is rejected with SQLSTATE 22023 or matched literally, never run.

One database for the module (a clone of the migrated template); every case works in its own
project, so cases cannot see each other's rows.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests import reference_audience as ref
from tests.factories import Plunk

INJECTIONS = [
    "'; DROP TABLE public.contacts; --",
    "' OR '1'='1",
    "x' OR true OR 'x",
    "$$; SELECT pg_sleep(10); $$",
    "/* c */ 1=1",
    "-- comment",
    "\\'",
    "\\",
    '"',
    '"; DROP TABLE public.contacts; --',
    "%L %I %s %%",
    "$1",
    "_%",
    "E'\\x41'",
    "') IS NOT NULL OR ('",
    "ünïcødé ß ΣΑΣ",
    "😀\u202e\u200b",
    "\t\n\r",
    "a->'b'",
    "a ? 'b'",
]


@pytest.fixture(scope="module")
def hostile_conn(pg_server, template_db) -> Iterator[psycopg.Connection]:
    name = f"plunk_sql_hostile_{os.getpid()}"
    with pg_server.admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        with psycopg.connect(pg_server.url(name), autocommit=True) as c:
            c.execute("CREATE TABLE public.canary (x int)")
            yield c
    finally:
        with pg_server.admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def h(hostile_conn) -> Iterator[Hostile]:
    yield Hostile(Plunk(hostile_conn))
    # Nothing a condition said was executed.
    assert hostile_conn.execute("SELECT to_regclass('public.canary') IS NOT NULL").fetchone()[0]
    assert hostile_conn.execute("SELECT to_regclass('public.contacts') IS NOT NULL").fetchone()[0]


class Hostile:
    def __init__(self, plunk: Plunk) -> None:
        self.plunk = plunk
        self.project = plunk.project()

    def contact(self, name: str, **kwargs) -> str:
        kwargs.setdefault("email", f"{len(name)}-{abs(hash(name))}@example.com")
        return self.plunk.contact_row(self.project, contact_id=f"{self.project}:{name}", **kwargs)

    def campaign(self, condition_json: str) -> str:
        """A FILTERED campaign whose condition is raw JSON text (numbers beyond floats)."""
        cid = self.plunk.campaign(self.project, audience="FILTERED", condition={"x": 1})
        self.plunk.conn.execute(
            'UPDATE public.campaigns SET "audienceCondition" = %s::jsonb WHERE id = %s',
            (condition_json, cid),
        )
        return cid

    def of(self, condition) -> set[str]:
        text = condition if isinstance(condition, str) else json.dumps(condition)
        cid = self.campaign(text)
        n = self.plunk.preview(cid)
        self.plunk.start(cid)
        got = {r.split(":", 1)[1] for r in self.plunk.recipients(cid)}
        assert len(got) == n
        return got

    def rejected(self, condition) -> str:
        text = condition if isinstance(condition, str) else json.dumps(condition)
        cid = self.campaign(text)
        with pytest.raises(psycopg.Error) as exc:
            self.plunk.preview(cid)
        assert exc.value.sqlstate == "22023", exc.value
        with pytest.raises(psycopg.Error) as exc2:
            self.plunk.start(cid)
        assert exc2.value.sqlstate == "22023"
        assert self.plunk.recipients(cid) == set()
        return exc.value.diag.message_primary or ""


def one(field: str, operator: str, **kw) -> dict:
    return {"logic": "AND", "groups": [{"filters": [{"field": field, "operator": operator, **kw}]}]}


def like_hits(pattern: str, rows: dict[str, str]) -> set[str]:
    """Names whose text matches a LIKE pattern (Plunk leaves %, _ and backslash unescaped)."""
    return {name for name, text in rows.items() if ref.like(ref.FOLD(text), ref.FOLD(pattern))}


@pytest.mark.parametrize("text", INJECTIONS)
def test_hostile__values_are_matched_literally(h, text):
    h.contact("hit", data={"k": text}, email=f"{text}@example.com")
    h.contact("near", data={"k": text + "!"}, email="near@example.com")
    h.contact("miss", data={"k": "plain"}, email="miss@example.com")
    assert h.of(one("data.k", "equals", value=text)) == {"hit"}
    assert h.of(one("data.k", "notEquals", value=text)) == {"near", "miss"}
    data = {"hit": text, "near": text + "!", "miss": "plain"}
    emails = {"hit": f"{text}@example.com", "near": "near@example.com", "miss": "miss@example.com"}
    # contains and the email field are LIKE patterns in Plunk: the text is data, never SQL.
    assert h.of(one("data.k", "contains", value=text)) == like_hits(f"%{text}%", data)
    assert h.of(one("email", "contains", value=text)) == like_hits(f"%{text}%", emails)
    want = like_hits(f"{text}@EXAMPLE.COM", emails)
    assert h.of(one("email", "equals", value=f"{text}@EXAMPLE.COM")) == want


def nest(path: list[str], leaf: Any) -> Any:
    return leaf if not path else {path[0]: nest(path[1:], leaf)}


@pytest.mark.parametrize("key", [*INJECTIONS, "a.b", " ", "data.x", "0", "{a,b}"])
def test_hostile__data_keys_are_matched_literally(h, key):
    """Keys are data (a dot nests, as in Plunk: data.a.b is data -> a -> b)."""
    h.contact("hit", data={**nest(key.split("."), 1), "other": 2})
    h.contact("miss", data={"other": 1})
    assert h.of(one(f"data.{key}", "equals", value=1)) == {"hit"}
    assert h.of(one(f"data.{key}", "exists")) == {"hit"}
    assert h.of(one(f"data.{key}", "greaterThan", value=0)) == {"hit"}


@pytest.mark.parametrize("name", [*INJECTIONS, "user.signup", " "])
def test_hostile__event_names_are_matched_literally(h, name):
    hit = h.contact("hit")
    near = h.contact("near")
    h.plunk.event(h.project, hit, name)
    h.plunk.event(h.project, near, name + "x")
    assert h.of(one(f"event.{name}", "triggered")) == {"hit"}
    assert h.of(one(f"event.{name}", "notTriggered")) == {"near"}


@pytest.mark.parametrize("sid", INJECTIONS)
def test_hostile__segment_ids_are_matched_literally_or_unknown(h, sid):
    hit = h.contact("hit")
    h.contact("miss")
    msg = h.rejected(one(f"segment.{sid}", "memberOfSegment"))
    assert "does not exist" in msg
    real = h.plunk.segment(h.project, type="STATIC", members=[hit], segment_id=h.project + sid)
    assert h.of(one(f"segment.{real}", "memberOfSegment")) == {"hit"}


@pytest.mark.parametrize(
    "condition",
    [
        # type confusion Plunk refuses too (values it reads the JavaScript way are accepted:
        # tests/test_audience_grammar.py)
        one("data.n", "greaterThan", value=True),
        one("data.n", "greaterThan", value=None),
        one("createdAt", "equals", value="now"),
        one("createdAt", "equals", value="epoch"),
        one("createdAt", "equals", value="2024-01-01'; --"),
        one("createdAt", "within", value=7, unit="DAYS"),
        one("createdAt", "within", value=7, unit="days'; --"),
        one("createdAt", "within", value=7, unit=["days"]),
        one("event.x", "triggeredWithin", value=7, unit="fortnights"),
        {"logic": ["AND"], "groups": [{"filters": [{"field": "email", "operator": "contains"}]}]},
        {"logic": True, "groups": []},
        {"logic": "AND", "groups": "[]"},
        {"logic": "AND OR 1=1", "groups": [{"filters": []}]},
        {"logic": "AND", "groups": [{"filters": [{"field": 1, "operator": "exists"}]}]},
        {"logic": "AND", "groups": [{"filters": [{"field": "data.x", "operator": ["exists"]}]}]},
        {"logic": "AND", "groups": [{"filters": [{"field": None, "operator": "exists"}]}]},
        # unknown fields and operators, with injection text in them
        one("email'; DROP TABLE public.canary; --", "equals", value="x"),
        one("c.id", "equals", value="x"),
        one('"projectId"', "equals", value="x"),
        one("emai\u200bl", "equals", value="x"),
        one("data", "exists"),
        one("segment", "memberOfSegment"),
        one("event", "triggered"),
        one("email", "equals OR true", value="x"),
        one("data.x", "exists; --"),
        one("email.opened;--", "triggered"),
        "null",
        '"AND"',
        "42",
        "[]",
    ],
)
def test_hostile__malformed_is_22023(h, condition):
    h.contact("a", data={"n": 5})
    msg = h.rejected(condition)
    assert msg.startswith("invalid audience filter") or "no audienceCondition" in msg


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"field": "data.n", "operator": "equals", "value": 1e300}', {"huge"}),
        ('{"field": "data.n", "operator": "equals", "value": 1.0e300}', {"huge"}),
        ('{"field": "data.n", "operator": "greaterThan", "value": 1e-400}', {"small", "huge"}),
        ('{"field": "data.n", "operator": "lessThanOrEqual", "value": -0}', set()),
    ],
)
def test_hostile__huge_numbers_compare_exactly(h, raw, expected):
    h.contact("small", data={"n": 5})
    h.contact("huge", data={"n": 10**300})
    assert h.of('{"logic": "AND", "groups": [{"filters": [' + raw + "]}]}") == expected


@pytest.mark.parametrize(
    "raw",
    [
        '{"field": "createdAt", "operator": "within", "value": 1e400, "unit": "days"}',
        '{"field": "createdAt", "operator": "within", "value": 1e16, "unit": "days"}',
        '{"field": "data.n", "operator": "greaterThan", "value": 1e400}',
        '{"field": "data.n", "operator": "lessThan", "value": -1e400}',
        '{"field": "event.x", "operator": "triggeredWithin", "value": 99999999999, "unit": "minutes"}',
        '{"field": "email.opened", "operator": "notTriggeredWithin", "value": "x", "unit": "hours"}',
        '{"field": "data.d", "operator": "olderThan", "value": -1e17, "unit": "days"}',
    ],
)
def test_hostile__out_of_range_intervals_are_22023(h, raw):
    assert "invalid audience filter" in h.rejected(
        '{"logic": "AND", "groups": [{"filters": [' + raw + "]}]}"
    )


def test_hostile__deep_nesting_is_refused_quickly(h):
    h.contact("a", data={"x": 1})
    c: dict = {"logic": "AND", "groups": [{"filters": [{"field": "data.x", "operator": "exists"}]}]}
    for _ in range(300):
        c = {"logic": "OR", "groups": [{"filters": [], "conditions": c}]}
    started = time.monotonic()
    assert "nests deeper" in h.rejected(c)
    assert time.monotonic() - started < 30  # a guard against runaway recursion, not a benchmark


def test_hostile__segment_fan_out_cannot_explode(h):
    """Each segment refers to the next one 12 times: 12^5 inlined copies (within the depth
    limit) unless the compiled size is bounded."""
    h.contact("a", data={"x": 1})
    ids = [f"{h.project}-fan-{i}" for i in range(6)]
    h.plunk.segment(h.project, segment_id=ids[-1], condition=one("data.x", "exists"))
    for i in range(len(ids) - 2, -1, -1):
        ref = {"field": f"segment.{ids[i + 1]}", "operator": "memberOfSegment"}
        h.plunk.segment(
            h.project,
            segment_id=ids[i],
            condition={"logic": "OR", "groups": [{"filters": [ref] * 12}]},
        )
    started = time.monotonic()
    assert "cost limit" in h.rejected(one(f"segment.{ids[0]}", "memberOfSegment"))
    assert time.monotonic() - started < 60  # a guard against runaway work, not a benchmark


def test_hostile__too_many_filters_is_22023(h):
    filters = [{"field": "data.k", "operator": "equals", "value": "x" * 100}] * 5000
    assert "cost limit" in h.rejected({"logic": "OR", "groups": [{"filters": filters}]})


# --- tenants -----------------------------------------------------------------------------------


def test_hostile__cross_project_segments_are_refused_everywhere(h):
    p = h.plunk
    other = p.project("other")
    theirs = p.contact(other)
    foreign = p.segment(other, type="STATIC", members=[theirs])
    foreign_dyn = p.segment(other, condition=one("email", "contains", value="@"))
    h.contact("mine")
    for sid in (foreign, foreign_dyn):
        ref = {"field": f"segment.{sid}", "operator": "memberOfSegment"}
        neg = {"field": f"segment.{sid}", "operator": "notMemberOfSegment"}
        assert "another project" in h.rejected(one(ref["field"], ref["operator"]))
        assert "another project" in h.rejected(one(neg["field"], neg["operator"]))
        deep = {
            "logic": "OR",
            "groups": [
                {"filters": [{"field": "email", "operator": "contains", "value": "@"}]},
                {"filters": [], "conditions": {"logic": "AND", "groups": [{"filters": [ref]}]}},
            ],
        }
        assert "another project" in h.rejected(deep)
        # Hidden inside one of our own segments' conditions.
        mine = p.segment(h.project, condition={"logic": "AND", "groups": [{"filters": [neg]}]})
        assert "another project" in h.rejected(one(f"segment.{mine}", "memberOfSegment"))
        # As the campaign's own segment.
        cid = p.campaign(h.project, audience="SEGMENT", segment_id=sid)
        with pytest.raises(psycopg.Error) as exc:
            p.start(cid)
        assert exc.value.sqlstate == "22023"


def test_hostile__foreign_memberships_events_and_emails_never_count(h):
    """Rows that point at our contact but are filed under another project are invisible."""
    p = h.plunk
    other = p.project("other")
    mine = h.contact("mine")
    p.event(other, mine, "signup")
    p.activity_email(other, mine, {"openedAt": None, "sentAt": None, "clickedAt": None})
    p.conn.execute(
        'UPDATE public.emails SET "openedAt" = timezone(\'UTC\', now()) WHERE "projectId" = %s',
        (other,),
    )
    assert h.of(one("event.signup", "triggered")) == set()
    assert h.of(one("email.opened", "triggered")) == set()
    assert h.of(one("email.opened", "notTriggered")) == {"mine"}


def test_hostile__compiler_output_quotes_every_input(h):
    """The predicate text carries each input only inside a quoted literal."""
    text = "'; DROP TABLE public.canary; --"
    pred = h.plunk.conn.execute(
        "SELECT plunk_sql.compile_condition(%s, %s)",
        (Jsonb(one("data.k", "contains", value=text)), h.project),
    ).fetchone()[0]
    assert "'%''; DROP TABLE public.canary; --%'" in pred
    assert h.plunk.conn.execute(
        f"SELECT count(*) FROM public.contacts AS c WHERE {pred}"
    ).fetchone() == (0,)
