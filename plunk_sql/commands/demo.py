"""`plunk-sql demo`: a whole campaign end to end (see plunk_sql.demo)."""

from __future__ import annotations

import argparse

from plunk_sql import demo


def run(args: argparse.Namespace) -> int:
    return demo.run_demo(args.contacts, args.workers, args.batch_size, args.database_url)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="send a campaign end to end on a throwaway database and reconcile it",
        description=demo.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_arguments(p)
    p.set_defaults(func=run)
