"""`plunk-sql pause|resume|cancel CAMPAIGN`: the lifecycle functions of sql/80_lifecycle.sql."""

from __future__ import annotations

import argparse

import psycopg

from plunk_sql.commands.common import EXIT_OK, database_url, fail
from plunk_sql.errors import from_pg
from plunk_sql.queries import query


def _call(args: argparse.Namespace, name: str) -> int:
    try:
        with psycopg.connect(database_url(args), autocommit=True) as conn:
            row = conn.execute(query(name), {"campaign_id": args.campaign}).fetchone()
    except psycopg.Error as exc:
        return fail(args.command, from_pg(exc))
    if name == "cancel_campaign":
        print(f"campaign {args.campaign}: {row[0]}")
    else:
        print(f"campaign {args.campaign}: {'paused' if name == 'pause_campaign' else 'resumed'}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    for command, name, help_text in (
        ("pause", "pause_campaign", "pause a SENDING campaign (claims return nothing)"),
        ("resume", "resume_campaign", "resume a paused campaign"),
        (
            "cancel",
            "cancel_campaign",
            "cancel a SCHEDULED or SENDING campaign (CANCELLED, or DRAFT if nothing was sent)",
        ),
    ):
        p = sub.add_parser(command, help=help_text)
        p.add_argument("campaign", help="campaign id")
        p.set_defaults(func=lambda args, name=name: _call(args, name))
