"""pg_cron scheduling of the sweep, and the status `plunk-sql doctor` reports.

pg_cron lives in one database per cluster (`cron.database_name`, often
`postgres`, not Plunk's). `schedule_sweep(url)` (run at the end of every
`plunk-sql migrate`) makes two jobs there, idempotently (pg_cron upserts jobs
by name and user):

- `plunk_sql_sweep:<plunk db>` runs `SELECT * FROM plunk_sql.sweep()` in the
  Plunk database on the `sweep_schedule` setting (`cron.schedule` when pg_cron
  is in the Plunk database itself, else `cron.schedule_in_database` from the
  cron database);
- `plunk_sql_prune_job_run_details` deletes `cron.job_run_details` rows older
  than the `job_run_details_retention` setting, on `prune_schedule`.

Without the rights to do so, the result carries the exact psql lines an
administrator runs; without pg_cron, the mode is "loop" (`plunk-sql sweep
--every 30s`). Nothing here raises for a missing pg_cron.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from plunk_sql.connection import connect
from plunk_sql.queries import query

SWEEP_COMMAND = "SELECT * FROM plunk_sql.sweep()"
PRUNE_JOB = "plunk_sql_prune_job_run_details"
LOOP_APPLICATION_NAME = "plunk-sql sweep --every"
ENV_SWITCH = "PLUNK_SQL_SCHEDULE_SWEEP"


def sweep_job_name(dbname: str) -> str:
    """One sweep job per Plunk database: several can share a cluster's cron database."""
    return f"plunk_sql_sweep:{dbname}"


def enabled_by_env() -> bool:
    """`PLUNK_SQL_SCHEDULE_SWEEP=0` turns scheduling off in migrate (test templates, CI)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass
class ScheduleResult:
    """mode: "pg_cron" (jobs scheduled), "manual" (an administrator must run `psql`),
    or "loop" (no pg_cron: run `plunk-sql sweep --every 30s`)."""

    mode: str
    message: str
    jobs: list[str] = field(default_factory=list)
    psql: list[str] = field(default_factory=list)


DEFAULT_CRON_DATABASE = "postgres"


def _cron_database(conn: psycopg.Connection) -> tuple[str | None, bool]:
    """(cron.database_name, known). None when pg_cron is not loaded (the GUC does not exist).

    Reading the GUC needs superuser or pg_read_all_settings: without them, and when
    the pg_cron package is installed, assume pg_cron's default database (known=False).
    """
    try:
        row = conn.execute(query("cron_database")).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        available = conn.execute(query("cron_available")).fetchone()
        return (DEFAULT_CRON_DATABASE if available else None), False
    return (row[0] if row and row[0] else None), True


def _other_db(conn: psycopg.Connection, dbname: str) -> psycopg.Connection:
    """A connection to another database of the same server, same credentials."""
    info = make_conninfo(conn.info.dsn, dbname=dbname, password=conn.info.password or None)
    return connect(info, autocommit=True, connect_timeout=10)


def _statements(conn: psycopg.Connection, cron_db: str) -> tuple[str, list[str]]:
    """(sweep job name, the SQL statements to run in the cron database)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cfg = cur.execute(query("cron_settings")).fetchone()
    assert cfg is not None
    dbname = cfg["dbname"]
    job = sweep_job_name(dbname)
    if cron_db == dbname:
        sweep = sql.SQL("SELECT cron.schedule({}, {}, {})").format(
            sql.Literal(job), sql.Literal(cfg["sweep_schedule"]), sql.Literal(SWEEP_COMMAND)
        )
    else:
        # Run by an administrator in the cron database, a job would belong to them;
        # `username =>` makes it the toolkit owner's (who may call plunk_sql.sweep() and,
        # under pg_cron's row-level security, is the one who sees the job).
        sweep = sql.SQL("SELECT cron.schedule_in_database({}, {}, {}, {}, username => {})").format(
            sql.Literal(job),
            sql.Literal(cfg["sweep_schedule"]),
            sql.Literal(SWEEP_COMMAND),
            sql.Literal(dbname),
            sql.Literal(cfg["owner"]),
        )
    prune_command = sql.SQL(
        "DELETE FROM cron.job_run_details WHERE end_time < now() - {}::interval"
    ).format(sql.Literal(cfg["retention"]))
    prune = sql.SQL("SELECT cron.schedule({}, {}, {})").format(
        sql.Literal(PRUNE_JOB),
        sql.Literal(cfg["prune_schedule"]),
        sql.Literal(prune_command.as_string(conn)),
    )
    return job, [sweep.as_string(conn), prune.as_string(conn)]


def _double_quoted(text: str) -> str:
    """A shell double-quoted word (SQL keeps its single quotes readable)."""
    return '"' + re.sub(r'(["\\$`])', r"\\\1", text) + '"'


def _psql_lines(cron_db: str, statements: list[str]) -> list[str]:
    """Shell lines an administrator runs as a superuser (or pg_cron's owner)."""
    return [f"psql -d {shlex.quote(cron_db)} -c {_double_quoted(s)}" for s in statements]


def schedule_sweep(database_url: str) -> ScheduleResult:
    """Schedule (or re-schedule with the current settings) the sweep and prune jobs."""
    with connect(database_url, autocommit=True) as conn:
        cron_db, known = _cron_database(conn)
        guess = "" if known else f" (cron.database_name is not readable here: assuming {cron_db!r})"
        if cron_db is None:
            return ScheduleResult(
                mode="loop",
                message=(
                    "pg_cron is not loaded (shared_preload_libraries): run the sweep with "
                    "`plunk-sql sweep --every 30s` (a service next to Plunk's API)"
                ),
            )
        job, statements = _statements(conn, cron_db)
        setup = ["CREATE EXTENSION IF NOT EXISTS pg_cron", *statements]
        try:
            cron_conn = conn if cron_db == conn.info.dbname else _other_db(conn, cron_db)
        except psycopg.Error as exc:
            return ScheduleResult(
                mode="manual",
                message=f"cannot connect to pg_cron's database {cron_db!r}{guess} ({exc}); "
                "an administrator runs:",
                psql=_psql_lines(cron_db, setup),
            )
        try:
            try:
                with cron_conn.transaction():
                    has_ext = cron_conn.execute(query("cron_extension_version")).fetchone()
                    if not has_ext:
                        cron_conn.execute(setup[0])
                    for statement in statements:
                        cron_conn.execute(statement)
            except psycopg.Error as exc:
                reason = exc.diag.message_primary or str(exc)
                return ScheduleResult(
                    mode="manual",
                    message=f"could not schedule in database {cron_db!r}{guess}: {reason}; "
                    "an administrator runs:",
                    psql=_psql_lines(cron_db, setup),
                )
        finally:
            if cron_conn is not conn:
                cron_conn.close()
    return ScheduleResult(
        mode="pg_cron",
        message=f"pg_cron: jobs {job!r} and {PRUNE_JOB!r} scheduled in database {cron_db!r}",
        jobs=[job, PRUNE_JOB],
    )


def unschedule_sweep(database_url: str) -> bool:
    """Remove this database's sweep job (the shared prune job stays). True when one was removed."""
    with connect(database_url, autocommit=True) as conn:
        cron_db, _known = _cron_database(conn)
        if cron_db is None:
            return False
        job = sweep_job_name(conn.info.dbname)
        cron_conn = conn if cron_db == conn.info.dbname else _other_db(conn, cron_db)
        try:
            row = cron_conn.execute(query("cron_unschedule"), {"jobname": job}).fetchone()
        finally:
            if cron_conn is not conn:
                cron_conn.close()
    return bool(row and row[0])


def cron_status(conn: psycopg.Connection) -> dict[str, Any]:
    """What runs the sweep for this database, for `plunk-sql doctor`.

    Keys: pg_cron_loaded, cron_database, extension_version, job (jobid, jobname,
    schedule, command, database, active), prune_job, last_run (status,
    start_time, end_time, return_message), loop_sessions (connections running
    `plunk-sql sweep --every` on this database), last_sweep_at, last_sweep_actions
    (plunk_sql.sweep_state), recent_sweep (the last sweep ran within the stuck_after
    setting), mode ("pg_cron" | "loop" | "unseen" | "none"), error.

    "unseen": no job or loop is visible, but a sweep ran recently. pg_cron's
    row-level security shows cron.job rows only to their owner, so an app user does
    not see a job an administrator scheduled for it; a loop behind PgBouncer may not
    show in pg_stat_activity. Judging by the last sweep's time covers both.
    """
    status: dict[str, Any] = {
        "pg_cron_loaded": False,
        "cron_database": None,
        "extension_version": None,
        "job": None,
        "prune_job": None,
        "last_run": None,
        "loop_sessions": 0,
        "last_sweep_at": None,
        "last_sweep_actions": None,
        "recent_sweep": False,
        "mode": "none",
        "error": None,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query("sweep_loop_sessions")).fetchone()
        status["loop_sessions"] = row["sessions"] if row else 0
        if (cur.execute(query("has_sweep_state")).fetchone() or {}).get("present"):
            state = cur.execute(query("sweep_recent")).fetchone()
            if state:
                status["last_sweep_at"] = state["last_run_at"]
                status["last_sweep_actions"] = state["last_actions"]
                status["recent_sweep"] = bool(state["recent"])
    cron_db, known = _cron_database(conn)
    status["cron_database_known"] = known
    if cron_db is not None:
        status["pg_cron_loaded"] = known
        status["cron_database"] = cron_db
        try:
            cron_conn = conn if cron_db == conn.info.dbname else _other_db(conn, cron_db)
            try:
                with cron_conn.cursor(row_factory=dict_row) as cur:
                    ext = cur.execute(query("cron_extension_version")).fetchone()
                    status["extension_version"] = ext["extversion"] if ext else None
                    if ext:
                        job = sweep_job_name(conn.info.dbname)
                        status["job"] = cur.execute(query("cron_job"), {"jobname": job}).fetchone()
                        status["prune_job"] = cur.execute(
                            query("cron_job"), {"jobname": PRUNE_JOB}
                        ).fetchone()
                        if status["job"]:
                            status["last_run"] = cur.execute(
                                query("cron_last_run"), {"jobid": status["job"]["jobid"]}
                            ).fetchone()
            finally:
                if cron_conn is not conn:
                    cron_conn.close()
        except psycopg.Error as exc:
            reason = " ".join((exc.diag.message_primary or str(exc)).split())
            status["error"] = f"cannot read pg_cron's jobs in {cron_db!r}: {reason}"
    if status["job"] and status["job"]["active"]:
        status["mode"] = "pg_cron"
    elif status["loop_sessions"]:
        status["mode"] = "loop"
    elif status["recent_sweep"]:
        status["mode"] = "unseen"
    return status
