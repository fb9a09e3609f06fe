"""What guard mode adds to Plunk's own start statement (not part of `make test`).

    .venv/bin/python bench/guard_start.py [--contacts 100000 1000000] [--reps 3]

Starts a throwaway cluster (fsync on), loads Plunk's tables and the toolkit, generates contacts
set-based, then times Plunk's startSending UPDATE (DRAFT -> SENDING, as Prisma sends it) with
guard mode off and on, for an ALL campaign and a dynamic segment (data.plan = pro, about a
quarter of the contacts). Each repetition puts the campaign back to DRAFT and drops its run.
Prints the median milliseconds of the statement and the snapshot size.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from psycopg.types.json import Jsonb

from plunk_sql.migrate import migrate
from plunk_sql.testing.cluster import start_cluster

START = (
    "UPDATE public.campaigns SET status = 'SENDING', \"totalRecipients\" = 0,"
    " \"sentAt\" = timezone('UTC', now()), \"updatedAt\" = timezone('UTC', now()) WHERE id = %s"
)
RESET = (
    "UPDATE public.campaigns SET status = 'DRAFT', \"sentAt\" = NULL,"
    " \"updatedAt\" = timezone('UTC', now()) WHERE id = %s"
)


def load(conn: psycopg.Connection, n: int) -> None:
    # TRUNCATE fires no DELETE trigger: the snapshot rows go explicitly.
    conn.execute("TRUNCATE public.projects, plunk_sql.recipients CASCADE")
    conn.execute(
        'INSERT INTO public.projects (id, name, public, secret, "updatedAt")'
        " VALUES ('p', 'bench', 'pub', 'sec', timezone('UTC', now()))"
    )
    conn.execute(
        'INSERT INTO public.contacts (id, email, data, subscribed, "projectId", "updatedAt")'
        " SELECT 'c' || lpad(i::text, 8, '0'), 'user' || i || '@example.com',"
        " jsonb_build_object('plan', (ARRAY['pro', 'free', 'free', 'team'])[1 + i %% 4]),"
        " i %% 20 <> 0, 'p', timezone('UTC', now())"
        " FROM generate_series(1, %s) AS i",
        (n,),
    )
    conn.execute(
        'INSERT INTO public.segments (id, name, condition, "projectId", "updatedAt")'
        " VALUES ('pro', 'pro', %s, 'p', timezone('UTC', now()))",
        (
            Jsonb(
                {
                    "logic": "AND",
                    "groups": [
                        {"filters": [{"field": "data.plan", "operator": "equals", "value": "pro"}]}
                    ],
                }
            ),
        ),
    )
    for cid, audience, segment in (("all", "ALL", None), ("seg", "SEGMENT", "pro")):
        conn.execute(
            'INSERT INTO public.campaigns (id, name, subject, body, "from", "audienceType",'
            ' "segmentId", "projectId", "updatedAt") VALUES (%s, %s, \'s\', \'b\','
            " 'f@example.com', %s, %s, 'p', timezone('UTC', now()))",
            (cid, cid, audience, segment),
        )
    conn.execute("VACUUM ANALYZE public.contacts")


def time_start(conn: psycopg.Connection, campaign: str, reps: int) -> tuple[list[float], int]:
    times: list[float] = []
    size = 0
    for _ in range(reps):
        conn.execute(RESET, (campaign,))
        # No run and no dead snapshot rows left behind: nothing but the statement does I/O.
        conn.execute("DELETE FROM plunk_sql.campaign_runs")
        conn.execute("VACUUM plunk_sql.recipients")
        conn.execute("CHECKPOINT")
        t = time.perf_counter()
        conn.execute(START, (campaign,))  # autocommit: the statement and its commit
        times.append((time.perf_counter() - t) * 1000)
        row = conn.execute(
            "SELECT coalesce((SELECT total FROM plunk_sql.campaign_runs WHERE campaign_id = %s), 0)",
            (campaign,),
        ).fetchone()
        size = int(row[0]) if row else 0
    return times, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    cluster = start_cluster(fast_unsafe=False)  # fsync on: the figures are Plunk's real cost
    try:
        url = cluster.url()
        migrate(url, with_plunk_tables=True, schedule_sweep=False)
        with psycopg.connect(url, autocommit=True) as conn:
            for n in args.contacts:
                load(conn, n)
                for campaign in ("all", "seg"):
                    for mode in ("off", "on"):
                        conn.execute("SELECT plunk_sql.set_guard_mode(%s)", (mode,))
                        times, size = time_start(conn, campaign, args.reps)
                        print(
                            f"contacts={n:>9,} audience={campaign:<3} guard={mode:<3}"
                            f" statement median={statistics.median(times):9.1f} ms"
                            f" min={min(times):9.1f} ms snapshot={size:,}",
                            flush=True,
                        )
                        for failure in conn.execute(
                            "SELECT sqlstate, message FROM plunk_sql.guard_failures"
                        ):
                            print(f"  left to Plunk: {failure[1]} (SQLSTATE {failure[0]})")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
