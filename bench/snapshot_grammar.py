"""Snapshot rate of the audience compiler on 1,000,000 contacts (not part of `make test`).

    .venv/bin/python bench/snapshot_grammar.py [--contacts N]

Starts a throwaway cluster, loads Plunk's tables and the toolkit, generates contacts, events and
emails set-based (generate_series), then times plunk_sql.start_campaign for campaigns whose
audience mixes data, event and email filters. Prints contacts scanned per second, the snapshot
size, and the plan of the audience query.
"""

from __future__ import annotations

import argparse
import json
import time

import psycopg
from psycopg.types.json import Jsonb

from bench.data import migrated_database

CONDITIONS = {
    "AND: data + event + email": {
        "logic": "AND",
        "groups": [
            {
                "filters": [
                    {"field": "data.plan", "operator": "equals", "value": "pro"},
                    {"field": "data.age", "operator": "greaterThanOrEqual", "value": 30},
                    {
                        "field": "event.signup",
                        "operator": "triggeredWithin",
                        "value": 90,
                        "unit": "days",
                    },
                    {
                        "field": "email.opened",
                        "operator": "notTriggeredWithin",
                        "value": 7,
                        "unit": "days",
                    },
                ]
            }
        ],
    },
    "OR of groups: data | event | email": {
        "logic": "OR",
        "groups": [
            {"filters": [{"field": "data.plan", "operator": "equals", "value": "enterprise"}]},
            {
                "filters": [
                    {"field": "event.purchase", "operator": "triggered"},
                    {"field": "data.age", "operator": "lessThan", "value": 25},
                ]
            },
            {
                "filters": [
                    {
                        "field": "email.clicked",
                        "operator": "triggeredWithin",
                        "value": 30,
                        "unit": "days",
                    }
                ]
            },
        ],
    },
}


def load(conn: psycopg.Connection, n: int) -> None:
    t = time.monotonic()
    conn.execute(
        'INSERT INTO public.projects (id, name, public, secret, "updatedAt")'
        " VALUES ('p', 'bench', 'pub', 'sec', timezone('UTC', now()))"
    )
    conn.execute(
        'INSERT INTO public.contacts (id, email, data, subscribed, "projectId", "updatedAt")'
        " SELECT 'c' || lpad(i::text, 8, '0'), 'user' || i || '@example.com',"
        " jsonb_build_object('plan', (ARRAY['free','pro','pro','enterprise'])[1 + i %% 4],"
        "   'age', 18 + i %% 60, 'signup', to_char(date '2026-01-01' + (i %% 300), 'YYYY-MM-DD')),"
        " i %% 10 <> 0, 'p', timezone('UTC', now())"
        " FROM generate_series(1, %s) AS i",
        (n,),
    )
    # ~0.8 events per contact: signups spread over 200 days, purchases for every 5th contact.
    conn.execute(
        'INSERT INTO public.events (id, name, data, "projectId", "contactId", "createdAt")'
        " SELECT 'e' || i, 'signup', '{}', 'p', 'c' || lpad(i::text, 8, '0'),"
        " timezone('UTC', now()) - (i %% 200) * interval '1 day'"
        " FROM generate_series(1, %s) AS i WHERE i %% 5 <> 0",
        (n,),
    )
    conn.execute(
        'INSERT INTO public.events (id, name, data, "projectId", "contactId", "createdAt")'
        " SELECT 'ep' || i, 'purchase', '{}', 'p', 'c' || lpad(i::text, 8, '0'),"
        " timezone('UTC', now()) - (i %% 50) * interval '1 day'"
        " FROM generate_series(1, %s) AS i WHERE i %% 5 = 0",
        (n,),
    )
    # Half the contacts have an email; a third of those opened it, a tenth clicked.
    conn.execute(
        'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType", status,'
        ' "projectId", "sentAt", "openedAt", "clickedAt", "updatedAt")'
        " SELECT 'm' || i, 'c' || lpad(i::text, 8, '0'), 's', 'b', 'f@example.com',"
        " 'TRANSACTIONAL', 'SENT', 'p', timezone('UTC', now()) - (i %% 40) * interval '1 day',"
        " CASE WHEN i %% 3 = 0 THEN timezone('UTC', now()) - (i %% 20) * interval '1 day' END,"
        " CASE WHEN i %% 10 = 0 THEN timezone('UTC', now()) - (i %% 60) * interval '1 day' END,"
        " timezone('UTC', now())"
        " FROM generate_series(1, %s) AS i WHERE i %% 2 = 0",
        (n,),
    )
    conn.execute("VACUUM ANALYZE")
    print(f"loaded {n:,} contacts (+events, emails) in {time.monotonic() - t:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contacts", type=int, default=1_000_000)
    args = ap.parse_args()
    with (
        migrated_database(work_mem="64MB", maintenance_work_mem="256MB") as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        load(conn, args.contacts)
        for i, (label, cond) in enumerate(CONDITIONS.items()):
            cid = f"camp{i}"
            conn.execute(
                'INSERT INTO public.campaigns (id, name, subject, body, "from",'
                ' "audienceType", "audienceCondition", "projectId", "updatedAt")'
                " VALUES (%s, 'c', 's', 'b', 'f@example.com', 'FILTERED', %s, 'p',"
                " timezone('UTC', now()))",
                (cid, Jsonb(cond)),
            )
            pred = conn.execute(
                "SELECT plunk_sql.audience_predicate(c) FROM public.campaigns AS c WHERE c.id = %s",
                (cid,),
            ).fetchone()[0]
            plan = conn.execute(
                f"EXPLAIN SELECT c.id FROM public.contacts AS c WHERE {pred}"
            ).fetchall()
            t = time.monotonic()
            total = conn.execute("SELECT plunk_sql.start_campaign(%s)", (cid,)).fetchone()[0]
            elapsed = time.monotonic() - t
            print(f"\n== {label}")
            print(json.dumps(cond))
            print(
                f"start_campaign: {elapsed:.2f} s, snapshot {total:,} recipients,"
                f" {args.contacts / elapsed:,.0f} contacts/s scanned,"
                f" {total / elapsed:,.0f} recipients/s written"
            )
            print("plan:")
            for (line,) in plan:
                print("   ", line)


if __name__ == "__main__":
    main()
