"""Differential tests: the SQL snapshot of random audiences equals the Python reference exactly.

Hypothesis generates a world (contacts with typed `data`, events, emails with activity
timestamps, segments of every kind with memberships, a second project) and a campaign with a
random condition (mostly valid, sometimes malformed). In one transaction the test reads
plunk_sql.utc_now(), plunk_sql.preview_audience and the snapshot plunk_sql.start_campaign
writes; the reference (tests/reference_audience.py) evaluated at that same instant must give the
same set, or both must reject the audience (SQLSTATE 22023).

One database per test function; tables are emptied between examples (hypothesis examples and
function-scoped fixtures do not mix, hence the suppressed health check).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from tests import reference_audience as ref

P, Q = "project-p", "project-q"
SEGMENTS_P = ["s-static", "s-track", "s-dyn1", "s-dyn2", "s-null"]
SEGMENT_REFS = [*SEGMENTS_P, "s-foreign", "s-missing"]
EVENT_NAMES = ["signup", "user.login", "buy"]
ACTIVITIES = ["opened", "click", "sent", "bounce", "delivered", "complaint"]
UNITS = ["days", "hours", "minutes"]
MS = {"days": 86_400_000, "hours": 3_600_000, "minutes": 60_000}

settings.register_profile(
    "audience",
    max_examples=30,
    deadline=None,
    database=None,
    # No shrinking: each failure already names the single filter that differs
    # (with_single_filters), and shrinking a world takes minutes.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
AUDIENCE = settings.get_profile("audience")


# --- strategies --------------------------------------------------------------------------------


@st.composite
def ages_ms(draw) -> int:
    """How long ago something happened, clustered around whole units (the cutoffs)."""
    unit = draw(st.sampled_from(UNITS))
    n = draw(st.sampled_from([0, 1, 2, 3, 7, 30, 31]))
    jitter = draw(st.integers(-3000, 3000))
    return n * MS[unit] + jitter


def iso_text(ts: datetime, style: int) -> str:
    if style == 0:
        return ts.strftime("%Y-%m-%d")
    if style == 1:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    if style == 2:  # same instant written at +02:00
        return (ts + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    if style == 4:  # JavaScript's Date#toString in Central Europe (V8's legacy parser)
        return (ts + timedelta(hours=2)).strftime(
            "%a %b %d %Y %H:%M:%S GMT+0200 (Central European Summer Time)"
        )
    if style == 5:
        return ts.strftime("%B %-d, %Y %H:%M:%S UTC")
    if style == 6:  # US order, local time (= UTC), 12-hour clock
        return ts.strftime("%m/%d/%Y %I:%M:%S %p")
    return ts.strftime("%Y-%m-%d %H:%M")


@st.composite
def date_strings(draw, base: datetime) -> str:
    return iso_text(base - timedelta(milliseconds=draw(ages_ms())), draw(st.integers(0, 6)))


def json_values(base: datetime):
    """Values of every JSON type, date-like strings and Plunk's odd cases."""
    scalars = st.one_of(
        st.sampled_from(
            ["pro", "Pro", "free", "", "a'b", "x;--", "ünï", "%", "_", "pr%", "7", "42"]
        ),
        st.integers(-3, 12),
        st.sampled_from([0.5, 1.0, 10.0, 1e20, -0.0, 12345678901234567890, 1e300]),
        st.booleans(),
        st.none(),
        date_strings(base),
        st.sampled_from(["2024-02-30", "tomorrow", "2024-01-01T25:00:00Z", "2025-04-10T"]),
    )
    return st.one_of(
        scalars,
        st.lists(st.integers(0, 2), max_size=2),
        st.dictionaries(st.sampled_from(["b", "c"]), scalars, max_size=2),
    )


DATA_KEYS = ["plan", "n", "d", "tags", "a"]
DATA_FIELDS = [
    *(f"data.{k}" for k in DATA_KEYS),
    "data.a.b",
    "data.a.b.c",
    "data.tags.0",
    "data.tags.-1",
    "data.",
    "data.missing",
]
EMAILS = ["ada@example.com", "ADA@Example.com", "ÉVA@example.com", "bob@x'.io", "zoë@acme.io"]


def contact_data(base: datetime):
    return st.one_of(
        st.none(),
        st.dictionaries(st.sampled_from([*DATA_KEYS, ""]), json_values(base), max_size=4),
        st.just([1, "plan"]),
        st.just("scalar"),
    )


FIELD_OPS: dict[str, list[str]] = {
    "email": ["equals", "notEquals", "contains", "notContains"],
    "subscribed": ["equals", "notEquals"],
    "time": [
        "equals",
        "notEquals",
        "greaterThan",
        "lessThan",
        "greaterThanOrEqual",
        "lessThanOrEqual",
        "within",
        "olderThan",
    ],
    "data": [
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
    ],
    "activity": [
        "triggered",
        "triggeredWithin",
        "triggeredOlderThan",
        "notTriggered",
        "notTriggeredWithin",
    ],
    "segment": ["memberOfSegment", "notMemberOfSegment"],
}
ALL_OPS = sorted({op for ops in FIELD_OPS.values() for op in ops} | {"between", "EQUALS"})
NEEDS_UNIT = {
    "within",
    "olderThan",
    "triggeredWithin",
    "triggeredOlderThan",
    "notTriggeredWithin",
}
TIME_AMOUNTS = [0, 1, 2, 3, 7, 30, 1.5, "7", True, None, -1, 50000, 1e-300, "1e3", "x", [2]]


def instants(base: datetime):
    """Values new Date() reads: date strings, epoch milliseconds, true/null, odd strings."""
    ms = ref.datetime_ms(base)
    return st.one_of(
        date_strings(base),
        st.builds(lambda d: ms - d, ages_ms()),
        st.sampled_from([True, None, 1600000000000, "2025-02-30", "2024-09-22T23:00:00-05:00"]),
        st.sampled_from(["2025-04-10T08:00:00+0200", "0000-01-01", "1e3", "April 1", ""]),
        st.sampled_from(["12", "Apr 31 2025", "2025/04/10", ["2025", "4", "1"], "Tue5 Apr 2025"]),
    )


@st.composite
def filters(draw, base: datetime, segment_refs: list[str]) -> dict:
    kind = draw(
        st.sampled_from(["email", "subscribed", "time", "data", "data", "activity", "segment"])
    )
    if kind == "email":
        field = "email"
    elif kind == "subscribed":
        field = "subscribed"
    elif kind == "time":
        field = draw(st.sampled_from(["createdAt", "updatedAt"]))
    elif kind == "data":
        field = draw(st.sampled_from(DATA_FIELDS))
    elif kind == "activity":
        field = draw(
            st.sampled_from(
                [f"event.{n}" for n in EVENT_NAMES] + [f"email.{a}" for a in ACTIVITIES]
            )
        )
    else:
        field = "segment." + draw(st.sampled_from(segment_refs))
    valid = draw(st.sampled_from([True] * 15 + [False]))
    op = draw(st.sampled_from(FIELD_OPS[kind] if valid else ALL_OPS))
    out: dict[str, Any] = {"field": field, "operator": op}
    if op in NEEDS_UNIT:
        out["value"] = draw(st.sampled_from(TIME_AMOUNTS[:7] if valid else TIME_AMOUNTS))
        if valid or draw(st.booleans()):
            out["unit"] = draw(st.sampled_from(UNITS if valid else [*UNITS, "weeks", 1, ""]))
    elif kind == "email" and op != "notExists":
        out["value"] = draw(
            st.sampled_from(
                [
                    *EMAILS,
                    "éva@example.com",
                    "ADA",
                    "éva",
                    "example",
                    "",
                    "x'",
                    "%",
                    "_",
                    "a%",
                    "x\\",
                ]
            )
            if valid
            else json_values(base)
        )
    elif kind == "subscribed":
        out["value"] = draw(st.sampled_from([True, False, "true", 1, None]))
    elif kind == "time":
        out["value"] = draw(instants(base) if valid else json_values(base))
    elif kind == "data" and op not in ("exists", "notExists"):
        if op in ("greaterThan", "lessThan", "greaterThanOrEqual", "lessThanOrEqual") and valid:
            out["value"] = draw(st.sampled_from([-1, 0, 1, 2.5, 10, 1e20, "6", "pro", "", "2025"]))
        elif op in ("contains", "notContains") and valid:
            out["value"] = draw(st.sampled_from(["pro", "P", "", "-", "'", "%", "_", 7, True]))
        elif valid or draw(st.booleans()):
            out["value"] = draw(json_values(base))
    elif not valid and draw(st.booleans()):
        out["value"] = draw(json_values(base))
    return out


def conditions(base: datetime, segment_refs: list[str], max_leaves: int = 6):
    leaf = st.lists(filters(base, segment_refs), min_size=1, max_size=2)

    def extend(children):
        return st.builds(
            lambda logic, groups: {"logic": logic, "groups": groups},
            st.sampled_from(["AND", "OR"]),
            st.lists(
                st.one_of(
                    st.builds(lambda fs: {"filters": fs}, leaf),
                    st.builds(lambda fs, c: {"filters": fs, "conditions": c}, leaf, children),
                    st.builds(lambda c: {"filters": [], "conditions": c}, children),
                    st.sampled_from(
                        [{"filters": [], "conditions": None}, {"filters": [], "conditions": False}]
                    ),
                ),
                min_size=1,
                max_size=3,
            ),
        )

    base_cond = st.builds(
        lambda logic, fs: {"logic": logic, "groups": [{"filters": fs}]},
        st.sampled_from(["AND", "OR"]),
        leaf,
    )
    return st.recursive(base_cond, extend, max_leaves=max_leaves)


@st.composite
def worlds(draw, base: datetime) -> tuple[ref.World, ref.Campaign]:
    def ts() -> datetime:
        return base - timedelta(milliseconds=draw(ages_ms()))

    w = ref.World(now=base)
    taken: set[str] = set()
    n_p = draw(st.integers(3, 10))
    n_q = draw(st.integers(0, 2))
    for i in range(n_p + n_q):
        project = P if i < n_p else Q
        email = draw(st.sampled_from(EMAILS))
        if email in taken:  # unique per project, as Plunk's index demands
            email = f"{i}.{email}"
        taken.add(email)
        w.contacts.append(
            ref.Contact(
                id=f"c{i}",
                project_id=project,
                email=email,
                subscribed=draw(st.booleans()),
                data=draw(contact_data(base)),
                created_at=ts(),
                updated_at=ts(),
            )
        )
    ids = [c.id for c in w.contacts]
    if ids:
        for _ in range(draw(st.integers(0, 16))):
            w.events.append(
                ref.Event(
                    project_id=draw(st.sampled_from([P, P, P, Q])),
                    contact_id=draw(st.sampled_from([*ids, None])),
                    name=draw(st.sampled_from(EVENT_NAMES)),
                    created_at=ts(),
                )
            )
        for _ in range(draw(st.integers(0, 16))):
            cols = draw(st.sets(st.sampled_from(sorted(set(ref.ACTIVITIES.values())))))
            w.emails.append(
                ref.Email(
                    project_id=draw(st.sampled_from([P, P, P, Q])),
                    contact_id=draw(st.sampled_from(ids)),
                    times={col: ts() for col in cols},
                )
            )
    inner_refs = ["s-static", "s-track", "s-dyn1", "s-dyn2", "s-missing"]
    w.segments = [
        ref.Segment("s-static", P, "STATIC"),
        ref.Segment("s-track", P, "DYNAMIC", draw(conditions(base, ["s-static"], 3)), True),
        ref.Segment("s-dyn1", P, "DYNAMIC", draw(conditions(base, inner_refs, 3))),
        ref.Segment("s-dyn2", P, "DYNAMIC", draw(conditions(base, ["s-static", "s-track"], 3))),
        ref.Segment("s-null", P, "DYNAMIC", None),
        ref.Segment("s-foreign", Q, "STATIC"),
    ]
    for sid in ("s-static", "s-track", "s-foreign"):
        for cid in draw(st.sets(st.sampled_from(ids))) if ids else ():
            exited = ts() if draw(st.integers(0, 3)) == 0 else None
            w.memberships.append(ref.Membership(cid, sid, exited))
    audience = draw(st.sampled_from(["FILTERED"] * 8 + ["SEGMENT", "ALL"]))
    campaign = ref.Campaign(
        project_id=P,
        audience=audience,
        type=draw(st.sampled_from(["MARKETING", "MARKETING", "TRANSACTIONAL"])),
    )
    if audience == "FILTERED":
        campaign.condition = draw(conditions(base, SEGMENT_REFS))
    elif audience == "SEGMENT":
        campaign.segment_id = draw(st.sampled_from([*SEGMENTS_P, "s-foreign"]))
    return w, campaign


# --- database ----------------------------------------------------------------------------------


def reset(conn: psycopg.Connection) -> None:
    conn.execute(
        "TRUNCATE public.contacts, public.segments, public.segment_memberships, public.events,"
        " public.emails, public.campaigns, plunk_sql.recipients, plunk_sql.campaign_runs CASCADE"
    )


def load(conn: psycopg.Connection, w: ref.World) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            'INSERT INTO public.contacts (id, email, data, subscribed, "projectId", "createdAt",'
            ' "updatedAt") VALUES (%s, %s, %s, %s, %s, %s, %s)',
            [
                (
                    c.id,
                    c.email,
                    Jsonb(c.data) if c.data is not None else None,
                    c.subscribed,
                    c.project_id,
                    c.created_at,
                    c.updated_at,
                )
                for c in w.contacts
            ],
        )
        cur.executemany(
            'INSERT INTO public.events (id, name, data, "projectId", "contactId", "createdAt")'
            " VALUES (%s, %s, '{}', %s, %s, %s)",
            [
                (f"e{i}", e.name, e.project_id, e.contact_id, e.created_at)
                for i, e in enumerate(w.events)
            ],
        )
        cols = ["sentAt", "deliveredAt", "openedAt", "clickedAt", "bouncedAt", "complainedAt"]
        cur.executemany(
            'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
            ' status, "projectId", "sentAt", "deliveredAt", "openedAt", "clickedAt",'
            ' "bouncedAt", "complainedAt", "updatedAt")'
            " VALUES (%s, %s, 's', 'b', 'f@example.com', 'TRANSACTIONAL', 'SENT', %s,"
            " %s, %s, %s, %s, %s, %s, timezone('UTC', now()))",
            [
                (f"m{i}", m.contact_id, m.project_id, *(m.times.get(c) for c in cols))
                for i, m in enumerate(w.emails)
            ],
        )
        cur.executemany(
            'INSERT INTO public.segments (id, name, type, condition, "trackMembership",'
            ' "projectId", "updatedAt")'
            " VALUES (%s, %s, %s, %s, %s, %s, timezone('UTC', now()))",
            [
                (
                    s.id,
                    s.id,
                    s.type,
                    Jsonb(s.condition) if s.condition is not None else None,
                    s.track_membership,
                    s.project_id,
                )
                for s in w.segments
            ],
        )
        cur.executemany(
            'INSERT INTO public.segment_memberships ("contactId", "segmentId", "exitedAt", "updatedAt")'
            " VALUES (%s, %s, %s, timezone('UTC', now()))",
            [(m.contact_id, m.segment_id, m.exited_at) for m in w.memberships],
        )


def leaves(condition: Any) -> list[dict]:
    """Every filter object inside a (possibly malformed) condition."""
    out: list[dict] = []
    if isinstance(condition, dict):
        for g in condition.get("groups") or []:
            if isinstance(g, dict):
                out += [x for x in g.get("filters") or [] if isinstance(x, dict)]
                out += leaves(g.get("conditions"))
    return out


def snapshots(
    conn: psycopg.Connection, campaigns: list[ref.Campaign]
) -> tuple[datetime, list[tuple[int | None, set[str] | None, str | None]]]:
    """The transaction's now and, per campaign, (preview, snapshot ids, None) or
    (None, None, sqlstate). All campaigns are snapshotted in one transaction (one now), each
    in its own savepoint."""
    with conn.cursor() as cur:
        cur.executemany(
            'INSERT INTO public.campaigns (id, name, subject, body, "from", type, "audienceType",'
            ' "audienceCondition", "segmentId", "projectId", "updatedAt")'
            " VALUES (%s, 'c', 's', 'b', 'f@example.com', %s, %s, %s, %s, %s,"
            " timezone('UTC', now()))",
            [
                (
                    f"camp{i}",
                    c.type,
                    c.audience,
                    Jsonb(c.condition) if c.condition is not None else None,
                    c.segment_id,
                    c.project_id,
                )
                for i, c in enumerate(campaigns)
            ],
        )
    results: list[tuple[int | None, set[str] | None, str | None]] = []
    with conn.transaction():
        now = conn.execute("SELECT plunk_sql.utc_now()").fetchone()[0]
        for i in range(len(campaigns)):
            cid = f"camp{i}"
            try:
                with conn.transaction():
                    preview = conn.execute(
                        "SELECT plunk_sql.preview_audience(%s)", (cid,)
                    ).fetchone()[0]
                    total = conn.execute("SELECT plunk_sql.start_campaign(%s)", (cid,)).fetchone()[
                        0
                    ]
                    ids = {
                        r[0]
                        for r in conn.execute(
                            "SELECT contact_id FROM plunk_sql.recipients WHERE campaign_id = %s",
                            (cid,),
                        )
                    }
                    assert total == len(ids)
                    results.append((preview, ids, None))
            except psycopg.Error as e:
                results.append((None, None, e.sqlstate))
    return now, results


def check(conn: psycopg.Connection, w: ref.World, campaigns: list[ref.Campaign]) -> None:
    reset(conn)
    load(conn, w)
    w.now, results = snapshots(conn, campaigns)
    for campaign, (preview, ids, sqlstate) in zip(campaigns, results, strict=True):
        what = f"{campaign.audience} {campaign.segment_id} {campaign.condition}"
        try:
            expected = ref.audience(w, campaign)
        except ref.InvalidCondition as e:
            assert sqlstate == "22023", (
                f"{what}: reference rejects ({e}), SQL gave {sqlstate or ids}"
            )
            continue
        assert sqlstate is None, f"{what}: SQL raised {sqlstate}, reference: {sorted(expected)}"
        assert ids == expected, f"{what}: SQL {sorted(ids or ())} != reference {sorted(expected)}"
        assert preview == len(expected)


def with_single_filters(main: ref.Campaign, extra: list[dict]) -> list[ref.Campaign]:
    """The campaign, plus one FILTERED campaign per filter it contains and per extra filter: a
    wrong answer on one filter cannot hide behind the rest of the condition."""
    singles = [
        ref.Campaign(
            project_id=main.project_id,
            audience="FILTERED",
            type=main.type,
            condition={"logic": "AND", "groups": [{"filters": [leaf]}]},
        )
        for leaf in [*leaves(main.condition), *extra]
    ]
    return [main, *singles]


@pytest.fixture(params=["exists", "aggregates"])
def world_conn(request, conn: psycopg.Connection, monkeypatch):
    """Both forms of event/email/membership tests: EXISTS semi-joins (a handful of them) and
    per-contact aggregates (more than plunk_sql.condition_exists_max())."""
    if request.param == "aggregates":
        conn.execute(
            "CREATE OR REPLACE FUNCTION plunk_sql.condition_exists_max() RETURNS integer"
            " LANGUAGE sql IMMUTABLE RETURN 0"
        )
    folded: dict[str, str] = {}

    def fold(text: str) -> str:  # the server's lower(), which ILIKE folds with
        if text not in folded:
            folded[text] = conn.execute("SELECT pg_catalog.lower(%s)", (text,)).fetchone()[0]
        return folded[text]

    monkeypatch.setattr(ref, "FOLD", fold)
    for pid in (P, Q):
        conn.execute(
            'INSERT INTO public.projects (id, name, public, secret, "updatedAt")'
            " VALUES (%s, %s, %s, %s, timezone('UTC', now()))",
            (pid, pid, pid + "-pub", pid + "-sec"),
        )
    return conn


def db_now(conn: psycopg.Connection) -> datetime:
    """The database's UTC now at millisecond precision (what timestamp(3) columns hold).

    Each example generates its timestamps around this instant, read just before, so they fall
    within seconds of the cutoffs the snapshot computes from its own transaction time."""
    base = conn.execute("SELECT plunk_sql.utc_now()").fetchone()[0]
    return base.replace(microsecond=base.microsecond // 1000 * 1000)


@AUDIENCE
@given(data=st.data())
def test_audience__sql_snapshot_equals_reference(world_conn, data):
    conn = world_conn
    base = db_now(conn)
    w, campaign = data.draw(worlds(base))
    extra = data.draw(st.lists(filters(base, SEGMENT_REFS), min_size=4, max_size=8))
    check(conn, w, with_single_filters(campaign, extra))


@settings(AUDIENCE, max_examples=12)
@given(data=st.data())
def test_audience__segment_campaigns_equal_reference(world_conn, data):
    """Campaigns targeting segments directly: DYNAMIC inlined, STATIC by membership, and the
    filters inside the segments' conditions one by one."""
    conn = world_conn
    base = db_now(conn)
    w, _ = data.draw(worlds(base))
    campaigns = [
        ref.Campaign(project_id=P, audience="SEGMENT", segment_id=sid, type=t)
        for sid in ("s-static", "s-track", "s-dyn1", "s-dyn2", "s-null", "s-foreign")
        for t in ("MARKETING", "TRANSACTIONAL")
    ]
    inner = [leaf for s in w.segments for leaf in leaves(s.condition)]
    check(conn, w, campaigns + with_single_filters(campaigns[0], inner)[1:])
