"""`plunk-sql worker`: the reference worker (plunk_sql.worker) from a shell.

Exit codes: 0 when the worker stopped cleanly (campaign done, nothing pending,
or SIGINT/SIGTERM after finishing claimed work); 1 when a thread failed (the
database went away, ...); 2 for bad arguments or without the `worker` extra
(python-liquid); 3 unknown campaign; 4 the campaign is not SENDING.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from datetime import timedelta
from typing import Any

import psycopg

from plunk_sql.api import Client, Progress
from plunk_sql.commands.common import (
    EXIT_ERROR,
    EXIT_OK,
    CommandFailed,
    UsageError,
    database_url,
    needs_extra,
)
from plunk_sql.display import CLEAR_EOL, RateMeter, log_line, progress_line
from plunk_sql.errors import PlunkSqlError


def run(args: argparse.Namespace) -> int:
    with needs_extra("worker"):
        from plunk_sql.worker import SmtpConfig, Worker, WorkerConfig

    url = database_url(args)
    try:
        smtp = SmtpConfig.from_url(
            args.smtp,
            starttls=True if args.starttls else None,
            username=args.smtp_user,
            password=os.environ.get("PLUNK_SQL_SMTP_PASSWORD"),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.concurrency < 1 or not 1 <= args.batch_size <= 10000:
        raise UsageError("--concurrency >= 1, --batch-size 1..10000")
    config = WorkerConfig(
        database_url=url,
        campaign_id=args.campaign,
        smtp=smtp,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        lease=timedelta(seconds=args.lease),
        retries=args.retries,
        backoff=args.backoff,
        unsubscribe_base=args.unsubscribe_base,
        wait=args.wait,
    )
    tty = sys.stdout.isatty() and not args.log
    worker = Worker(config, on_event=lambda event, **f: None if tty else log_line(event, **f))
    try:
        campaign = worker.load()
    except (PlunkSqlError, psycopg.Error):
        raise  # the CLI's error path
    except Exception as exc:  # a template that does not compile
        raise CommandFailed(f"cannot use campaign {args.campaign}: {exc}") from exc

    def on_signal(signum: int, _frame: object) -> None:
        worker.stop(emit=False)  # the loop below reports it

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not tty:
        log_line("start", campaign=campaign.id, concurrency=config.concurrency, smtp=smtp.host)
    meter = RateMeter()
    started = time.monotonic()
    worker.start()
    with Client(url) as client:
        last_log = 0.0
        reported_stop = False
        while worker.alive():
            worker.join(0.25 if tty else 1.0)
            if worker.stopping and not reported_stop:
                reported_stop = True
                if tty:
                    print("\nstopping: finishing claimed batches (no new claims)", flush=True)
                else:
                    log_line("stopping", campaign=campaign.id)
            p = client.progress(campaign.id)
            if p is None:
                continue
            meter.add(p.settled)
            if tty:
                print("\r" + progress_line(p, meter) + CLEAR_EOL, end="", flush=True)
            elif time.monotonic() - last_log >= args.log_every:
                last_log = time.monotonic()
                log_line("progress", campaign=campaign.id, **_counts(p), rate=round(meter.rate))
        if worker.stopping and not reported_stop and not tty:
            log_line("stopping", campaign=campaign.id)
        p = client.progress(campaign.id)
    s = worker.stats
    if tty:
        if p is not None:
            print("\r" + progress_line(p, meter) + CLEAR_EOL)
        print(
            f"worker: sent {s.sent}, failed {s.failed}, retried {s.retried} in "
            f"{time.monotonic() - started:.1f}s"
            + (" (stopped by signal)" if worker.stopping else "")
        )
    else:
        log_line(
            "exit",
            campaign=campaign.id,
            sent=s.sent,
            failed=s.failed,
            retried=s.retried,
            status=p.status if p else None,
            stopped=worker.stopping,
            seconds=round(time.monotonic() - started, 2),
        )
    for err in s.errors:
        print(f"plunk-sql worker: {err}", file=sys.stderr)
    return EXIT_ERROR if s.errors else EXIT_OK


def _counts(p: Progress) -> dict[str, Any]:
    return {
        "status": p.status,
        "total": p.total,
        "pending": p.pending,
        "claimed": p.claimed,
        "in_flight": p.in_flight,
        "sent": p.sent,
        "failed": p.failed,
        "skipped": p.skipped,
    }


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "worker",
        help="send a SENDING campaign over SMTP (reference worker)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--campaign", required=True, help="campaign id")
    p.add_argument(
        "--smtp",
        default=os.environ.get("PLUNK_SQL_SMTP_URL"),
        required="PLUNK_SQL_SMTP_URL" not in os.environ,
        help="smtp://[user:pass@]host:port[?starttls=1&verify=0] or smtps://... "
        "(default: $PLUNK_SQL_SMTP_URL; password also from $PLUNK_SQL_SMTP_PASSWORD)",
    )
    p.add_argument("--starttls", action="store_true", help="upgrade the connection with STARTTLS")
    p.add_argument("--smtp-user", help="SMTP AUTH user name")
    p.add_argument("--concurrency", type=int, default=4, help="threads, one SMTP connection each")
    p.add_argument("--batch-size", type=int, default=100, help="recipients per claim")
    p.add_argument("--lease", type=float, default=300, help="claim lease in seconds (default 300)")
    p.add_argument("--retries", type=int, default=3, help="retries of a 4xx reply (default 3)")
    p.add_argument("--backoff", type=float, default=0.5, help="first retry delay in seconds")
    p.add_argument(
        "--unsubscribe-base",
        default=os.environ.get("PLUNK_SQL_UNSUBSCRIBE_BASE", "http://localhost:3000/unsubscribe"),
        help="{{ unsubscribeUrl }} is this base + '/' + contact id",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="keep running until the campaign leaves SENDING (not just until nothing is pending)",
    )
    p.add_argument("--log", action="store_true", help="JSON log lines even on a terminal")
    p.add_argument("--log-every", type=float, default=5.0, help="seconds between progress lines")
    p.set_defaults(func=run)
