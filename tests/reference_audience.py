"""A plain-Python evaluator of Plunk v2's audience conditions, written from the facts page
(/work/shared/plunk-facts.md, "Condition semantics, as Plunk v2 evaluates them" and "Condition
details that are easy to get wrong"), not from the SQL compiler.

Plunk builds a Prisma `where` from a condition; Prisma turns it into SQL. This module mirrors
the meaning of that SQL in Python: every predicate is three-valued (True, False or None for
SQL NULL), because a `data.` test on a contact lacking the path is NULL and stays NULL under NOT.
A contact is in the audience when the predicate is True. JavaScript's coercions (String(x),
x * 24, new Date(x), toISOString) are reimplemented with Python floats (IEEE doubles, as in
JavaScript). `InvalidCondition` is raised exactly when the toolkit must raise SQLSTATE 22023:
Plunk's validator refuses the condition, its where-builder (or Prisma, or PostgreSQL) fails on
it, the condition is over the toolkit's cost limits, or a segment belongs to another project.
Date strings are parsed as V8 parses them (tests/js_date.py, checked against Node).

Strings compare by code point (the test clusters use the C locale); case folding for `email`
is the server's (ILIKE lowers with the database collation): tests set FOLD from the server.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.js_date import parse as js_date_parse

MAX_DEPTH = 8
MAX_FILTERS = 200
MAX_PROBES = 100
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
OPERATORS = {
    "equals",
    "notEquals",
    "contains",
    "notContains",
    "greaterThan",
    "lessThan",
    "greaterThanOrEqual",
    "lessThanOrEqual",
    "exists",
    "notExists",
    "within",
    "olderThan",
    "triggered",
    "triggeredWithin",
    "triggeredOlderThan",
    "notTriggered",
    "notTriggeredWithin",
    "memberOfSegment",
    "notMemberOfSegment",
}
TIME_OPS = {"within", "olderThan", "triggeredWithin", "triggeredOlderThan", "notTriggeredWithin"}
NO_VALUE_OPS = {"exists", "notExists", "triggered", "notTriggered"}
ORDER_OPS = {"greaterThan", "lessThan", "greaterThanOrEqual", "lessThanOrEqual"}
MAX_TIME = 8.64e15
YEAR_1_MS = -62135596800000


class InvalidCondition(Exception):
    """The condition is refused (SQLSTATE 22023 in SQL)."""


def _ascii_lower(s: str) -> str:
    return s.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"))


# The server's lower() under the database collation (what ILIKE folds with).
FOLD: Callable[[str], str] = _ascii_lower


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


# --- three-valued logic (SQL) --------------------------------------------------------------

Tri = bool | None


def t_not(a: Tri) -> Tri:
    return None if a is None else not a


def t_and(vals: list[Tri]) -> Tri:
    if any(v is False for v in vals):
        return False
    return None if any(v is None for v in vals) else True


def t_or(vals: list[Tri]) -> Tri:
    if any(v is True for v in vals):
        return True
    return None if any(v is None for v in vals) else False


# --- JavaScript values ---------------------------------------------------------------------


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def js_double(v: int | float) -> float:
    """The double JSON.parse makes of a JSON number."""
    try:
        return float(Decimal(json.dumps(v)))
    except OverflowError:
        return math.inf if v > 0 else -math.inf


_JS_WS = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


def js_string_to_number(s: str) -> float:
    s = s.strip(_JS_WS)
    if s == "":
        return 0.0
    if s in ("Infinity", "+Infinity"):
        return math.inf
    if s == "-Infinity":
        return -math.inf
    m = re.fullmatch(r"0([xXoObB])([0-9a-fA-F]+)", s)
    if m:
        base = {"x": 16, "o": 8, "b": 2}[m.group(1).lower()]
        try:
            return float(int(m.group(2), base))
        except ValueError:
            return math.nan
        except OverflowError:
            return math.inf
    if re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", s):
        try:
            return float(Decimal(s))
        except OverflowError:
            return -math.inf if s.startswith("-") else math.inf
    return math.nan


def js_number(v: Any) -> float:
    """ToNumber(value), as `value * 24` coerces it."""
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if v is None:
        return 0.0
    if is_number(v):
        return js_double(v)
    if isinstance(v, str):
        return js_string_to_number(v)
    if isinstance(v, list):
        return js_string_to_number(js_string(v)) if len(v) <= 1 else math.nan
    return math.nan


def js_number_text(x: float) -> str:
    """Number.prototype.toString()."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    digits, exp = Decimal(repr(abs(x))).normalize().as_tuple()[1:]
    ds = "".join(map(str, digits))
    k, n = len(ds), len(ds) + int(exp)
    if k <= n <= 21:
        return sign + ds + "0" * (n - k)
    if 0 < n <= 21:
        return sign + ds[:n] + "." + ds[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + ds
    e = n - 1
    mant = ds[0] + ("." + ds[1:] if k > 1 else "")
    return f"{sign}{mant}e{'+' if e >= 0 else '-'}{abs(e)}"


def js_string(v: Any) -> str:
    """String(value)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if is_number(v):
        return js_number_text(js_double(v))
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return ",".join("" if x is None else js_string(x) for x in v)
    return "[object Object]"


def js_json(v: Any) -> Any:
    """The value after JSON.parse + JSON.stringify (numbers as doubles, non-finite null)."""
    if is_number(v):
        x = js_double(v)
        return None if math.isinf(x) else Decimal(js_number_text(x))
    if isinstance(v, list):
        return [js_json(x) for x in v]
    if isinstance(v, dict):
        return {k: js_json(x) for k, x in v.items()}
    return v


# --- JavaScript dates ----------------------------------------------------------------------


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of y-m-01 plus d - 1 days (proleptic Gregorian, any year)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468 + d - 1


def civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


DATE_LIKE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T|$)")


def js_parse_date(s: str) -> int | None:
    """new Date(s).getTime() as V8 parses it, ISO and legacy forms (None: Invalid Date)."""
    return js_date_parse(s)


def js_date(v: Any) -> int | None:
    """new Date(value).getTime(); None for an Invalid Date."""
    if isinstance(v, bool):
        return int(v)
    if v is None:
        return 0
    if is_number(v):
        x = js_double(v)
        return None if math.isinf(x) or abs(x) > MAX_TIME else int(x)
    if isinstance(v, str):
        return js_parse_date(v)
    if isinstance(v, list):
        return js_parse_date(js_string(v))  # new Date(["2025", "4"]): the string "2025,4"
    return None


def js_iso(t: int) -> str:
    """Date#toISOString()."""
    days, rest = divmod(t, 86400000)
    y, m, d = civil_from_days(days)
    year = f"{y:04d}" if 0 <= y <= 9999 else (f"-{-y:06d}" if y < 0 else f"+{y:06d}")
    hh, rest = divmod(rest, 3600000)
    mm, rest = divmod(rest, 60000)
    ss, ms = divmod(rest, 1000)
    return f"{year}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{ms:03d}Z"


def ms_to_datetime(t: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(milliseconds=t)


def datetime_ms(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1)) // timedelta(milliseconds=1)


# --- JSON (jsonb) values -------------------------------------------------------------------

_MISSING = object()


def pg_path(data: Any, path: list[str]) -> Any:
    """data #> path: the value, or _MISSING (SQL NULL)."""
    cur = data
    for key in path:
        if isinstance(cur, dict):
            if key not in cur:
                return _MISSING
            cur = cur[key]
        elif isinstance(cur, list):
            m = re.fullmatch(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", key)
            if m is None or abs(int(m.group(1))) > 2**31 - 1:
                return _MISSING
            i = int(m.group(1))
            if i < 0:
                i += len(cur)
            if not 0 <= i < len(cur):
                return _MISSING
            cur = cur[i]
        else:
            return _MISSING
    return cur


def jtype(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if is_number(v) or isinstance(v, Decimal):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def jnum(v: Any) -> Decimal:
    return v if isinstance(v, Decimal) else Decimal(json.dumps(v))


def jequal(a: Any, b: Any) -> bool:
    ta, tb = jtype(a), jtype(b)
    if ta != tb:
        return False
    if ta == "number":
        return jnum(a) == jnum(b)
    if ta == "array":
        return len(a) == len(b) and all(jequal(x, y) for x, y in zip(a, b, strict=True))
    if ta == "object":
        return a.keys() == b.keys() and all(jequal(a[k], b[k]) for k in a)
    return bool(a == b)


def jcompare(op: str, a: Any, b: Any) -> bool:
    """a <op> b for two JSON numbers or two JSON strings (code point order, C collation)."""
    x, y = (jnum(a), jnum(b)) if jtype(a) == "number" else (a, b)
    return {
        "greaterThan": x > y,
        "lessThan": x < y,
        "greaterThanOrEqual": x >= y,
        "lessThanOrEqual": x <= y,
    }[op]


def like(text: str, pattern: str) -> bool:
    """SQL LIKE with PostgreSQL's default escape (backslash)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 1
            if i == len(pattern):
                raise InvalidCondition("LIKE pattern ends with the escape character")
            out.append(re.escape(pattern[i]))
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.fullmatch("".join(out), text, re.DOTALL) is not None


# --- compiler ------------------------------------------------------------------------------

Pred = Callable[[Contact], Tri]


def _err(what: Any, reason: str) -> InvalidCondition:
    return InvalidCondition(f"{json.dumps(what, default=str)[:300]}: {reason}")


def _truthy(v: Any) -> bool:
    return v is not None and v is not False and v != "" and not (is_number(v) and v == 0)


class Compiler:
    def __init__(self, world: World, project_id: str) -> None:
        self.w = world
        self.project_id = project_id
        self.now_ms = datetime_ms(world.now)
        self.filters = 0
        self.probes = 0

    def charge(self, filters: int, probes: int, what: Any) -> None:
        self.filters += filters
        self.probes += probes
        if self.filters > MAX_FILTERS or self.probes > MAX_PROBES:
            raise _err(what, "over the cost limit")

    def cutoff(self, f: dict[str, Any], for_column: bool) -> int:
        unit = f.get("unit")
        if unit not in ("days", "hours", "minutes"):
            raise _err(f, "bad unit")
        x = js_number(f.get("value"))
        if math.isnan(x) or abs(x) > 1e290:
            raise _err(f, "no time amount")
        if unit == "days":
            ms = x * 24 * 60 * 60 * 1000
        elif unit == "hours":
            ms = x * 60 * 60 * 1000
        else:
            ms = x * 60 * 1000
        t = float(self.now_ms) - ms
        if abs(t) > MAX_TIME or (for_column and t < YEAR_1_MS):
            raise _err(f, "invalid cutoff date")
        return int(t)

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
            if not isinstance(g.get("filters"), list):
                raise _err(g, "filters must be an array")
            if not g["filters"] and "conditions" not in g:
                raise _err(g, "empty group")
            self.charge(1, 0, g)
            parts = [self.filter(f, depth, chain) for f in g["filters"]]
            if _truthy(g.get("conditions")):
                parts.append(self.condition(g["conditions"], depth + 1, chain))
            compiled.append(self.all_of(parts))
        if logic == "AND":
            return lambda c: t_and([p(c) for p in compiled])
        return lambda c: t_or([p(c) for p in compiled])

    @staticmethod
    def all_of(parts: list[Pred]) -> Pred:
        return lambda c: t_and([p(c) for p in parts])

    def check_filter(self, f: Any) -> None:
        """Plunk's validateFilter."""
        if not isinstance(f, dict):
            raise _err(f, "a filter must be an object")
        fld, op = f.get("field"), f.get("operator")
        if not isinstance(fld, str) or fld == "":
            raise _err(f, "field must be a non-empty string")
        if not isinstance(op, str) or op not in OPERATORS:
            raise _err(f, "unknown operator")
        if op in ("memberOfSegment", "notMemberOfSegment"):
            if not fld.startswith("segment."):
                raise _err(f, "membership needs a segment field")
            return
        if op not in NO_VALUE_OPS and "value" not in f:
            raise _err(f, "value required")
        if op in TIME_OPS and not _truthy(f.get("unit")):
            raise _err(f, "unit required")

    def filter(self, f: Any, depth: int, chain: tuple[str, ...]) -> Pred:
        self.check_filter(f)
        self.charge(1, 0, f)
        fld, op = f["field"], f["operator"]
        if fld.startswith("segment."):
            return self.segment_field(f, op, fld[8:], depth, chain)
        if fld.startswith("event."):
            self.charge(0, 1, f)
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
            self.charge(0, 1, f)
            col = ACTIVITIES.get(fld[6:])
            if col is None:
                raise _err(f, "unknown activity")
            return self.activity(
                f,
                op,
                lambda c: [
                    t
                    for m in self.w.emails
                    if m.contact_id == c.id
                    and m.project_id == self.project_id
                    and (t := m.times.get(col)) is not None
                ],
            )
        if fld.startswith("data."):
            return self.data_field(f, op, fld[5:].split("."))
        if fld == "email":
            return self.email_field(f, op)
        if fld == "subscribed":
            if op not in ("equals", "notEquals"):
                raise _err(f, "subscribed takes equals/notEquals")
            is_true = f["value"] is True
            want = is_true if op == "equals" else not is_true
            return lambda c: c.subscribed == want
        if fld in ("createdAt", "updatedAt"):
            return self.time_field(f, op, "created_at" if fld == "createdAt" else "updated_at")
        raise _err(f, "unknown field")

    def email_field(self, f: dict[str, Any], op: str) -> Pred:
        if op not in ("equals", "notEquals", "contains", "notContains"):
            raise _err(f, "bad operator for email")
        s = js_string(f["value"])
        pattern = FOLD(s if op in ("equals", "notEquals") else f"%{s}%")
        like("", pattern) if op in ("equals", "notEquals") else None  # trailing escape -> refused
        positive = op in ("equals", "contains")
        return lambda c: like(FOLD(c.email), pattern) == positive

    def day(self, v: Any) -> tuple[str, int, str] | None:
        """Plunk's isDateString + getDateRange: (start text, start ms, next-day text)."""
        if not isinstance(v, str) or not DATE_LIKE.match(v):
            return None
        if js_parse_date(v) is None:
            return None
        start_ms = js_parse_date(v[:10])
        assert start_ms is not None
        nxt = js_iso(start_ms + 86400000).split("T")[0] + "T00:00:00.000Z"
        return v[:10] + "T00:00:00.000Z", start_ms, nxt

    def date_value(self, f: dict[str, Any]) -> int:
        t = js_date(f["value"])
        if t is None or t < YEAR_1_MS:
            raise _err(f, "invalid date")
        return t

    def time_field(self, f: dict[str, Any], op: str, attr: str) -> Pred:
        def ms(c: Contact) -> int:
            return datetime_ms(getattr(c, attr))

        if op in ("equals", "notEquals"):
            rng = self.day(f["value"])
            if rng is not None:
                start = rng[1]
                if start < YEAR_1_MS:
                    raise _err(f, "date before year 1")
                inside: Pred = lambda c: start <= ms(c) < start + 86400000  # noqa: E731
            else:
                t = self.date_value(f)
                inside = lambda c: ms(c) == t  # noqa: E731
            return inside if op == "equals" else (lambda c: not inside(c))
        if op in ORDER_OPS:
            t = self.date_value(f)
            return lambda c: jcompare(op, ms(c), t)
        if op in ("within", "olderThan"):
            cut = self.cutoff(f, True)
            if op == "within":
                return lambda c: ms(c) >= cut
            return lambda c: ms(c) < cut
        raise _err(f, "bad operator for a time field")

    def data_field(self, f: dict[str, Any], op: str, path: list[str]) -> Pred:
        def get(c: Contact) -> Any:
            return _MISSING if c.data is None else pg_path(c.data, path)

        if op in ("equals", "notEquals"):
            rng = self.day(f["value"])
            if rng is not None:
                lo, _, hi = rng

                def in_day(c: Contact) -> Tri:
                    v = get(c)
                    if v is _MISSING:
                        return None
                    inside = isinstance(v, str) and lo <= v < hi
                    outside = isinstance(v, str) and (v < lo or v >= hi)
                    return inside if op == "equals" else outside

                return in_day
            target = js_json(f["value"])

            def eq(c: Contact) -> Tri:
                v = get(c)
                if v is _MISSING:
                    return None
                return jequal(v, target) == (op == "equals")

            return eq
        if op in ("contains", "notContains"):
            pattern = "%" + js_string(f["value"]) + "%"

            def has(c: Contact) -> Tri:
                v = get(c)
                if v is _MISSING:
                    return None
                hit = isinstance(v, str) and like(v, pattern)
                return hit if op == "contains" else not hit

            return has
        if op in ORDER_OPS:
            bound = f["value"]
            if jtype(bound) not in ("number", "string"):
                raise _err(f, "bound must be a number or a string")
            bound = js_json(bound)
            if bound is None:
                raise _err(f, "bound overflows")

            def order(c: Contact) -> Tri:
                v = get(c)
                if v is _MISSING:
                    return None
                return jtype(v) == jtype(bound) and jcompare(op, v, bound)

            return order
        if op in ("exists", "notExists"):

            def ex(c: Contact) -> Tri:
                v = get(c)
                present = v is not _MISSING and v is not None
                return present if op == "exists" else not present

            return ex
        if op in ("within", "olderThan"):
            cut = js_iso(self.cutoff(f, False))

            def when(c: Contact) -> Tri:
                v = get(c)
                if v is _MISSING:
                    return None
                if not isinstance(v, str):
                    return False
                return v >= cut if op == "within" else v < cut

            return when
        raise _err(f, "bad operator for a data field")

    def activity(
        self, f: dict[str, Any], op: str, times: Callable[[Contact], list[datetime]]
    ) -> Pred:
        if op == "triggered":
            return lambda c: bool(times(c))
        if op == "notTriggered":
            return lambda c: not times(c)
        if op in ("triggeredWithin", "notTriggeredWithin", "triggeredOlderThan"):
            cut = self.cutoff(f, True)

            def recent(c: Contact) -> bool:
                return any(datetime_ms(t) >= cut for t in times(c))

            if op == "triggeredWithin":
                return recent
            if op == "notTriggeredWithin":
                return lambda c: not recent(c)
            return lambda c: bool(times(c)) and not recent(c)
        raise _err(f, "bad operator for an event/email field")

    def segment_field(
        self, f: dict[str, Any], op: str, sid: str, depth: int, chain: tuple[str, ...]
    ) -> Pred:
        if sid in chain:
            raise _err(f, "cycle")
        seg = self.w.segment(sid)
        if seg is None or seg.project_id != self.project_id:
            raise _err(f, "unknown segment or other project")
        if seg.type == "STATIC" or seg.track_membership:
            self.charge(0, 1, f)
            pos: Pred = self.member_of(seg.id)
        else:
            if seg.condition is None:
                raise _err(f, "dynamic segment without condition")
            pos = self.condition(seg.condition, depth + 1, (*chain, seg.id))
        return pos if op == "memberOfSegment" else (lambda c: t_not(pos(c)))

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
        if c.project_id == campaign.project_id and (c.subscribed or not consent) and pred(c) is True
    }
