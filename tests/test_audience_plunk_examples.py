"""The examples of issue 12: conditions where the toolkit used to differ from Plunk v2.

Each asserts the contacts Plunk's where-builder selects (checked by running it through Prisma
on PostgreSQL), or the documented 22023 refusal.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from tests.factories import Plunk
from tests.test_audience_grammar import Audience, cond, f


@pytest.fixture
def aud(plunk: Plunk) -> Audience:
    return Audience(plunk)


def test_examples__not_equals_skips_contacts_without_the_key(aud):
    aud.contact("pro", data={"plan": "pro"})
    aud.contact("free", data={"plan": "free"})
    aud.contact("none", data={})
    aud.contact("nodata", data=None)
    assert aud.of(cond(f("data.plan", "notEquals", "pro"))) == {"free"}


def test_examples__dotted_data_field_is_a_nested_path(aud):
    aud.contact("nested", data={"a": {"b": 1}})
    aud.contact("literal", data={"a.b": 1})
    assert aud.of(cond(f("data.a.b", "equals", 1))) == {"nested"}


def test_examples__date_string_bound_compares_as_string(aud):
    aud.contact("later", data={"signup": "2025-05-01T10:00:00.000Z"})
    aud.contact("earlier", data={"signup": "2025-01-01"})
    assert aud.of(cond(f("data.signup", "greaterThan", "2025-04-10"))) == {"later"}


def test_examples__subscribed_string_true_is_false(aud):
    aud.contact("in", subscribed=True)
    aud.contact("out", subscribed=False)
    assert aud.of(cond(f("subscribed", "equals", "true")), type="TRANSACTIONAL") == {"out"}


def test_examples__created_at_epoch_milliseconds(aud):
    aud.contact("new", created_at=aud.now - timedelta(days=1))
    aud.contact("old", created_at=aud.now.replace(year=2019))
    assert aud.of(cond(f("createdAt", "greaterThan", 1600000000000))) == {"new"}


def test_examples__triggered_within_50000_days(aud):
    p = aud.plunk
    opened = aud.contact("opened")
    aud.contact("never")
    p.activity_email(aud.project, opened, {"openedAt": aud.now - timedelta(days=4000)})
    assert aud.of(cond(f("email.opened", "triggeredWithin", 50000, "days"))) == {"opened"}


def test_examples__not_member_of_untracked_segment_is_three_valued(aud):
    """Plunk negates the inlined condition with SQL NOT: a contact lacking the key is in
    neither the segment nor its complement."""
    p = aud.plunk
    aud.contact("pro", data={"plan": "pro"})
    aud.contact("free", data={"plan": "free"})
    aud.contact("none", data={})
    sid = p.segment(aud.project, condition=cond(f("data.plan", "equals", "pro")))
    assert aud.of(cond(f(f"segment.{sid}", "memberOfSegment"))) == {"pro"}
    assert aud.of(cond(f(f"segment.{sid}", "notMemberOfSegment"))) == {"free"}
    # Any other operator on a segment field builds the notMemberOfSegment form.
    assert aud.of(cond(f(f"segment.{sid}", "exists"))) == {"free"}


def test_examples__empty_group_with_null_conditions_matches_everyone(aud):
    aud.contact("a")
    aud.contact("b")
    assert aud.of({"logic": "AND", "groups": [{"filters": [], "conditions": None}]}) == {"a", "b"}


def test_examples__time_amounts_are_read_as_javascript_reads_them(aud):
    aud.contact("hour", created_at=aud.now - timedelta(hours=1))
    for amount in ("1", [1], True, " 1 ", "0x1"):
        assert aud.of(cond(f("createdAt", "within", amount, "days"))) == {"hour"}, amount
    assert aud.of(cond(f("createdAt", "within", None, "days"))) == set()  # null is 0
    assert aud.of(cond(f("createdAt", "olderThan", -1, "days"))) == {"hour"}  # a future cutoff


@pytest.mark.parametrize(("value", "hit"), [("7." + "0" * 250, True), (1e-300, False)])
def test_examples__odd_numbers_are_read_as_javascript_reads_them(aud, value, hit):
    """Point 6: never 22007; the amount is a JavaScript number (1e-300 days is now)."""
    aud.contact("a", created_at=aud.now - timedelta(days=1))
    assert aud.of(cond(f("createdAt", "within", value, "days"))) == ({"a"} if hit else set())


@pytest.mark.parametrize("value", [1e16, "x", [1, 2]])
def test_examples__unusable_amounts_are_22023_naming_the_filter(aud, value):
    msg = aud.error(cond(f("createdAt", "within", value, "days")))
    assert "createdAt" in msg


def test_examples__over_the_cost_limit_is_22023_naming_the_limit(aud, conn: psycopg.Connection):
    limit = conn.execute("SELECT plunk_sql.condition_max_activity_filters()").fetchone()[0]
    many = [f("email.opened", "triggeredWithin", 1, "days")] * (limit + 1)
    assert "condition_max_activity_filters" in aud.error(
        {"logic": "OR", "groups": [{"filters": many}]}
    )
    ok = [f("email.opened", "triggeredWithin", 1, "days")] * limit
    assert aud.of({"logic": "OR", "groups": [{"filters": ok}]}) == set()


@pytest.mark.parametrize(
    ("amount", "count"), [("7." + "0" * 250, 1), ("1e-300", 0), ("7" + "0" * 20 + "e-20", 1)]
)
def test_examples__odd_json_numbers_never_22007(aud, amount, count):
    """The amount as raw JSON number text (beyond what a float prints)."""
    aud.contact("a", created_at=aud.now - timedelta(hours=1))
    p = aud.plunk
    cid = p.campaign(aud.project, audience="FILTERED", condition={"x": 1})
    raw = (
        '{"logic": "AND", "groups": [{"filters": [{"field": "createdAt", "operator": "within",'
        f' "value": {amount}, "unit": "days"}}]}}]}}'
    )
    p.conn.execute(
        'UPDATE public.campaigns SET "audienceCondition" = %s::jsonb WHERE id = %s', (raw, cid)
    )
    assert p.preview(cid) == count
