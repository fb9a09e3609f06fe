"""`plunk-sql doctor`: is the toolkit installed and is anything stuck?

Checks: the emails triggers are installed and enabled; migrations and
versions; what runs the sweep (pg_cron job and its last run, or a
`plunk-sql sweep --every` loop, or nothing) and when it last ran; settings;
plunk_sql.stuck_campaigns. Exit code 0 when all is well, 1 when a trigger is
missing, no sweep is scheduled or running, or a campaign is stuck.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import psycopg
from psycopg.rows import dict_row

from plunk_sql import __version__
from plunk_sql.commands.common import EXIT_ERROR, EXIT_OK, database_url
from plunk_sql.cron import cron_status
from plunk_sql.queries import query

TRIGGERS = (
    "plunk_sql_emails_after_delete",
    "plunk_sql_emails_after_insert",
    "plunk_sql_emails_after_update",
)


def diagnose(conn: psycopg.Connection) -> dict[str, Any]:
    """Everything doctor reports, as a dict (also `--json`). `problems` lists what is wrong."""
    report: dict[str, Any] = {"version": __version__, "problems": []}
    problems: list[str] = report["problems"]
    with conn.cursor(row_factory=dict_row) as cur:
        installed = cur.execute("SELECT to_regnamespace('plunk_sql') IS NOT NULL AS ok").fetchone()
        if not installed["ok"]:
            problems.append("plunk_sql is not installed: run plunk-sql migrate")
            return report
        versions = cur.execute(query("doctor_versions")).fetchone()
        report["server_version"] = versions["server_version"]
        report["migrations"] = (versions["migrations"] or "").split(",")
        triggers = {r["name"]: r["enabled"] for r in cur.execute(query("doctor_triggers"))}
        report["triggers"] = {name: triggers.get(name) for name in TRIGGERS}
        for name in TRIGGERS:
            if name not in triggers:
                problems.append(
                    f"trigger {name} on public.emails is missing: run plunk-sql migrate"
                )
            elif not triggers[name]:
                problems.append(f"trigger {name} on public.emails is disabled")
        try:
            report["settings"] = {
                r["key"]: r["value"] for r in cur.execute(query("settings")).fetchall()
            }
            report["stuck_campaigns"] = cur.execute(query("stuck_campaigns")).fetchall()
            report["guard"] = cur.execute(query("guard_summary")).fetchone()  # guard mode
            problems.extend(report["guard"]["left_sending"])
        except psycopg.Error as exc:
            problems.append(f"cannot read settings / stuck_campaigns: {exc}")
            report["stuck_campaigns"] = []
    sweep = cron_status(conn)
    report["sweep"] = sweep
    if sweep["mode"] == "none":
        problems.append(
            "no sweep is scheduled or running: plunk-sql migrate (pg_cron) "
            "or plunk-sql sweep --every 30s"
        )
    if sweep["error"]:
        problems.append(sweep["error"])
    last = sweep.get("last_run")
    if last and last["status"] == "failed":
        problems.append(f"the last pg_cron sweep run failed: {last['return_message']}")
    for row in report["stuck_campaigns"]:
        problems.append(f"campaign {row['campaign_id']} stuck: {row['reason']} ({row['hint']})")
    return report


def _text(report: dict[str, Any]) -> str:
    lines = [f"plunk-sql {report['version']}"]
    if "server_version" in report:
        lines.append(f"PostgreSQL {report['server_version']}")
        lines.append(f"migrations: {', '.join(report['migrations'])}")
        ok = all(report["triggers"].values())
        lines.append(f"emails triggers: {'installed' if ok else 'MISSING or disabled'}")
        sweep = report["sweep"]
        lines.append(f"sweep mode: {sweep['mode']}")
        if sweep["pg_cron_loaded"]:
            ext = sweep["extension_version"] or "extension not created"
            lines.append(f"  pg_cron: database {sweep['cron_database']!r}, {ext}")
        if sweep["job"]:
            job = sweep["job"]
            lines.append(
                f"  job {job['jobname']!r} ({job['schedule']}) "
                f"{'active' if job['active'] else 'INACTIVE'}"
            )
        if sweep["last_run"]:
            run = sweep["last_run"]
            lines.append(f"  last cron run: {run['status']} at {run['start_time']}")
        if sweep["loop_sessions"]:
            lines.append(f"  sweep loops connected: {sweep['loop_sessions']}")
        lines.append(f"  last sweep: {sweep['last_sweep_at'] or 'never'}")
        if guard := report.get("guard"):
            mode = report["settings"].get("guard_mode", "off")
            lines.append(
                f"guard mode: {mode} (quiet period {report['settings'].get('guard_quiet_period')}):"
                f" following {guard['following']}, finalized {guard['finalized']}"
                f" ({guard['ended_by_sweep']} ended by the sweep,"
                f" {guard['settled_at_end']} recipients settled at the end)"
            )
        lines.append(f"stuck campaigns: {len(report['stuck_campaigns'])}")
        for row in report["stuck_campaigns"]:
            lines.append(f"  {row['campaign_id']}  {row['reason']}  since {row['since']}")
    for problem in report["problems"]:
        lines.append(f"PROBLEM: {problem}")
    if not report["problems"]:
        lines.append("all good")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        with psycopg.connect(database_url(args), autocommit=True) as conn:
            report = diagnose(conn)
    except psycopg.Error as exc:
        print(f"plunk-sql doctor: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(report, default=str, indent=2))
    else:
        print(_text(report))
    return EXIT_ERROR if report["problems"] else EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check installation, sweep mode and stuck campaigns")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)
