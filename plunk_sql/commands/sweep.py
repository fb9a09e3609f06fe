"""`plunk-sql sweep`: run plunk_sql.sweep() and the scheduled starts once, or in a loop
where pg_cron is missing.

    plunk-sql sweep                 one pass, prints what it did
    plunk-sql sweep --json          the same as JSON lines
    plunk-sql sweep --every 30s     loop (a service next to Plunk's API), printing what
                                    each pass did; Ctrl-C stops it
    --start-timeout DURATION        budget of each scheduled start (default: the
                                    start_timeout setting)

A pass is the sweep (one statement, one transaction), then up to `starts_per_run`
calls of plunk_sql.start_next_scheduled(), each its own transaction under
`SET LOCAL statement_timeout` (sql/72_scheduled_starts.sql): a slow start never
holds the sweep's commit, and a start over its budget is cancelled (57014),
recorded with a backoff, and the next call starts the next due campaign.

The loop's connection is named "plunk-sql sweep --every" (application_name),
which is how `plunk-sql doctor` knows the loop mode is active. A lost
connection (server restart) is retried with the same period.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

import psycopg

from plunk_sql.api import Client, SweepAction
from plunk_sql.commands.common import EXIT_OK, connect, one_line
from plunk_sql.cron import LOOP_APPLICATION_NAME
from plunk_sql.errors import PlunkSqlError, from_pg
from plunk_sql.queries import query

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """'30s', '1m', '500ms', '2h' or plain seconds -> seconds (> 0)."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 30s, 1m, 500ms)")
    return float(match.group(1)) * _UNIT[match.group(2)]


Row = tuple[str | None, str | None, int]


def start_scheduled(conn: psycopg.Connection[Any], timeout: float | None = None) -> list[Row]:
    """Start the due scheduled campaigns: up to starts_per_run calls of
    plunk_sql.start_next_scheduled(), each its own transaction under statement_timeout
    (timeout seconds, else the start_timeout setting); the rows they returned."""
    settings = conn.execute(query("start_settings")).fetchone()
    assert settings is not None
    ms = settings[0] if timeout is None else max(1, round(timeout * 1000))
    rows: list[Row] = []
    for _ in range(settings[1]):
        with conn.transaction():
            conn.execute(query("set_start_timeout"), {"ms": ms})
            got = conn.execute(query("start_next_scheduled")).fetchall()
        if not got:
            break
        rows.extend((r[0], r[1], int(r[2])) for r in got)
    return rows


def sweep_once(conn: psycopg.Connection[Any], timeout: float | None = None) -> list[Row]:
    """One sweep in its own transaction, then the scheduled starts; the rows they returned."""
    return _rows(Client(conn).sweep()) + start_scheduled(conn, timeout)


def _rows(actions: list[SweepAction]) -> list[Row]:
    return [(a.action, a.campaign_id, a.affected) for a in actions]


def _print(rows: list[Row], as_json: bool) -> None:
    for action, campaign_id, affected in rows:
        if as_json:
            print(json.dumps({"action": action, "campaign_id": campaign_id, "affected": affected}))
        else:
            print(f"{action:<18} {campaign_id}  {affected}")
    if not rows and not as_json:
        print("sweep: nothing to do")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    if args.every is None:
        with connect(args) as once:
            rows = sweep_once(once, args.start_timeout)
        _print(rows, args.json)
        return EXIT_OK

    # Fail fast, then keep going: until one pass succeeded, a failure ends the loop
    # through the CLI's error path (exit 1: a wrong URL, password or grant does not get
    # better by retrying, and a service manager shows it at once). After that, each
    # failure is one stderr line and the next pass retries (a lost connection is reopened).
    runs = 0
    swept_once = False
    conn: psycopg.Connection[Any] | None = connect(args, application_name=LOOP_APPLICATION_NAME)
    try:
        while args.count is None or runs < args.count:
            started = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = connect(args, application_name=LOOP_APPLICATION_NAME)
                rows = sweep_once(conn, args.start_timeout)
                swept_once = True
                if rows:
                    _print(rows, args.json)
            except (PlunkSqlError, psycopg.Error) as exc:
                if not swept_once:
                    raise
                mapped = from_pg(exc) if isinstance(exc, psycopg.Error) else exc
                if isinstance(exc, psycopg.OperationalError):
                    print(f"plunk-sql sweep: {one_line(mapped)}; retrying", file=sys.stderr)
                    if conn is not None:
                        conn.close()
                    conn = None
                else:
                    print(f"plunk-sql sweep: {one_line(mapped)}", file=sys.stderr)
            runs += 1
            if args.count is not None and runs >= args.count:
                break
            time.sleep(max(0.0, args.every - (time.monotonic() - started)))
    except KeyboardInterrupt:
        pass
    finally:
        if conn is not None:
            conn.close()
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "sweep", help="run plunk_sql.sweep() and the scheduled starts once, or every N seconds"
    )
    p.add_argument(
        "--every",
        type=parse_duration,
        metavar="DURATION",
        help="loop: sweep every DURATION (30s, 1m, 500ms) until interrupted",
    )
    p.add_argument(
        "--start-timeout",
        type=parse_duration,
        metavar="DURATION",
        help="budget of each scheduled start (default: the start_timeout setting)",
    )
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)  # stop after N loops (tests)
    p.add_argument("--json", action="store_true", help="print one JSON object per action")
    p.set_defaults(func=run)
