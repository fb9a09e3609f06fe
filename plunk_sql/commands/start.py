"""`plunk-sql start CAMPAIGN`: snapshot the audience and start sending."""

from __future__ import annotations

import argparse
import json

from plunk_sql.commands.common import EXIT_OK, client


def run(args: argparse.Namespace) -> int:
    with client(args) as c:
        if args.preview:
            n = c.preview(args.campaign)
            out: dict[str, object] = {"campaign_id": args.campaign, "recipients": n}
            text = f"campaign {args.campaign}: a start now would snapshot {n} recipients"
        else:
            n = c.start(args.campaign)
            p = c.progress(args.campaign)
            status = p.status if p else None
            out = {"campaign_id": args.campaign, "total": n, "status": status}
            text = f"campaign {args.campaign}: {status}, {n} recipients in the snapshot"
    print(json.dumps(out) if args.json else text)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "start",
        help="snapshot a DRAFT/SCHEDULED campaign's audience and set it SENDING",
        description="Calls plunk_sql.start_campaign (idempotent: starting a campaign plunk_sql "
        "already started prints the same count, exit 0). Exit 3: unknown campaign; 4: not "
        "DRAFT/SCHEDULED and not started by plunk_sql; 1: invalid audience.",
    )
    p.add_argument("campaign", metavar="CAMPAIGN", help="campaign id")
    p.add_argument(
        "--preview", action="store_true", help="only count the audience (preview_audience)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
