"""`plunk-sql watch CAMPAIGN`: live progress (bar, rate, ETA) until the send finishes."""

from __future__ import annotations

import argparse
import sys
import time

from plunk_sql.commands.common import (
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    CommandFailed,
    client,
)
from plunk_sql.display import CLEAR_EOL, RateMeter, log_line, progress_line


def run(args: argparse.Namespace) -> int:
    tty = sys.stdout.isatty()
    meter = RateMeter()
    try:
        with client(args) as c:
            while True:
                p = c.progress(args.campaign)
                if p is None:
                    raise CommandFailed(
                        f"campaign {args.campaign} was not started by plunk_sql "
                        "(or does not exist)",
                        EXIT_NOT_FOUND,
                    )
                meter.add(p.settled)
                done = p.finished or p.status != "SENDING"
                if tty:
                    print(
                        "\r" + progress_line(p, meter) + CLEAR_EOL,
                        end="\n" if done else "",
                        flush=True,
                    )
                else:
                    eta = meter.eta(p.open)
                    log_line(
                        "progress",
                        campaign=p.campaign_id,
                        status=p.status,
                        paused=p.paused,
                        total=p.total,
                        settled=p.settled,
                        sent=p.sent,
                        failed=p.failed,
                        skipped=p.skipped,
                        rate=round(meter.rate, 1),
                        eta_seconds=None if eta is None else round(eta),
                    )
                if done or args.once:
                    return EXIT_OK
                time.sleep(args.interval)
    except KeyboardInterrupt:
        print()
        return EXIT_INTERRUPTED


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "watch",
        help="live progress of a send (bar, rate, ETA) until it finishes",
        description="Polls campaign_progress. A progress bar on a terminal, one JSON line per "
        "poll otherwise. Exit 0 when the campaign has no open recipients or left SENDING; "
        "3 when unknown; 130 on Ctrl-C. Polling needs no LISTEN, so it works through "
        "PgBouncer in transaction pooling mode.",
    )
    p.add_argument("campaign", metavar="CAMPAIGN", help="campaign id")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--once", action="store_true", help="print the current state and exit")
    p.set_defaults(func=run)
