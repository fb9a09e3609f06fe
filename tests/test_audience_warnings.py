"""plunk_sql.audience_warnings: surprising-but-Plunk filters are explained, never changed."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.factories import Plunk
from tests.helpers import raises_sqlstate


def warnings(conn: psycopg.Connection, condition: dict, project: str) -> list[tuple[dict, str]]:
    return conn.execute(
        "SELECT filter, warning FROM plunk_sql.audience_warnings(%s, %s)",
        (Jsonb(condition), project),
    ).fetchall()


def one(**flt: object) -> dict:
    return {"logic": "AND", "groups": [{"filters": [flt]}]}


@pytest.mark.parametrize(
    ("flt", "needle"),
    [
        ({"field": "email", "operator": "equals", "value": "%"}, "wildcards"),
        ({"field": "email", "operator": "contains", "value": 5}, "not a string"),
        ({"field": "subscribed", "operator": "equals", "value": "true"}, "reads as false"),
        ({"field": "data.plan", "operator": "notEquals", "value": "pro"}, "match neither"),
        ({"field": "data.d", "operator": "equals", "value": "2025-04-10"}, "compared as a string"),
        ({"field": "data.n", "operator": "greaterThan", "value": "6"}, "strings as strings"),
        ({"field": "data.at", "operator": "within", "value": 7, "unit": "days"}, "as text"),
        ({"field": "data.a.b", "operator": "exists"}, "nested path"),
        (
            {"field": "createdAt", "operator": "within", "value": "7", "unit": "days"},
            "reads it as 7",
        ),
        ({"field": "createdAt", "operator": "equals", "value": 1600000000000}, "exact millisecond"),
        (
            {"field": "createdAt", "operator": "equals", "value": "2025-02-30"},
            "rolls it over to 2025-03-02",
        ),
    ],
)
def test_warnings__surprising_filters_are_named(conn, plunk: Plunk, flt, needle):
    project = plunk.project()
    got = warnings(conn, one(**flt), project)
    assert any(f == flt and needle in w for f, w in got), got


def test_warnings__plain_filters_have_none(conn, plunk: Plunk):
    project = plunk.project()
    cond = {
        "logic": "OR",
        "groups": [
            {"filters": [{"field": "email", "operator": "contains", "value": "acme"}]},
            {"filters": [{"field": "data.plan", "operator": "equals", "value": "pro"}]},
            {"filters": [{"field": "subscribed", "operator": "equals", "value": True}]},
        ],
    }
    assert warnings(conn, cond, project) == []


def test_warnings__empty_group_and_segment_operator(conn, plunk: Plunk):
    project = plunk.project()
    sid = plunk.segment(project, type="STATIC", members=[])
    cond = {
        "logic": "AND",
        "groups": [
            {"filters": [], "conditions": None},
            {"filters": [{"field": f"segment.{sid}", "operator": "exists"}]},
        ],
    }
    got = [w for _, w in warnings(conn, cond, project)]
    assert any("every contact" in w for w in got)
    assert any("notMemberOfSegment" in w for w in got)


def test_warnings__invalid_condition_is_22023(conn, plunk: Plunk):
    project = plunk.project()
    with raises_sqlstate("22023"):
        warnings(conn, one(field="nope", operator="equals", value=1), project)
