"""Preview time against filter count on 100,000 contacts (issue 12, point 4; not in `make test`).

    .venv/bin/python bench/audience_cost.py [--contacts N] [--reps R]

Starts a throwaway cluster, loads the data of bench/snapshot_grammar.py (contacts with data,
~0.8 events each, half with an email), then for conditions of N `email.opened triggeredWithin`
filters (ANDed and ORed, up to plunk_sql.condition_max_activity_filters()) and of N
`data.` filters (up to plunk_sql.condition_max_filters()) prints a Markdown table: compile time
(the condition to SQL text), planning time (EXPLAIN's), and the preview_audience wall time
(compile + plan + count), medians of R runs, with the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.data import migrated_database
from bench.snapshot_grammar import load


def activity(i: int) -> dict[str, Any]:
    return {"field": "email.opened", "operator": "triggeredWithin", "value": i + 1, "unit": "days"}


def data(i: int) -> dict[str, Any]:
    return {"field": "data.age", "operator": "notEquals", "value": 1000 + i}


def condition(logic: str, make: Callable[[int], dict[str, Any]], n: int) -> dict[str, Any]:
    """AND: one group of n filters (a group's filters are ANDed); OR: n groups of one filter."""
    if logic == "AND":
        return {"logic": "AND", "groups": [{"filters": [make(i) for i in range(n)]}]}
    return {"logic": "OR", "groups": [{"filters": [make(i)]} for i in range(n)]}


def timed(conn: psycopg.Connection, cid: str, reps: int) -> tuple[float, float, float, int]:
    """Median (compile ms, plan ms, preview ms) and the preview's count."""
    compile_ms, plan_ms, preview_ms = [], [], []
    count = 0
    for _ in range(reps):
        t = time.perf_counter()
        pred = conn.execute(
            "SELECT plunk_sql.audience_predicate(c) FROM public.campaigns AS c WHERE c.id = %s",
            (cid,),
        ).fetchone()
        compile_ms.append((time.perf_counter() - t) * 1000)
        assert pred is not None
        plan = conn.execute(
            f"EXPLAIN (SUMMARY, FORMAT JSON) SELECT count(*) FROM public.contacts AS c WHERE {pred[0]}"
        ).fetchone()
        assert plan is not None
        plan_ms.append(float(plan[0][0]["Planning Time"]))
        t = time.perf_counter()
        row = conn.execute("SELECT plunk_sql.preview_audience(%s)", (cid,)).fetchone()
        preview_ms.append((time.perf_counter() - t) * 1000)
        assert row is not None
        count = int(row[0])
    return (
        statistics.median(compile_ms),
        statistics.median(plan_ms),
        statistics.median(preview_ms),
        count,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with migrated_database(work_mem="64MB") as url, psycopg.connect(url, autocommit=True) as conn:
        load(conn, args.contacts)
        limits = conn.execute(
            "SELECT plunk_sql.condition_max_activity_filters(), plunk_sql.condition_max_filters()"
        ).fetchone()
        assert limits is not None
        max_activity, max_filters = int(limits[0]), int(limits[1]) - 1  # AND: one group
        series: list[tuple[str, str, Callable[[int], dict[str, Any]], list[int]]] = [
            ("email.opened triggeredWithin", "AND", activity, [10, 25, 50, max_activity]),
            ("email.opened triggeredWithin", "OR", activity, [10, 25, 50, max_activity]),
            ("data.age notEquals", "AND", data, [10, 50, 100, max_filters]),
        ]
        print(f"\n{args.contacts:,} contacts; load average before: {os.getloadavg()}")
        print("\n| filters | kind | logic | compile ms | plan ms | preview ms | audience |")
        print("|---:|---|---|---:|---:|---:|---:|")
        for kind, logic, make, counts in series:
            for n in counts:
                cid = f"{logic}-{kind.split()[0]}-{n}"
                conn.execute(
                    'INSERT INTO public.campaigns (id, name, subject, body, "from",'
                    ' "audienceType", "audienceCondition", "projectId", "updatedAt")'
                    " VALUES (%s, 'c', 's', 'b', 'f@example.com', 'FILTERED', %s, 'p',"
                    " timezone('UTC', now()))",
                    (cid, Jsonb(condition(logic, make, n))),
                )
                c_ms, p_ms, v_ms, count = timed(conn, cid, args.reps)
                print(
                    f"| {n} | {kind} | {logic} | {c_ms:.1f} | {p_ms:.1f} | {v_ms:.0f} | {count:,} |"
                )
        over = condition("OR", activity, max_activity + 1)
        try:
            conn.execute("SELECT plunk_sql.compile_condition(%s, 'p')", (Jsonb(over),))
            print("\nover the limit: accepted (unexpected)")
        except psycopg.Error as e:
            print(f"\nover the limit ({max_activity + 1} activity filters): {e.sqlstate} {e}")
        print(f"load average after: {os.getloadavg()}")
        print(json.dumps({"contacts": args.contacts, "reps": args.reps}))


if __name__ == "__main__":
    main()
