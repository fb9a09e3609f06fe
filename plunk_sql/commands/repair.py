"""`plunk-sql repair`: finish campaigns stuck SENDING from before plunk_sql (no snapshot).

    plunk-sql repair CAMPAIGN             dry run: what repair_campaign would do
    plunk-sql repair CAMPAIGN --apply     do it
    plunk-sql repair --all-stuck          dry run over every legacy stuck campaign
    plunk-sql repair --all-stuck --apply  repair each (one transaction each); refusals are listed

Exit codes as the other commands: 3 when the campaign does not exist, 4 when one was refused
(open emails, not SENDING, started by plunk_sql), 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from plunk_sql.api import Client
from plunk_sql.commands.common import (
    EXIT_ILLEGAL_STATE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    UsageError,
    client,
    exit_code,
    one_line,
)
from plunk_sql.errors import PlunkSqlError


def preview(c: Client, campaign_id: str) -> tuple[int, str]:
    """(EXIT_OK or the refusal's exit code, what repair_campaign would do or why it would
    refuse), read-only."""
    row = c.repair_preview(campaign_id)
    if row is None:
        return EXIT_NOT_FOUND, f"campaign {campaign_id} does not exist"
    if row["toolkit"]:
        return (
            EXIT_ILLEGAL_STATE,
            f"campaign {campaign_id} was started by plunk_sql: it is not repaired by hand",
        )
    if row["status"] != "SENDING":
        return (
            EXIT_ILLEGAL_STATE,
            f"campaign {campaign_id} is {row['status']}: only SENDING can be repaired",
        )
    if row["open"]:
        return EXIT_ILLEGAL_STATE, (
            f"campaign {campaign_id} still has {row['open']} open emails (PENDING or SENDING)"
        )
    return EXIT_OK, (
        f"campaign {campaign_id}: SENDING -> SENT, totalRecipients {row['total_recipients']} -> "
        f"{row['created']}, sentCount {row['sent_count']} -> {row['sent']}"
    )


def run(args: argparse.Namespace) -> int:
    if bool(args.campaign) == bool(args.all_stuck):
        raise UsageError("give a CAMPAIGN id or --all-stuck")
    code = EXIT_OK  # the highest refusal code seen
    with client(args) as c:
        if args.all_stuck:
            ids = c.legacy_stuck_campaigns()
            if not ids:
                print("no legacy campaign is stuck")
        else:
            ids = [args.campaign]
        for campaign_id in ids:
            refusal, text = preview(c, campaign_id)
            if not args.apply:
                print(f"{'would refuse' if refusal else 'would repair'}: {text}")
                code = max(code, refusal)
                continue
            try:
                c.repair(campaign_id)
                print(f"repaired: {text}")
            except PlunkSqlError as exc:
                # One refusal among several: say so and go on with the others.
                print(f"plunk-sql repair: refused: {one_line(exc)}", file=sys.stderr)
                code = max(code, exit_code(exc))
        if not args.apply and ids:
            print("dry run: nothing changed (add --apply)")
    return code


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "repair", help="finish legacy campaigns stuck SENDING without a snapshot (dry run)"
    )
    p.add_argument("campaign", nargs="?", help="campaign id")
    p.add_argument(
        "--all-stuck",
        action="store_true",
        help="every legacy campaign in plunk_sql.stuck_campaigns",
    )
    p.add_argument("--apply", action="store_true", help="repair (default: dry run)")
    p.set_defaults(func=run)
