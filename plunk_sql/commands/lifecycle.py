"""`plunk-sql pause|resume|cancel CAMPAIGN`: the lifecycle functions of sql/80_lifecycle.sql."""

from __future__ import annotations

import argparse

from plunk_sql.commands.common import EXIT_OK, client


def _call(args: argparse.Namespace, name: str) -> int:
    with client(args) as c:
        if name == "cancel":
            print(f"campaign {args.campaign}: {c.cancel(args.campaign)}")
        elif name == "pause":
            c.pause(args.campaign)
            print(f"campaign {args.campaign}: paused")
        else:
            c.resume(args.campaign)
            print(f"campaign {args.campaign}: resumed")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for command, help_text in (
        ("pause", "pause a SENDING campaign (claims return nothing)"),
        ("resume", "resume a paused campaign"),
        (
            "cancel",
            "cancel a SCHEDULED or SENDING campaign (CANCELLED, or DRAFT if nothing was sent)",
        ),
    ):
        p = sub.add_parser(command, help=help_text)
        p.add_argument("campaign", help="campaign id")
        p.set_defaults(func=lambda args, name=command: _call(args, name))
