"""`plunk-sql start CAMPAIGN`: snapshot the audience and start sending."""

from __future__ import annotations

import argparse
import json

from plunk_sql.api import Client
from plunk_sql.commands.common import EXIT_OK, database_url, fail
from plunk_sql.errors import PlunkSqlError


def run(args: argparse.Namespace) -> int:
    try:
        with Client(database_url(args)) as client:
            if args.preview:
                n = client.preview(args.campaign)
                out = {"campaign_id": args.campaign, "recipients": n}
                text = f"campaign {args.campaign}: a start now would snapshot {n} recipients"
            else:
                n = client.start(args.campaign)
                p = client.progress(args.campaign)
                status = p.status if p else None
                out = {"campaign_id": args.campaign, "total": n, "status": status}
                text = f"campaign {args.campaign}: {status}, {n} recipients in the snapshot"
    except PlunkSqlError as exc:
        return fail("start", exc)
    print(json.dumps(out) if args.json else text)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "start",
        help="snapshot a DRAFT/SCHEDULED campaign's audience and set it SENDING",
        description="Calls plunk_sql.start_campaign (idempotent: starting again prints the same "
        "count). Exit 3: unknown campaign; 4: not DRAFT/SCHEDULED; 1: invalid audience.",
    )
    p.add_argument("campaign", metavar="CAMPAIGN", help="campaign id")
    p.add_argument(
        "--preview", action="store_true", help="only count the audience (preview_audience)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
