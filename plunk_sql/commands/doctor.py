"""`plunk-sql doctor`: is the toolkit installed and is anything stuck?

Checks: the emails triggers are installed and enabled; migrations and
versions; the toolkit's roles and grants (plunk_sql.privilege_gaps()); what
runs the sweep (pg_cron job and its last run, and the job that starts
scheduled campaigns, or a `plunk-sql sweep --every`
loop, or a sweep that ran within `stuck_after` although its job is not visible
to this user, as with a job an administrator scheduled: pg_cron's row-level
security) and when it last ran; settings; plunk_sql.stuck_campaigns. Exit code
0 when all is well, 1 when a trigger, role or grant is missing, no sweep is
scheduled or running, or a campaign is stuck. Runs as the operator role.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import psycopg
from psycopg.rows import dict_row

from plunk_sql import __version__
from plunk_sql.commands.common import EXIT_ERROR, EXIT_OK, connect, one_line
from plunk_sql.cron import cron_status
from plunk_sql.queries import query

# Every trigger the toolkit keeps on Plunk's tables: (table, name).
TRIGGERS = (
    ("emails", "plunk_sql_emails_after_delete"),
    ("emails", "plunk_sql_emails_after_insert"),
    ("emails", "plunk_sql_emails_after_update"),
    ("emails", "plunk_sql_emails_refuse_move"),
    ("campaigns", "plunk_sql_campaigns_keep_counters"),
    ("campaigns", "plunk_sql_campaigns_status_changed"),
    ("campaigns", "plunk_sql_guard_campaign_started"),
)


def diagnose(conn: psycopg.Connection) -> dict[str, Any]:
    """Everything doctor reports, as a dict (also `--json`). `problems` lists what is wrong."""
    report: dict[str, Any] = {"version": __version__, "problems": []}
    problems: list[str] = report["problems"]
    with conn.cursor(row_factory=dict_row) as cur:
        installed = cur.execute("SELECT to_regnamespace('plunk_sql') IS NOT NULL AS ok").fetchone()
        if not (installed and installed["ok"]):
            problems.append("plunk_sql is not installed: run plunk-sql migrate")
            return report
        server = cur.execute("SHOW server_version").fetchone()
        report["server_version"] = server["server_version"] if server else None
        try:
            versions = cur.execute(query("doctor_versions")).fetchone()
            report["migrations"] = ((versions or {}).get("migrations") or "").split(",")
        except psycopg.Error as exc:
            report["migrations"] = []
            problems.append(
                f"cannot read the applied migrations ({one_line(exc)}): run plunk-sql migrate "
                "(it grants them to the operator role)"
            )
        triggers = {r["name"]: r["enabled"] for r in cur.execute(query("doctor_triggers"))}
        report["triggers"] = {name: triggers.get(name) for _, name in TRIGGERS}
        for table, name in TRIGGERS:
            if name not in triggers:
                problems.append(
                    f"trigger {name} on public.{table} is missing: run plunk-sql migrate"
                )
            elif not triggers[name]:
                problems.append(f"trigger {name} on public.{table} is disabled")
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
    report["roles"], report["privilege_gaps"] = _privileges(conn, problems)
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
    # Scheduled starts run in their own job since 0.3 (sql/72_scheduled_starts.sql): a sweep job
    # scheduled by an older version, or by hand from its psql lines, starts no campaign.
    starts = sweep.get("starts_job")
    if sweep["mode"] == "pg_cron" and not (starts and starts["active"]):
        name = starts["jobname"] if starts else "plunk_sql_starts:<database>"
        problems.append(
            f"no active pg_cron job starts scheduled campaigns ({name} "
            f"{'is inactive' if starts else 'is missing'}): run plunk-sql migrate"
        )
    starts_last = sweep.get("starts_last_run")
    if starts_last and starts_last["status"] == "failed":
        problems.append(
            f"the last pg_cron scheduled-starts run failed: {starts_last['return_message']}"
        )
    for row in report["stuck_campaigns"]:
        problems.append(f"campaign {row['campaign_id']} stuck: {row['reason']} ({row['hint']})")
    return report


def _privileges(
    conn: psycopg.Connection[Any], problems: list[str]
) -> tuple[list[str], list[dict[str, str]]]:
    """(role names, privilege_gaps rows); missing roles and grants are problems."""
    with conn.cursor(row_factory=dict_row) as cur:
        try:
            names = cur.execute(query("role_names")).fetchone()
            gaps = cur.execute(query("privilege_gaps")).fetchall()
        except psycopg.Error as exc:
            if exc.sqlstate == "42883":  # an older install: no privilege_gaps() yet
                problems.append("roles and grants cannot be checked: run plunk-sql migrate")
            else:
                problems.append(f"roles and grants cannot be checked: {one_line(exc)}")
            return [], []
    roles = [names["worker"], names["operator"]] if names else []
    for gap in gaps:
        if gap["kind"] == "role":
            problems.append(
                f"role {gap['statement'].split()[2]} is missing: an administrator runs "
                f"`{gap['statement']};`, then plunk-sql migrate again"
            )
    grants = [g for g in gaps if g["kind"] != "role"]
    if grants:
        problems.append(
            f"{len(grants)} grants of the least-privilege setup are missing, first: "
            f"`{grants[0]['statement']};` (all: SELECT * FROM plunk_sql.privilege_gaps(); "
            "plunk-sql migrate as the owner runs them once the roles exist)"
        )
    return roles, gaps


def _text(report: dict[str, Any]) -> str:
    lines = [f"plunk-sql {report['version']}"]
    if "server_version" in report:
        lines.append(f"PostgreSQL {report['server_version']}")
        lines.append(f"migrations: {', '.join(report['migrations'])}")
        ok = all(report["triggers"].values())
        lines.append(f"emails triggers: {'installed' if ok else 'MISSING or disabled'}")
        if report.get("roles"):
            gaps = len(report["privilege_gaps"])
            lines.append(
                f"roles: {', '.join(report['roles'])} "
                + (f"({gaps} statements missing)" if gaps else "(grants complete)")
            )
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
        if sweep.get("starts_job"):
            job = sweep["starts_job"]
            lines.append(
                f"  job {job['jobname']!r} ({job['schedule']}) "
                f"{'active' if job['active'] else 'INACTIVE'}"
            )
        if sweep.get("starts_last_run"):
            run = sweep["starts_last_run"]
            lines.append(f"  last starts run: {run['status']} at {run['start_time']}")
        if sweep["loop_sessions"]:
            lines.append(f"  sweep loops connected: {sweep['loop_sessions']}")
        lines.append(f"  last sweep: {sweep['last_sweep_at'] or 'never'}")
        if sweep["mode"] == "unseen":
            lines.append(
                "  a sweep ran within stuck_after, but no pg_cron job or sweep loop is visible "
                "to this user (pg_cron shows a job only to its owner; a loop behind PgBouncer "
                "may not show in pg_stat_activity)"
            )
        if sweep["error"] and sweep["mode"] != "none":
            lines.append(f"  note: {sweep['error']}")
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
    with connect(args) as conn:
        report = diagnose(conn)
    if args.json:
        print(json.dumps(report, default=str, indent=2))
    else:
        print(_text(report))
    return EXIT_ERROR if report["problems"] else EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("doctor", help="check installation, sweep mode and stuck campaigns")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)
