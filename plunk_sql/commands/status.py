"""`plunk-sql status [CAMPAIGN]`: the campaign_progress view as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from plunk_sql.api import Client, Progress
from plunk_sql.commands.common import EXIT_NOT_FOUND, EXIT_OK, database_url, fail
from plunk_sql.display import table
from plunk_sql.errors import PlunkSqlError

COLUMNS = ["campaign_id", "status", "total", "pending", "claimed", "in_flight", "sent", "failed"]
COLUMNS += ["skipped"]


def _row(p: Progress) -> list[object]:
    status = p.status + (" (paused)" if p.paused else "")
    return [p.campaign_id, status, *(getattr(p, c) for c in COLUMNS[2:])]


def run(args: argparse.Namespace) -> int:
    try:
        with Client(database_url(args)) as client:
            if args.campaign is None:
                rows = client.all_progress()
                if args.json:
                    print(json.dumps([p.as_dict() for p in rows]))
                elif rows:
                    print(table(COLUMNS, [_row(p) for p in rows]))
                else:
                    print("no campaigns started by plunk_sql yet")
                return EXIT_OK
            p = client.progress(args.campaign)
            if p is None:
                print(
                    f"plunk-sql status: campaign {args.campaign} was not started by plunk_sql "
                    "(or does not exist)",
                    file=sys.stderr,
                )
                return EXIT_NOT_FOUND
            outcomes = client.outcomes(args.campaign)
    except PlunkSqlError as exc:
        return fail("status", exc)
    if args.json:
        out = p.as_dict() | {
            "outcomes": [
                {"state": o.state, "reason": o.reason, "recipients": o.recipients} for o in outcomes
            ]
        }
        print(json.dumps(out))
    else:
        print(table(COLUMNS, [_row(p)]))
        print()
        print(
            table(
                ["state", "reason", "recipients"],
                [(o.state, o.reason or "", o.recipients) for o in outcomes],
            )
        )
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="progress of campaigns sent through plunk_sql",
        description="Without CAMPAIGN: one row per campaign (newest first). With CAMPAIGN: its "
        "progress and recipient outcomes (skipped/failed by reason). Exit 3: not started by "
        "plunk_sql or unknown.",
    )
    p.add_argument("campaign", metavar="CAMPAIGN", nargs="?", help="campaign id")
    p.add_argument("--json", action="store_true", help="JSON (a list without CAMPAIGN)")
    p.set_defaults(func=run)
