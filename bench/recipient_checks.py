"""The cost of migration 0009's CHECK constraints on plunk_sql.recipients on the per-email
settle path (issue 14; not in `make test`).

    .venv/bin/python -m bench.recipient_checks [--emails N] [--rounds R] [--fsync]

Starts a throwaway cluster with two migrated databases, identical but for the four CHECK
constraints (dropped in one). Each round, in each database (order alternating, so drift in
the shared machine's load hits both alike): a campaign of N recipients is started, claimed in
batches of 500 and its emails inserted one statement per batch (claim and link: timed), then
settled the way Plunk's email worker does it, one autocommitted single-row
`UPDATE emails SET status = 'SENT'` per email (timed); then every settled row is rewritten in one
statement, five times (the constraints' own per-row cost). Prints each run and the medians.
fsync is off unless --fsync: the constraints cost CPU, not I/O, and a commit-bound run hides it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import psycopg

from bench import data
from plunk_sql.migrate import migrate
from plunk_sql.queries import query
from plunk_sql.testing.cluster import start_cluster

CHECKS = (
    "recipients_settled_at_iff_settled",
    "recipients_email_id_when_linked",
    "recipients_reason_iff_failed_or_skipped",
    "recipients_lease_when_claimed",
)
SETTLE = (
    "UPDATE public.emails SET status = 'SENT', \"sentAt\" = timezone('UTC', now()),"
    " \"updatedAt\" = timezone('UTC', now()) WHERE id = %s"
)


def prepare(url: str, n: int, round_no: int) -> tuple[str, list[str], float]:
    """A started campaign of about n recipients, all claimed and linked; returns its id, its email
    ids and the seconds claim + link took."""
    pid, cid = f"p{round_no}", f"c{round_no}"
    with psycopg.connect(url, autocommit=True) as conn:
        data.project(conn, pid)
        data.contacts(conn, pid, n * 20 // 19, events=False)  # 95% subscribed: about n
        data.campaign(conn, cid, pid)
        conn.execute("SELECT plunk_sql.start_campaign(%s)", (cid,))
        conn.execute("VACUUM ANALYZE public.emails")
        emails: list[str] = []
        t = time.perf_counter()
        while True:  # every recipient, so the last settle sets SENT
            rows = conn.execute(
                "SELECT contact_id FROM plunk_sql.claim_batch(%s, 500, '1 hour')", (cid,)
            ).fetchall()
            if not rows:
                break
            contacts = [str(r[0]) for r in rows]
            ids = [str(uuid.uuid4()) for _ in contacts]
            conn.execute(
                query("insert_emails"),
                {
                    "campaign_id": cid,
                    "project_id": pid,
                    "from_address": "news@example.com",
                    "ids": ids,
                    "contact_ids": contacts,
                    "subjects": ["s"] * len(ids),
                    "bodies": ["b"] * len(ids),
                },
            )
            emails += ids
        return cid, emails, time.perf_counter() - t


def settle(url: str, emails: list[str]) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        for email in emails:
            conn.execute(SETTLE, (email,), prepare=True)
        return time.perf_counter() - t


def rewrite(url: str, cid: str) -> float:
    """The constraints alone: the median of 5 one-statement rewrites of every settled row of
    the campaign (no trigger fires on recipients; each new row version is checked)."""
    times = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(5):
            t = time.perf_counter()
            conn.execute(
                "UPDATE plunk_sql.recipients SET settled_at = settled_at WHERE campaign_id = %s",
                (cid,),
            )
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fsync", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PLUNK_SQL_SCHEDULE_SWEEP", "0")
    cluster = start_cluster(fast_unsafe=not args.fsync)
    try:
        urls = {}
        for label in ("with", "without"):
            with psycopg.connect(cluster.url(), autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE checks_{label}")
            urls[label] = cluster.url(f"checks_{label}")
            migrate(urls[label], with_plunk_tables=True, schedule_sweep=False)
        with psycopg.connect(urls["without"], autocommit=True) as conn:
            for name in CHECKS:
                conn.execute(f"ALTER TABLE plunk_sql.recipients DROP CONSTRAINT {name}")
        results: dict[str, dict[str, list[float]]] = {
            k: {p: [] for p in ("settle", "link", "rewrite")} for k in urls
        }
        for r in range(args.rounds):
            order = ("with", "without") if r % 2 == 0 else ("without", "with")
            for label in order:
                cid, emails, link_s = prepare(urls[label], args.emails, r)
                settle_s = settle(urls[label], emails)
                with psycopg.connect(urls[label], autocommit=True) as conn:
                    (status,) = conn.execute(
                        "SELECT status::text FROM public.campaigns WHERE id = %s", (cid,)
                    ).fetchone() or ("?",)
                rewrite_s = rewrite(urls[label], cid)
                results[label]["rewrite"].append(rewrite_s)
                results[label]["settle"].append(settle_s)
                results[label]["link"].append(link_s)
                print(
                    f"round {r} {label:>7} constraints: settle {len(emails):,} single-row UPDATEs"
                    f" {settle_s:6.2f} s ({settle_s / len(emails) * 1e6:5.0f} us/email),"
                    f" claim+link {link_s:5.2f} s, rewrite {rewrite_s:5.3f} s, campaign {status}, load {os.getloadavg()[0]:.1f}"
                )
        med = {k: {p: statistics.median(v) for p, v in d.items()} for k, d in results.items()}
        for phase in ("settle", "link", "rewrite"):
            w, wo = med["with"][phase], med["without"][phase]
            print(
                f"median {phase}: with {w:.2f} s, without {wo:.2f} s, ratio {w / wo:.3f}"
                f" ({(w - wo) / args.emails * 1e6:+.1f} us/email)"
            )
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
