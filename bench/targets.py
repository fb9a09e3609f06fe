"""Issue 14's targets, computed from a results.json (this run's, or the baseline's).

Every target is a ratio against the floor measured in the same run: the same
statements on a database without the toolkit. One function per row of the
issue's table; each returns a Verdict whose text the report prints as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MET, NOT_MET, NOT_MEASURED, INVALID = "met", "not met", "not measured", "invalid"

# The worker count of the issue's per-email and lock-wait rows.
PER_EMAIL_WORKERS = 8


@dataclass
class Verdict:
    row: str  # the issue's wording
    target: str
    measured: str  # what the run shows, with the figures behind it
    verdict: str  # MET / NOT_MET / NOT_MEASURED / INVALID (with why)
    phase: str  # results.json phase the figures come from


def ratio(row: dict[str, Any]) -> float:
    """toolkit time / floor time of a send or trigger row (older rows lack "ratio")."""
    if "ratio" in row:
        return float(row["ratio"])
    if "toolkit_s" in row:
        return float(row["toolkit_s"]) / float(row["floor_s"])
    return float(row["toolkit_us"]) / float(row["floor_us"])


def paired_range(row: dict[str, Any]) -> tuple[float, float] | None:
    """Smallest and largest toolkit/floor ratio of the runs taken side by side."""
    pairs = [
        t / f
        for t, f in zip(row.get("toolkit_runs", []), row.get("floor_runs", []), strict=False)
        if f
    ]
    return (min(pairs), max(pairs)) if pairs else None


def fsync_state(res: Any) -> tuple[bool, str]:
    """Whether every commit of the send phase waited for a WAL flush: fsync on at the
    server and, in every worker session, fsync on and synchronous_commit not off."""
    settings = (res.environment or {}).get("settings", {})
    server = f"fsync = {settings.get('fsync', '?')}, synchronous_commit = " + str(
        settings.get("synchronous_commit", "?")
    )
    sessions: dict[str, set[str]] = {}
    for row in res.send or []:
        for key, values in (row.get("session") or {}).items():
            sessions.setdefault(key, set()).update(values)
    ok = settings.get("fsync") == "on" and settings.get("synchronous_commit") not in ("off",)
    if sessions:
        text = (
            f"server: {server}; every send worker session: fsync = "
            f"{'/'.join(sorted(sessions.get('fsync', {'?'})))}, synchronous_commit = "
            f"{'/'.join(sorted(sessions.get('synchronous_commit', {'?'})))}"
        )
        ok = ok and sessions.get("fsync") == {"on"}
        ok = ok and "off" not in sessions.get("synchronous_commit", {"off"})
    else:
        text = f"server: {server} (worker sessions not recorded by this run)"
    return ok, text


def _x(v: float) -> str:
    return f"{v:.2f}x"


def _ratio_row(label: str, target: float, rows: list[dict[str, Any]], describe: Any) -> Verdict:
    in_order = [(ratio(r), r) for r in rows]
    values = sorted(in_order, key=lambda v: v[0])
    worst, worst_row = values[-1]
    if len(values) <= 3:
        measured = f"worst {_x(worst)}; " + ", ".join(
            f"{describe(r)}: {_x(v)}" for v, r in in_order
        )
    else:
        best, best_row = values[0]
        within = sum(1 for v, _ in values if v <= target)
        measured = (
            f"worst {_x(worst)} ({describe(worst_row)}), best {_x(best)} ({describe(best_row)}); "
            f"{within} of {len(values)} configurations within target"
        )
    return Verdict(
        row=label,
        target=f"<= {target:.2f}x",
        measured=measured,
        verdict=MET if worst <= target else NOT_MET,
        phase="send",
    )


def _workers(n: int) -> str:
    return f"{n} worker" + ("s" if n != 1 else "")


def per_email_settles(res: Any) -> Verdict:
    label = f"per-email settles, {PER_EMAIL_WORKERS} workers, fsync on"
    rows = [
        r
        for r in res.send or []
        if r["settle"] == "per_email" and r["workers"] == PER_EMAIL_WORKERS
    ]
    if not rows:
        return Verdict(
            label, "<= 1.25x", f"no {PER_EMAIL_WORKERS}-worker run", NOT_MEASURED, "send"
        )
    v = _ratio_row(label, 1.25, rows, lambda r: f"batch {r['batch']}")
    ok, text = fsync_state(res)
    if not ok:
        v.verdict = f"{INVALID}: commits did not wait for the disk ({text})"
    return v


def batched_settles(res: Any) -> Verdict:
    label = "batched settles (one UPDATE per batch), 1-8 workers"
    rows = [r for r in res.send or [] if r["settle"] == "batched"]
    if not rows:
        return Verdict(label, "<= 1.15x", "not run", NOT_MEASURED, "send")
    return _ratio_row(label, 1.15, rows, lambda r: f"batch {r['batch']}, {_workers(r['workers'])}")


def lock_share(waits: list[dict[str, Any]], measure: str = "emails") -> tuple[int, int, bool]:
    """(samples with a Lock wait, samples) outside the campaign's last 1% (by emails
    settled, or by elapsed time); the bool is False for runs that did not record
    progress, whose figures cover every sample."""
    if waits and all(w.get("progress") for w in waits):
        parts = [w["progress"][measure]["before_last"] for w in waits]
        return sum(p["lock_samples"] for p in parts), sum(p["samples"] for p in parts), True
    return sum(w["lock_samples"] for w in waits), sum(w["samples"] for w in waits), False


def _pct(locked: int, samples: int) -> str:
    return f"{100 * locked / samples:.1f}%" if samples else "-"


def lock_waits(res: Any, settle: str) -> Verdict:
    kind = "per-email" if settle == "per_email" else "batched"
    label = f"lock waits, {PER_EMAIL_WORKERS} workers, {kind} settles"
    target = "no more than the floor's own"
    rows = [
        r for r in res.send or [] if r["settle"] == settle and r["workers"] == PER_EMAIL_WORKERS
    ]
    if not rows:
        return Verdict(label, target, f"no {PER_EMAIL_WORKERS}-worker run", NOT_MEASURED, "send")
    tool = [w for r in rows for w in r.get("toolkit_waits", [])]
    floor = [w for r in rows for w in r.get("floor_waits", [])]
    if not floor:
        return Verdict(label, target, "the floor was not sampled", NOT_MEASURED, "send")
    t_lock, t_all, exact = lock_share(tool)
    f_lock, f_all, f_exact = lock_share(floor)
    measured = (
        f"toolkit {_pct(t_lock, t_all)} ({t_lock} of {t_all}), "
        f"floor {_pct(f_lock, f_all)} ({f_lock} of {f_all})"
    )
    if exact and f_exact:
        tt, ta, _ = lock_share(tool, "time")
        ft, fa, _ = lock_share(floor, "time")
        measured += (
            "; last 1% by emails settled left out (by elapsed time instead: "
            f"toolkit {_pct(tt, ta)}, floor {_pct(ft, fa)})"
        )
    else:
        measured += "; every sample (this run did not record the campaign's progress)"
    # toolkit share <= floor share, without dividing by a sample count of zero.
    verdict = MET if t_lock * max(f_all, 1) <= f_lock * max(t_all, 1) else NOT_MET
    return Verdict(label, target, measured, verdict, "send")


def single_row(res: Any, statement: str) -> Verdict:
    label = f"single-row {statement} of non-campaign emails"
    rows = [
        r
        for r in res.triggers or []
        if r["rows"] == "non_campaign" and r.get("statement", "UPDATE") == statement
    ]
    if not rows:
        return Verdict(label, "<= 1.05x", "not measured by this run", NOT_MEASURED, "triggers")
    r = rows[0]
    v = ratio(r)
    spread = paired_range(r)
    measured = (
        f"{_x(v)} ({r['toolkit_us']:.1f} us against {r['floor_us']:.1f} us"
        + (f"; rounds {_x(spread[0])}-{_x(spread[1])}" if spread else "")
        + ")"
    )
    return Verdict(label, "<= 1.05x", measured, MET if v <= 1.05 else NOT_MET, "triggers")


def snapshot(res: Any) -> list[Verdict]:
    """The two largest sizes (100k and 1M contacts in the full run)."""
    rows = sorted(res.snapshot or [], key=lambda r: r["contacts"])[-2:]
    if not rows:
        return [
            Verdict(
                "snapshot (floor s / snapshot s)", ">= 0.90x", "not run", NOT_MEASURED, "snapshot"
            )
        ]
    out = []
    for r in rows:
        label = f"snapshot, {r['contacts']:,} contacts"
        measured = (
            f"{_x(r['ratio'])} ({r['recipients']:,} recipients: {r['toolkit_s']:.3f} s against "
            f"{r['floor_s']:.3f} s)"
        )
        out.append(
            Verdict(label, ">= 0.90x", measured, MET if r["ratio"] >= 0.9 else NOT_MET, "snapshot")
        )
    return out


def whole_campaign(res: Any) -> Verdict:
    label = "whole campaign against Plunk's current (patched) algorithm"
    rows = [r for r in res.seed or [] if r.get("speedup_vs_patched") is not None]
    if not rows:
        return Verdict(label, ">= 2x faster", "not run", NOT_MEASURED, "seed")
    big = max(rows, key=lambda r: r["recipients"] or 0)
    v = big["speedup_vs_patched"]
    measured = (
        f"{v:.2f}x at {big['recipients']:,} recipients (the patch {big['patched_s']:,.1f} s, "
        f"plunk_sql {big['toolkit_s']:,.1f} s)"
    )
    carried = big.get("carried") or {}
    if carried.get("patched") or carried.get("toolkit"):
        measured += " (" + ", ".join(f"{a} carried over from {d}" for a, d in carried.items()) + ")"
    return Verdict(label, ">= 2.00x (faster)", measured, MET if v >= 2 else NOT_MET, "seed")


# How each row is measured, printed under the table.
HOW = (
    "Per-email and batched settles: toolkit seconds / floor seconds for the same emails "
    "(median of the rounds), every configuration of the send phase with that settle kind "
    "(per-email: the 8-worker runs of every batch size). Lock waits: the share of "
    "`pg_stat_activity` samples (every 10 ms, toolkit and floor runs alike) in which a "
    "worker waited on `wait_event_type = 'Lock'`, over the 8-worker runs of every batch "
    "size, leaving out the samples taken once 99% of the campaign's emails had settled "
    "(emails counted by the workers as their SENT commits); the same cut by elapsed time "
    "is shown beside it. Single-row statements: toolkit microseconds / floor microseconds "
    "per statement, each statement its own transaction. Snapshot: floor seconds / snapshot "
    "seconds (throughput against the floor's). Whole campaign: Plunk's patched algorithm's "
    "seconds / plunk_sql's, serial, at the largest size."
)


def issue14(res: Any) -> list[Verdict]:
    """Every row of issue 14's table, in the issue's order."""
    return [
        per_email_settles(res),
        batched_settles(res),
        lock_waits(res, "per_email"),
        lock_waits(res, "batched"),
        single_row(res, "UPDATE"),
        single_row(res, "INSERT"),
        *snapshot(res),
        whole_campaign(res),
    ]
