"""The cost of the recipient state machine's checks on the per-email settle path (issue 14;
not in `make test`): migration 0009's CHECK constraints, and the transition trigger that was
measured and rejected (sql/12_recipient_states.sql says why).

    .venv/bin/python -m bench.recipient_checks [--emails N] [--rounds R] [--micro M] [--chunk C] [--fsync]

Starts a throwaway cluster with three migrated databases: `trigger` (as installed, plus a row
trigger on recipients whose WHEN clause, generated from plunk_sql.recipient_transitions(),
lets allowed moves through without entering PL/pgSQL), `checks` (as installed), `none` (the
CHECK constraints dropped), `one` (the same rules as a single CHECK constraint). Each round, in each database (order rotating, so drift in the
shared machine's load hits all alike): a campaign of about N recipients is started; its pending
rows are moved pending -> claimed -> pending by hand five times in one statement each (`moves`);
then claimed in batches of 500 with one emails INSERT per batch (`link`), then settled the way
Plunk's email worker does, one autocommitted single-row `UPDATE emails SET status = 'SENT'` per
email (`settle`). Then, the sharpest figures on a busy machine: `interleaved moves` (the moves
pair over a fresh campaign, in each database in turn, M times) and `interleaved settles` (a
fresh campaign's single-row settles, C at a time in each database in turn). Prints each run and
the medians. fsync is off unless --fsync: the checks cost CPU, not I/O, and a commit-bound run
hides it.
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
# The rejected enforcement: refuse any move the one definition does not allow.
TRANSITION_TRIGGER = """
CREATE FUNCTION plunk_sql.bench_refuse_transition() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state', SCHEMA = 'plunk_sql',
        MESSAGE = pg_catalog.format('recipient may not move from %s to %s', OLD.state, NEW.state);
END
$f$;
DO $d$
DECLARE
    v_pairs text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format(
               '(%L::plunk_sql.recipient_state, %L::plunk_sql.recipient_state)', d.f, d.t), ', ')
    INTO v_pairs
    FROM (SELECT DISTINCT t.from_state AS f, t.to_state AS t
          FROM plunk_sql.recipient_transitions() AS t) AS d;
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER bench_recipients_transition BEFORE UPDATE OF state ON plunk_sql.recipients'
        ' FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state'
        ' AND (OLD.state, NEW.state) NOT IN (%s))'
        ' EXECUTE FUNCTION plunk_sql.bench_refuse_transition()', v_pairs);
END
$d$;
"""
SETUP = {
    "trigger": [TRANSITION_TRIGGER],
    "checks": [],
    # The same rules as one CHECK constraint (each constraint costs a fixed set-up per statement).
    "one": [
        *(f"ALTER TABLE plunk_sql.recipients DROP CONSTRAINT {name}" for name in CHECKS),
        "ALTER TABLE plunk_sql.recipients ADD CONSTRAINT recipients_state_columns CHECK ("
        " (state IN ('sent', 'failed', 'skipped')) = (settled_at IS NOT NULL)"
        " AND (state IN ('failed', 'skipped')) = (reason IS NOT NULL)"
        " AND CASE WHEN state = 'pending' THEN email_id IS NULL AND lease_expires_at IS NULL"
        "          WHEN state = 'claimed' THEN email_id IS NULL AND lease_expires_at IS NOT NULL"
        "          WHEN state = 'skipped' THEN true"
        "          ELSE email_id IS NOT NULL END)",
    ],
    "none": [f"ALTER TABLE plunk_sql.recipients DROP CONSTRAINT {name}" for name in CHECKS],
    "checks_again": [],  # an A/A control: what two identical databases differ by
}
PHASES = ("settle", "link", "moves")
SETTLE = (
    "UPDATE public.emails SET status = 'SENT', \"sentAt\" = timezone('UTC', now()),"
    " \"updatedAt\" = timezone('UTC', now()) WHERE id = %s"
)


def moves(conn: psycopg.Connection, cid: str) -> tuple[float, int]:
    """Seconds for 5 x (pending -> claimed, claimed -> pending) of every row, and the rows."""
    t = time.perf_counter()
    rows = 0
    for _ in range(5):
        rows += conn.execute(
            "UPDATE plunk_sql.recipients SET state = 'claimed', lease_expires_at = now()"
            " WHERE campaign_id = %s AND state = 'pending'",
            (cid,),
        ).rowcount
        rows += conn.execute(
            "UPDATE plunk_sql.recipients SET state = 'pending', lease_expires_at = NULL"
            " WHERE campaign_id = %s AND state = 'claimed'",
            (cid,),
        ).rowcount
    return time.perf_counter() - t, rows


def prepare(url: str, n: int, round_no: int) -> tuple[str, list[str], dict[str, float]]:
    """A started campaign of about n recipients, all claimed and linked: its id, its email
    ids, and the seconds of the moves and link phases."""
    pid, cid = f"p{round_no}", f"c{round_no}"
    with psycopg.connect(url, autocommit=True) as conn:
        data.project(conn, pid)
        data.contacts(conn, pid, n * 20 // 19, events=False)  # 95% subscribed: about n
        data.campaign(conn, cid, pid)
        conn.execute("SELECT plunk_sql.start_campaign(%s)", (cid,))
        conn.execute("VACUUM ANALYZE public.emails")
        moves_s, _ = moves(conn, cid)
        conn.execute("VACUUM plunk_sql.recipients")
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
        return cid, emails, {"moves": moves_s, "link": time.perf_counter() - t}


def settle(url: str, emails: list[str]) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        for email in emails:
            conn.execute(SETTLE, (email,), prepare=True)
        return time.perf_counter() - t


def interleaved_moves(urls: dict[str, str], n: int, reps: int) -> dict[str, list[float]]:
    """The moves alone, interleaved across the databases one short statement pair at a time
    (drift in the machine's load hits every variant alike): per repetition, every pending row
    of a fresh campaign of about n goes pending -> claimed -> pending, in each database in
    turn. Returns the seconds per repetition."""
    conns = {k: psycopg.connect(u, autocommit=True) for k, u in urls.items()}
    try:
        for conn in conns.values():
            data.project(conn, "pm")
            data.contacts(conn, "pm", n * 20 // 19, events=False)
            data.campaign(conn, "cm", "pm")
            conn.execute("SELECT plunk_sql.start_campaign('cm')")
        out: dict[str, list[float]] = {k: [] for k in conns}
        labels = list(conns)
        for r in range(reps):
            for k in labels[r % len(labels) :] + labels[: r % len(labels)]:
                conn = conns[k]
                t = time.perf_counter()
                conn.execute(
                    "UPDATE plunk_sql.recipients SET state = 'claimed', lease_expires_at = now()"
                    " WHERE campaign_id = 'cm' AND state = 'pending'"
                )
                conn.execute(
                    "UPDATE plunk_sql.recipients SET state = 'pending', lease_expires_at = NULL"
                    " WHERE campaign_id = 'cm' AND state = 'claimed'"
                )
                out[k].append(time.perf_counter() - t)
                if r % 5 == 4:
                    conn.execute("VACUUM plunk_sql.recipients")
        return out
    finally:
        for conn in conns.values():
            conn.close()


def interleaved_settles(urls: dict[str, str], n: int, chunk: int) -> dict[str, list[float]]:
    """Single-row settles interleaved across the databases, chunk emails at a time in each in
    turn: the per-email figure with the machine's drift cancelled. Seconds per chunk."""
    prepared = {k: prepare(u, n, 100)[1] for k, u in urls.items()}
    conns = {k: psycopg.connect(u, autocommit=True) for k, u in urls.items()}
    try:
        out: dict[str, list[float]] = {k: [] for k in conns}
        labels = list(conns)
        steps = min(len(e) for e in prepared.values()) // chunk
        for r in range(steps):
            for k in labels[r % len(labels) :] + labels[: r % len(labels)]:
                emails = prepared[k][r * chunk : (r + 1) * chunk]
                t = time.perf_counter()
                for email in emails:
                    conns[k].execute(SETTLE, (email,), prepare=True)
                out[k].append(time.perf_counter() - t)
        return out
    finally:
        for conn in conns.values():
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fsync", action="store_true")
    parser.add_argument("--micro", type=int, default=30, help="interleaved moves repetitions")
    parser.add_argument("--chunk", type=int, default=500, help="interleaved settles per turn")
    parser.add_argument(
        "--variants", default="trigger,checks,one,none", help="of " + ",".join(SETUP)
    )
    args = parser.parse_args()
    os.environ.setdefault("PLUNK_SQL_SCHEDULE_SWEEP", "0")
    cluster = start_cluster(fast_unsafe=not args.fsync)
    try:
        urls = {}
        for label in args.variants.split(","):
            statements = SETUP[label]
            with psycopg.connect(cluster.url(), autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE checks_{label}")
            urls[label] = cluster.url(f"checks_{label}")
            migrate(urls[label], with_plunk_tables=True, schedule_sweep=False)
            with psycopg.connect(urls[label], autocommit=True) as conn:
                for statement in statements:
                    conn.execute(statement)
        results: dict[str, dict[str, list[float]]] = {k: {p: [] for p in PHASES} for k in urls}
        labels = list(urls)
        for r in range(args.rounds):
            for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
                cid, emails, timed = prepare(urls[label], args.emails, r)
                timed["settle"] = settle(urls[label], emails)
                with psycopg.connect(urls[label], autocommit=True) as conn:
                    row = conn.execute(
                        "SELECT status::text FROM public.campaigns WHERE id = %s", (cid,)
                    ).fetchone()
                for phase in PHASES:
                    results[label][phase].append(timed[phase])
                print(
                    f"round {r} {label:>6}: settle {len(emails):,} single-row UPDATEs"
                    f" {timed['settle']:6.2f} s ({timed['settle'] / len(emails) * 1e6:4.0f} us/email),"
                    f" link {timed['link']:5.2f} s, moves {timed['moves']:5.3f} s,"
                    f" campaign {row[0] if row else '?'}, load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        if args.micro:
            for k, times in interleaved_moves(urls, args.emails, args.micro).items():
                results[k]["interleaved moves"] = times
        if args.chunk:
            for k, times in interleaved_settles(urls, args.emails, args.chunk).items():
                results[k]["interleaved settles"] = times
        phases = [
            p
            for p in (*PHASES, "interleaved moves", "interleaved settles")
            if results["none"].get(p)
        ]
        med = {k: {p: statistics.median(v) for p, v in d.items() if v} for k, d in results.items()}
        per_row = {
            "settle": args.emails,
            "link": args.emails,
            "moves": 10 * args.emails,
            "interleaved moves": 2 * args.emails,
            "interleaved settles": args.chunk,
        }
        for phase in phases:
            base = med["none"][phase]
            cells = ", ".join(
                f"{k} {med[k][phase]:.3f} s (x{med[k][phase] / base:.3f},"
                f" {(med[k][phase] - base) / per_row[phase] * 1e6:+.2f} us/row)"
                for k in labels
            )
            print(f"median {phase}: {cells}")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
