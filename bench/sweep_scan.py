"""The empty sweep and the scheduled-start scan on Plunk v2's real campaigns indexes
(issue 12, point 7; not in `make test`).

    .venv/bin/python -m bench.sweep_scan [--recipients N] [--history H]

Plunk's campaigns table has ("scheduledFor") and ("projectId", status) indexes but none on
(status, "scheduledFor"). Starts a throwaway cluster with Plunk's tables as sql/plunk_tables.sql
creates them, one SENDING campaign of N recipients (the snapshot), H past campaigns (SENT, with
a past "scheduledFor", across 100 projects) and a few future SCHEDULED ones, then prints the
median time of plunk_sql.sweep() with nothing to do and the plan and time of the scheduled-start
scan, with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import psycopg

from bench.data import migrated_database

SCAN = (
    "SELECT c.id FROM public.campaigns AS c"
    " LEFT JOIN plunk_sql.start_attempts AS a ON a.campaign_id = c.id"
    " WHERE c.status = 'SCHEDULED' AND c.\"scheduledFor\" <= timezone('UTC', now())"
    "   AND (a.campaign_id IS NULL OR a.next_attempt_at <= now())"
    ' ORDER BY a.campaign_id IS NOT NULL, c."scheduledFor", c.id'
)


def load(conn: psycopg.Connection, recipients: int, history: int) -> None:
    t = time.monotonic()
    conn.execute(
        'INSERT INTO public.projects (id, name, public, secret, "updatedAt")'
        " SELECT 'p' || g, 'p', 'pub' || g, 'sec' || g, timezone('UTC', now())"
        " FROM generate_series(0, 99) AS g"
    )
    conn.execute(
        'INSERT INTO public.contacts (id, email, "projectId", "updatedAt")'
        " SELECT 'c' || lpad(i::text, 8, '0'), 'u' || i || '@example.com', 'p0',"
        " timezone('UTC', now()) FROM generate_series(1, %s) AS i",
        (recipients,),
    )
    conn.execute(
        'INSERT INTO public.campaigns (id, name, status, subject, body, "from", "scheduledFor",'
        ' "projectId", "updatedAt")'
        " SELECT 'h' || g, 'h', 'SENT', 's', 'b', 'f@example.com',"
        " timezone('UTC', now()) - g * interval '1 hour', 'p' || (g %% 100), timezone('UTC', now())"
        " FROM generate_series(1, %s) AS g",
        (history,),
    )
    conn.execute(
        'INSERT INTO public.campaigns (id, name, status, subject, body, "from", "scheduledFor",'
        ' "projectId", "updatedAt")'
        " SELECT 'f' || g, 'f', 'SCHEDULED', 's', 'b', 'f@example.com',"
        " timezone('UTC', now()) + g * interval '1 day', 'p' || g, timezone('UTC', now())"
        " FROM generate_series(1, 20) AS g"
    )
    conn.execute(
        'INSERT INTO public.campaigns (id, name, subject, body, "from", "projectId", "updatedAt")'
        " VALUES ('big', 'big', 's', 'b', 'f@example.com', 'p0', timezone('UTC', now()))"
    )
    conn.execute("SELECT plunk_sql.start_campaign('big')")
    conn.execute("VACUUM ANALYZE")
    print(
        f"loaded {recipients:,} recipients, {history:,} past campaigns in {time.monotonic() - t:.1f} s"
    )


def measure(conn: psycopg.Connection, label: str) -> None:
    times = []
    for _ in range(30):
        t = time.perf_counter()
        rows = conn.execute("SELECT * FROM plunk_sql.sweep()").fetchall()
        times.append((time.perf_counter() - t) * 1000)
        assert rows == [], rows
    plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {SCAN}").fetchall()
    print(f"\n== {label}")
    print(f"empty sweep: median {statistics.median(times):.2f} ms (30 runs, min {min(times):.2f})")
    print("scheduled-start scan:")
    for (line,) in plan:
        print("   ", line)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipients", type=int, default=1_000_000)
    ap.add_argument("--history", type=int, default=100_000)
    args = ap.parse_args()
    with (
        migrated_database(work_mem="64MB", maintenance_work_mem="256MB") as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        load(conn, args.recipients, args.history)
        print(f"load average: {os.getloadavg()}")
        measure(conn, 'Plunk v2\'s indexes: ("scheduledFor"), ("projectId", status)')


if __name__ == "__main__":
    main()
