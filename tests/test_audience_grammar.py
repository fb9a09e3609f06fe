"""The audience grammar, field x operator, against hand-written expectations.

Each example builds a few contacts, compiles one condition through the real snapshot
(plunk_sql.start_campaign) and plunk_sql.preview_audience, and asserts the exact set of contacts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
import pytest

from tests.factories import Plunk

MISSING = object()


def f(field: str, operator: str, value=MISSING, unit: str | None = None, **extra) -> dict:
    out: dict = {"field": field, "operator": operator}
    if value is not MISSING:
        out["value"] = value
    if unit is not None:
        out["unit"] = unit
    out.update(extra)
    return out


def cond(*filters: dict, logic: str = "AND") -> dict:
    return {"logic": logic, "groups": [{"filters": list(filters)}]}


class Audience:
    """A project with named contacts; `of(condition)` is the snapshot of a FILTERED campaign."""

    def __init__(self, plunk: Plunk) -> None:
        self.plunk = plunk
        self.project = plunk.project()
        self.now: datetime = plunk.conn.execute("SELECT plunk_sql.utc_now()").fetchone()[0]

    def contact(self, name: str, **kwargs) -> str:
        kwargs.setdefault("email", f"{name}@example.com")
        return self.plunk.contact_row(self.project, contact_id=name, **kwargs)

    def of(self, condition: dict, *, type: str = "MARKETING") -> set[str]:
        cid = self.plunk.campaign(self.project, audience="FILTERED", condition=condition, type=type)
        preview = self.plunk.preview(cid)
        self.plunk.start(cid)
        got = self.plunk.recipients(cid)
        assert preview == len(got)
        return got

    def error(self, condition: dict) -> str:
        cid = self.plunk.campaign(self.project, audience="FILTERED", condition=condition)
        with pytest.raises(psycopg.Error) as exc:
            self.plunk.preview(cid)
        assert exc.value.sqlstate == "22023", exc.value
        with pytest.raises(psycopg.Error) as exc2:
            self.plunk.start(cid)
        assert exc2.value.sqlstate == "22023"
        assert self.plunk.recipients(cid) == set()
        return exc.value.diag.message_primary or ""


@pytest.fixture
def aud(plunk: Plunk) -> Audience:
    return Audience(plunk)


# --- email -------------------------------------------------------------------------------------


def test_email__equals_is_case_insensitive_including_non_ascii(aud):
    aud.contact("ada", email="Ada@Example.com")
    aud.contact("eva", email="ÉVA@example.com")
    aud.contact("bob", email="bob@example.com")
    assert aud.of(cond(f("email", "equals", "ada@EXAMPLE.com"))) == {"ada"}
    assert aud.of(cond(f("email", "notEquals", "ADA@example.com"))) == {"eva", "bob"}
    # ILIKE folds with the database's collation, as in Plunk: the test clusters use the C
    # locale, which folds ASCII only.
    assert aud.of(cond(f("email", "equals", "ÉVA@EXAMPLE.com"))) == {"eva"}
    # % and _ are ILIKE wildcards in Plunk's email filters.
    assert aud.of(cond(f("email", "equals", "%"))) == {"ada", "eva", "bob"}
    assert aud.of(cond(f("email", "equals", "b_b@example.com"))) == {"bob"}
    assert aud.of(cond(f("email", "contains", "_"))) == {"ada", "eva", "bob"}
    # String(value): a number or an array is its JavaScript text.
    assert aud.of(cond(f("email", "contains", ["ADA"]))) == {"ada"}


def test_email__contains_and_not_contains(aud):
    aud.contact("ada", email="ada@Acme.io")
    aud.contact("bob", email="bob@example.com")
    assert aud.of(cond(f("email", "contains", "ACME"))) == {"ada"}
    assert aud.of(cond(f("email", "notContains", "acme"))) == {"bob"}
    assert aud.of(cond(f("email", "contains", ""))) == {"ada", "bob"}


@pytest.mark.parametrize(
    "bad",
    [
        f("email", "greaterThan", "a"),
        f("email", "equals"),
        f("email", "equals", "x\\"),
        f("email", "exists"),
    ],
)
def test_email__bad_operator_or_value__22023(aud, bad):
    assert "invalid audience filter" in aud.error(cond(bad))


# --- subscribed --------------------------------------------------------------------------------


def test_subscribed__equals_and_not_equals_on_transactional(aud):
    aud.contact("in", subscribed=True)
    aud.contact("out", subscribed=False)
    assert aud.of(cond(f("subscribed", "equals", False)), type="TRANSACTIONAL") == {"out"}
    assert aud.of(cond(f("subscribed", "notEquals", False)), type="TRANSACTIONAL") == {"in"}
    # A marketing campaign never reaches the unsubscribed, whatever the condition says.
    assert aud.of(cond(f("subscribed", "equals", False))) == set()


@pytest.mark.parametrize("value", ["true", 1, None, False])
def test_subscribed__anything_but_true_reads_as_false(aud, value):
    """Plunk: equals -> subscribed = (value === true); notEquals -> subscribed = (value !== true)."""
    aud.contact("in", subscribed=True)
    aud.contact("out", subscribed=False)
    assert aud.of(cond(f("subscribed", "equals", value)), type="TRANSACTIONAL") == {"out"}
    assert aud.of(cond(f("subscribed", "notEquals", value)), type="TRANSACTIONAL") == {"in"}


def test_subscribed__no_value__22023(aud):
    aud.error(cond(f("subscribed", "equals")))


# --- createdAt / updatedAt ---------------------------------------------------------------------


@pytest.mark.parametrize("field", ["createdAt", "updatedAt"])
def test_time_column__day_equality_and_order(aud, field):
    col = "created_at" if field == "createdAt" else "updated_at"
    aud.contact("early", **{col: datetime(2024, 3, 9, 23, 59, 59, 999000)})
    aud.contact("start", **{col: datetime(2024, 3, 10, 0, 0, 0)})
    aud.contact("late", **{col: datetime(2024, 3, 10, 23, 59, 59, 999000)})
    aud.contact("next", **{col: datetime(2024, 3, 11, 0, 0, 0)})
    assert aud.of(cond(f(field, "equals", "2024-03-10"))) == {"start", "late"}
    assert aud.of(cond(f(field, "notEquals", "2024-03-10"))) == {"early", "next"}
    # A date-like timestamp value: the day written, time and offset ignored (Plunk).
    assert aud.of(cond(f(field, "equals", "2024-03-10T02:00:00+05:00"))) == {"start", "late"}
    # Any other value: the exact instant new Date(value), e.g. epoch milliseconds.
    assert aud.of(cond(f(field, "equals", 1710028800000))) == {"start"}
    assert aud.of(cond(f(field, "greaterThan", 1710028800000))) == {"late", "next"}
    # Order comparisons compare with the instant (a date is its UTC midnight).
    assert aud.of(cond(f(field, "greaterThan", "2024-03-10"))) == {"late", "next"}
    assert aud.of(cond(f(field, "greaterThanOrEqual", "2024-03-10"))) == {"start", "late", "next"}
    assert aud.of(cond(f(field, "lessThan", "2024-03-10"))) == {"early"}
    assert aud.of(cond(f(field, "lessThanOrEqual", "2024-03-10T00:00:00Z"))) == {"early", "start"}


def test_time_column__within_and_older_than(aud):
    aud.contact("new", created_at=aud.now - timedelta(hours=1))
    aud.contact("old", created_at=aud.now - timedelta(days=3))
    assert aud.of(cond(f("createdAt", "within", 2, "hours"))) == {"new"}
    assert aud.of(cond(f("createdAt", "olderThan", 2, "days"))) == {"old"}
    assert aud.of(cond(f("createdAt", "within", 180, "minutes"))) == {"new"}


@pytest.mark.parametrize(
    "bad",
    [
        f("createdAt", "equals", "yesterday"),
        f("createdAt", "equals", "2024-02-32"),
        f("createdAt", "greaterThan", "0000-01-01"),
        f("createdAt", "within", 2),
        f("createdAt", "within", 2, "weeks"),
        f("createdAt", "within", "two", "days"),
        f("createdAt", "olderThan", 1e12, "days"),
        f("createdAt", "greaterThan", "April 1 2025 25:00"),  # "April 1" alone is 2001-04-01
        f("createdAt", "contains", "2024"),
        f("createdAt", "exists"),
    ],
)
def test_time_column__bad_value_or_unit__22023(aud, bad):
    assert "invalid audience filter" in aud.error(cond(bad))


# --- data.<key> --------------------------------------------------------------------------------


def test_data__equals_is_json_typed(aud):
    aud.contact("pro", data={"plan": "pro", "n": 1})
    aud.contact("Pro", data={"plan": "Pro", "n": 1.0})
    aud.contact("true", data={"plan": True, "n": True})
    aud.contact("null", data={"plan": None})
    aud.contact("none", data=None)
    assert aud.of(cond(f("data.plan", "equals", "pro"))) == {"pro"}
    assert aud.of(cond(f("data.n", "equals", 1))) == {"pro", "Pro"}
    assert aud.of(cond(f("data.n", "equals", True))) == {"true"}
    assert aud.of(cond(f("data.plan", "equals", None))) == {"null"}
    # Contacts without the key match neither equals nor notEquals (Plunk).
    assert aud.of(cond(f("data.plan", "notEquals", "pro"))) == {"Pro", "true", "null"}


def test_data__equals_arrays_and_objects_exactly(aud):
    aud.contact("ab", data={"tags": ["a", "b"]})
    aud.contact("abc", data={"tags": ["a", "b", "c"]})
    aud.contact("obj", data={"tags": {"a": 1, "b": 2}})
    assert aud.of(cond(f("data.tags", "equals", ["a", "b"]))) == {"ab"}
    assert aud.of(cond(f("data.tags", "equals", {"a": 1}))) == set()
    assert aud.of(cond(f("data.tags", "equals", {"b": 2, "a": 1}))) == {"obj"}


def test_data__date_equals_compares_the_whole_day(aud):
    aud.contact("date", data={"d": "2024-05-01"})
    aud.contact("ts", data={"d": "2024-05-01T23:30:00Z"})
    aud.contact("offset", data={"d": "2024-05-02T01:00:00+02:00"})
    aud.contact("other", data={"d": "2024-05-02"})
    aud.contact("text", data={"d": "May 1st"})
    # Compared as strings with "2024-05-01T00:00:00.000Z" <= v < "2024-05-02T00:00:00.000Z":
    # a stored bare date sorts before its own day's start, the next bare date inside (Plunk).
    assert aud.of(cond(f("data.d", "equals", "2024-05-01"))) == {"ts", "other"}
    assert aud.of(cond(f("data.d", "notEquals", "2024-05-01"))) == {"date", "offset", "text"}


def test_data__contains_is_case_sensitive_on_strings_only(aud):
    aud.contact("s", data={"city": "Amsterdam"})
    aud.contact("n", data={"city": 1234})
    aud.contact("none", data={})
    assert aud.of(cond(f("data.city", "contains", "dam"))) == {"s"}
    assert aud.of(cond(f("data.city", "contains", "AMS"))) == set()
    assert aud.of(cond(f("data.city", "contains", "23"))) == set()
    # String(value), and % is a wildcard (Plunk); contacts without the key match neither.
    assert aud.of(cond(f("data.city", "contains", "A%m"))) == {"s"}
    assert aud.of(cond(f("data.city", "notContains", "dam"))) == {"n"}


def test_data__order_compares_numbers_as_numbers(aud):
    aud.contact("nine", data={"age": 9})
    aud.contact("ten", data={"age": 10.0})
    aud.contact("big", data={"age": 12345678901234567890123})
    aud.contact("str", data={"age": "100"})
    aud.contact("bool", data={"age": True})
    assert aud.of(cond(f("data.age", "greaterThan", 9.5))) == {"ten", "big"}
    assert aud.of(cond(f("data.age", "greaterThanOrEqual", 10))) == {"ten", "big"}
    assert aud.of(cond(f("data.age", "lessThan", 10))) == {"nine"}
    assert aud.of(cond(f("data.age", "lessThanOrEqual", 10))) == {"nine", "ten"}
    # A string bound compares with strings, as strings (Plunk: {"age": "100"} > "09").
    assert aud.of(cond(f("data.age", "greaterThan", "09"))) == {"str"}
    aud.error(cond(f("data.age", "greaterThan", True)))
    aud.error(cond(f("data.age", "greaterThan", None)))


def test_data__exists_means_present_and_not_null(aud):
    aud.contact("set", data={"k": 0})
    aud.contact("false", data={"k": False})
    aud.contact("null", data={"k": None})
    aud.contact("missing", data={"other": 1})
    aud.contact("nodata", data=None)
    assert aud.of(cond(f("data.k", "exists"))) == {"set", "false"}
    assert aud.of(cond(f("data.k", "notExists"))) == {"null", "missing", "nodata"}


def test_data__within_and_older_than_on_stored_dates(aud):
    recent = (aud.now - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = (aud.now - timedelta(days=40)).strftime("%Y-%m-%d")
    aud.contact("recent", data={"at": recent})
    aud.contact("old", data={"at": old})
    aud.contact("junk", data={"at": "soon"})
    aud.contact("number", data={"at": 1700000000})
    # Any string compares with the ISO cutoff, as a string (Plunk): "soon" sorts after it.
    assert aud.of(cond(f("data.at", "within", 1, "days"))) == {"recent", "junk"}
    assert aud.of(cond(f("data.at", "olderThan", 30, "days"))) == {"old"}


@pytest.mark.parametrize(
    "bad",
    [
        f("data.k", "equals"),
        f("data.k", "within", 3),
        f("data.k", "within", "x", "days"),
        f("data.k", "triggered"),
        f("data.k", "memberOfSegment"),
    ],
)
def test_data__bad_filter__22023(aud, bad):
    aud.error(cond(bad))


# --- event.<name> ------------------------------------------------------------------------------


def test_event__five_operators(aud):
    p = aud.plunk
    recent = aud.contact("recent")
    old = aud.contact("old")
    both = aud.contact("both")
    aud.contact("never")
    p.event(aud.project, recent, "user.signup", aud.now - timedelta(minutes=30))
    p.event(aud.project, old, "user.signup", aud.now - timedelta(days=10))
    p.event(aud.project, both, "user.signup", aud.now - timedelta(days=10))
    p.event(aud.project, both, "user.signup", aud.now - timedelta(hours=2))
    ev = "event.user.signup"
    assert aud.of(cond(f(ev, "triggered"))) == {"recent", "old", "both"}
    assert aud.of(cond(f(ev, "notTriggered"))) == {"never"}
    assert aud.of(cond(f(ev, "triggeredWithin", 3, "hours"))) == {"recent", "both"}
    assert aud.of(cond(f(ev, "notTriggeredWithin", 3, "hours"))) == {"old", "never"}
    assert aud.of(cond(f(ev, "triggeredOlderThan", 1, "days"))) == {"old"}
    assert aud.of(cond(f(ev, "triggeredWithin", 60, "minutes"))) == {"recent"}


def test_event__only_the_contacts_events_of_the_project_count(aud):
    p = aud.plunk
    other = p.project("other")
    ada = aud.contact("ada")
    aud.contact("bob")
    p.event(other, ada, "purchase")  # the contact's, but filed under another project
    p.event(aud.project, None, "purchase")  # anonymous event
    p.event(aud.project, ada, "purchase2")
    assert aud.of(cond(f("event.purchase", "triggered"))) == set()
    assert aud.of(cond(f("event.purchase", "notTriggered"))) == {"ada", "bob"}


@pytest.mark.parametrize(
    "bad",
    [
        f("event.x", "equals", "x"),
        f("event.x", "triggeredWithin"),
        f("event.x", "triggeredWithin", 1),
        f("event.x", "notTriggeredWithin", 1, "seconds"),
        f("event.x", "triggeredOlderThan", "one", "days"),
    ],
)
def test_event__bad_filter__22023(aud, bad):
    aud.error(cond(bad))


# --- email.<activity> --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activity", "column"),
    [
        ("opened", "openedAt"),
        ("open", "openedAt"),
        ("clicked", "clickedAt"),
        ("click", "clickedAt"),
        ("bounced", "bouncedAt"),
        ("bounce", "bouncedAt"),
        ("complained", "complainedAt"),
        ("complaint", "complainedAt"),
        ("sent", "sentAt"),
        ("delivered", "deliveredAt"),
        ("delivery", "deliveredAt"),
    ],
)
def test_email_activity__operators_per_activity(aud, activity, column):
    p = aud.plunk
    recent, old = aud.contact("recent"), aud.contact("old")
    aud.contact("never")
    other_col = "sentAt" if column != "sentAt" else "openedAt"
    p.activity_email(aud.project, recent, {column: aud.now - timedelta(minutes=5)})
    p.activity_email(aud.project, old, {column: aud.now - timedelta(days=5)})
    p.activity_email(aud.project, "never", {other_col: aud.now})
    fld = f"email.{activity}"
    assert aud.of(cond(f(fld, "triggered"))) == {"recent", "old"}
    assert aud.of(cond(f(fld, "notTriggered"))) == {"never"}
    assert aud.of(cond(f(fld, "triggeredWithin", 1, "days"))) == {"recent"}
    assert aud.of(cond(f(fld, "notTriggeredWithin", 1, "days"))) == {"old", "never"}
    assert aud.of(cond(f(fld, "triggeredOlderThan", 1, "days"))) == {"old"}


def test_email_activity__other_projects_emails_do_not_count(aud):
    p = aud.plunk
    other = p.project("other")
    ada = aud.contact("ada")
    p.activity_email(other, ada, {"openedAt": aud.now})
    assert aud.of(cond(f("email.opened", "triggered"))) == set()


@pytest.mark.parametrize("activity", ["", "read", "openedAt", "Opened", "opened;"])
def test_email_activity__unknown_activity__22023(aud, activity):
    msg = aud.error(cond(f(f"email.{activity}", "triggered")))
    assert "unknown email activity" in msg


# --- segment.<id> ------------------------------------------------------------------------------


def test_segment__static_uses_active_memberships(aud):
    p = aud.plunk
    a, b = aud.contact("a"), aud.contact("b")
    aud.contact("c")
    sid = p.segment(aud.project, type="STATIC", members=[a])
    p.membership(b, sid, exited_at=aud.now - timedelta(days=1))
    assert aud.of(cond(f(f"segment.{sid}", "memberOfSegment"))) == {"a"}
    assert aud.of(cond(f(f"segment.{sid}", "notMemberOfSegment"))) == {"b", "c"}


def test_segment__tracked_dynamic_uses_memberships_not_its_condition(aud):
    p = aud.plunk
    a = aud.contact("a", data={"plan": "free"})
    aud.contact("b", data={"plan": "pro"})
    sid = p.segment(
        aud.project,
        condition=cond(f("data.plan", "equals", "pro")),
        track_membership=True,
        members=[a],
    )
    assert aud.of(cond(f(f"segment.{sid}", "memberOfSegment"))) == {"a"}


def test_segment__dynamic_is_inlined_and_can_nest(aud):
    p = aud.plunk
    aud.contact("a", data={"plan": "pro", "age": 30})
    aud.contact("b", data={"plan": "pro", "age": 10})
    aud.contact("c", data={"plan": "free", "age": 30})
    pro = p.segment(aud.project, condition=cond(f("data.plan", "equals", "pro")))
    adult_pro = p.segment(
        aud.project,
        condition=cond(
            f(f"segment.{pro}", "memberOfSegment"), f("data.age", "greaterThanOrEqual", 18)
        ),
    )
    assert aud.of(cond(f(f"segment.{pro}", "memberOfSegment"))) == {"a", "b"}
    assert aud.of(cond(f(f"segment.{adult_pro}", "memberOfSegment"))) == {"a"}
    assert aud.of(cond(f(f"segment.{adult_pro}", "notMemberOfSegment"))) == {"b", "c"}


def test_segment__cycles_are_rejected(aud):
    p = aud.plunk
    aud.contact("a")
    s1 = p.segment(aud.project, condition=cond(f("email", "contains", "a")))
    s2 = p.segment(aud.project, condition=cond(f(f"segment.{s1}", "memberOfSegment")))
    p.conn.execute(
        "UPDATE public.segments SET condition = %s::jsonb WHERE id = %s",
        (
            psycopg.types.json.Jsonb(cond(f(f"segment.{s2}", "notMemberOfSegment"))),
            s1,
        ),
    )
    assert "cycle" in aud.error(cond(f(f"segment.{s1}", "memberOfSegment")))
    selfref = p.segment(aud.project, segment_id="self-ref", condition=None)
    p.conn.execute(
        "UPDATE public.segments SET condition = %s::jsonb WHERE id = %s",
        (psycopg.types.json.Jsonb(cond(f("segment.self-ref", "memberOfSegment"))), selfref),
    )
    assert "cycle" in aud.error(cond(f("segment.self-ref", "memberOfSegment")))
    # A campaign targeting the cyclic segment is refused the same way.
    cid = p.campaign(aud.project, audience="SEGMENT", segment_id=selfref)
    with pytest.raises(psycopg.Error) as exc:
        p.start(cid)
    assert exc.value.sqlstate == "22023"


def test_segment__same_segment_twice_is_not_a_cycle(aud):
    p = aud.plunk
    aud.contact("a", data={"x": 1})
    aud.contact("b", data={"x": 2})
    s = p.segment(aud.project, condition=cond(f("data.x", "equals", 1)))
    twice = cond(
        f(f"segment.{s}", "memberOfSegment"),
        f(f"segment.{s}", "memberOfSegment"),
    )
    assert aud.of(twice) == {"a"}


def test_segment__other_project_missing_or_conditionless__22023(aud):
    p = aud.plunk
    other = p.project("other")
    a = aud.contact("a")
    foreign_static = p.segment(other, type="STATIC", members=[a])
    foreign_dynamic = p.segment(other, condition=cond(f("email", "contains", "@")))
    empty = p.segment(aud.project, condition=None)
    for sid, words in [
        (foreign_static, "another project"),
        (foreign_dynamic, "another project"),
        ("no-such-segment", "does not exist"),
        (empty, "has no condition"),
    ]:
        for op in ("memberOfSegment", "notMemberOfSegment"):
            assert words in aud.error(cond(f(f"segment.{sid}", op)))
    aud.error(cond(f("segment.", "memberOfSegment")))
    aud.error(cond(f(f"segment.{empty}", "equals", "x")))


# --- groups and nesting ------------------------------------------------------------------------


def test_groups__and_or_and_nested_conditions(aud):
    aud.contact("a", data={"x": 1, "y": 1})
    aud.contact("b", data={"x": 1, "y": 2})
    aud.contact("c", data={"x": 2, "y": 2})
    x1, y2 = f("data.x", "equals", 1), f("data.y", "equals", 2)
    assert aud.of({"logic": "AND", "groups": [{"filters": [x1]}, {"filters": [y2]}]}) == {"b"}
    assert aud.of({"logic": "OR", "groups": [{"filters": [x1]}, {"filters": [y2]}]}) == {
        "a",
        "b",
        "c",
    }
    nested = {
        "logic": "AND",
        "groups": [{"filters": [x1], "conditions": {"logic": "OR", "groups": [{"filters": [y2]}]}}],
    }
    assert aud.of(nested) == {"b"}
    only_nested = {"logic": "OR", "groups": [{"conditions": cond(y2), "filters": []}]}
    assert aud.of(only_nested) == {"b", "c"}
    assert aud.of({"logic": "AND", "groups": [{"filters": [x1], "conditions": None}]}) == {"a", "b"}


def nest(levels: int) -> dict:
    c = cond(f("data.x", "equals", 1))
    for _ in range(levels - 1):
        c = {"logic": "AND", "groups": [{"filters": [], "conditions": c}]}
    return c


def test_groups__nesting_up_to_max_depth(aud, conn):
    aud.contact("a", data={"x": 1})
    depth = conn.execute("SELECT plunk_sql.condition_max_depth()").fetchone()[0]
    assert aud.of(nest(depth)) == {"a"}
    assert "nests deeper" in aud.error(nest(depth + 1))


@pytest.mark.parametrize(
    "bad",
    [
        {"logic": "AND", "groups": []},
        {"logic": "AND"},
        {"logic": "and", "groups": [{"filters": [f("data.x", "exists")]}]},
        {"logic": "XOR", "groups": [{"filters": [f("data.x", "exists")]}]},
        {"logic": "AND", "groups": [{"filters": []}]},
        {"logic": "AND", "groups": [{}]},
        {"logic": "AND", "groups": [{"filters": None}]},
        {"logic": "AND", "groups": [{"filters": {"field": "email"}}]},
        {"logic": "AND", "groups": [[]]},
        {"logic": "AND", "groups": {"filters": []}},
        {"logic": "AND", "groups": [{"filters": ["email"]}]},
        {"logic": "AND", "groups": [{"filters": [{"field": "email"}]}]},
        {"logic": "AND", "groups": [{"filters": [{"operator": "exists"}]}]},
        {"logic": "AND", "groups": [{"filters": [f("nope", "exists")]}]},
        {"logic": "AND", "groups": [{"filters": [f("data.x", "exists")], "conditions": 5}]},
        {"logic": "AND", "groups": [{"filters": [], "conditions": {"logic": "OR", "groups": []}}]},
        [],
    ],
)
def test_groups__malformed__22023_names_the_filter(aud, bad):
    assert aud.error(bad).startswith("invalid audience filter")


def test_campaign__filtered_without_condition__22023(aud):
    cid = aud.plunk.campaign(aud.project, audience="FILTERED", condition=None)
    with pytest.raises(psycopg.Error) as exc:
        aud.plunk.preview(cid)
    assert exc.value.sqlstate == "22023"


def test_campaign__segment_of_another_project__22023(aud):
    p = aud.plunk
    other = p.project("other")
    b = p.contact(other)
    seg = p.segment(other, type="STATIC", members=[b])
    cid = p.campaign(aud.project, audience="SEGMENT", segment_id=seg)
    with pytest.raises(psycopg.Error) as exc:
        p.start(cid)
    assert exc.value.sqlstate == "22023"
    assert "another project" in exc.value.diag.message_primary
    assert p.recipients(cid) == set()
