"""`plunk-sql status [CAMPAIGN]`: the campaign_progress view as a table or JSON."""

from __future__ import annotations

import argparse
import json

from plunk_sql.api import Progress
from plunk_sql.commands.common import EXIT_NOT_FOUND, EXIT_OK, CommandFailed, client
from plunk_sql.display import table

COLUMNS = ["campaign_id", "status", "total", "pending", "claimed", "in_flight", "sent", "failed"]
COLUMNS += ["skipped"]


def _row(p: Progress) -> list[object]:
    status = p.status + (" (paused)" if p.paused else "")
    return [p.campaign_id, status, *(getattr(p, c) for c in COLUMNS[2:])]


def run(args: argparse.Namespace) -> int:
    with client(args) as c:
        if args.campaign is None:
            rows = c.all_progress()
            if args.json:
                print(json.dumps([p.as_dict() for p in rows]))
            elif rows:
                print(table(COLUMNS, [_row(p) for p in rows]))
            else:
                print("no campaigns started by plunk_sql yet")
            return EXIT_OK
        p = c.progress(args.campaign)
        if p is None:
            raise CommandFailed(
                f"campaign {args.campaign} was not started by plunk_sql (or does not exist)",
                EXIT_NOT_FOUND,
            )
        outcomes = c.outcomes(args.campaign)
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


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
