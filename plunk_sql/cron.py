"""pg_cron scheduling of the sweep, and the status `plunk-sql doctor` reports.

pg_cron lives in one database per cluster (`cron.database_name`, often
`postgres`, not Plunk's). `schedule_sweep(url)` (run at the end of every
`plunk-sql migrate`) makes three jobs there, idempotently (pg_cron upserts jobs
by name and user, so the jobs of an older version are updated in place and the
starts job is added next to them):

- `plunk_sql_sweep:<plunk db>` runs `SELECT * FROM plunk_sql.sweep()` in the
  Plunk database on the `sweep_schedule` setting (`cron.schedule` when pg_cron
  is in the Plunk database itself, else `cron.schedule_in_database` from the
  cron database);
- `plunk_sql_starts:<plunk db>` starts the due scheduled campaigns on the same
  schedule, one per statement: `SET statement_timeout = <start_timeout>;`
  then `SELECT * FROM plunk_sql.start_next_scheduled(); COMMIT;` repeated
  `starts_per_run` times. pg_cron (libpq mode, its default) sends the command as
  one simple query, and PostgreSQL >= 13 arms statement_timeout for each
  statement of such a string, so each start has its own budget and its own
  transaction; a start over budget records its 57014 and returns, and the next
  statement starts the next campaign;
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
START_STATEMENT = "SELECT * FROM plunk_sql.start_next_scheduled(); COMMIT;"
PRUNE_JOB = "plunk_sql_prune_job_run_details"
LOOP_APPLICATION_NAME = "plunk-sql sweep --every"
ENV_SWITCH = "PLUNK_SQL_SCHEDULE_SWEEP"


def sweep_job_name(dbname: str) -> str:
    """One sweep job per Plunk database: several can share a cluster's cron database."""
    return f"plunk_sql_sweep:{dbname}"


def starts_job_name(dbname: str) -> str:
    """The job that starts this database's due scheduled campaigns."""
    return f"plunk_sql_starts:{dbname}"


def starts_command(timeout_ms: int, per_run: int) -> str:
    """The starts job's command: each start its own statement, budget and transaction."""
    return " ".join([f"SET statement_timeout = {int(timeout_ms)};", *[START_STATEMENT] * per_run])


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


def _statements(conn: psycopg.Connection, cron_db: str) -> tuple[list[str], list[str]]:
    """(job names, the SQL statements to run in the cron database)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cfg = cur.execute(query("cron_settings")).fetchone()
    assert cfg is not None
    dbname = cfg["dbname"]
    commands = {
        sweep_job_name(dbname): SWEEP_COMMAND,
        starts_job_name(dbname): starts_command(cfg["start_timeout_ms"], cfg["starts_per_run"]),
    }
    statements = []
    for job, command in commands.items():
        if cron_db == dbname:
            statement = sql.SQL("SELECT cron.schedule({}, {}, {})").format(
                sql.Literal(job), sql.Literal(cfg["sweep_schedule"]), sql.Literal(command)
            )
        else:
            # Run by an administrator in the cron database, a job would belong to them;
            # `username =>` makes it the toolkit owner's (who may call the toolkit's
            # functions and, under pg_cron's row-level security, is the one who sees the job).
            statement = sql.SQL(
                "SELECT cron.schedule_in_database({}, {}, {}, {}, username => {})"
            ).format(
                sql.Literal(job),
                sql.Literal(cfg["sweep_schedule"]),
                sql.Literal(command),
                sql.Literal(dbname),
                sql.Literal(cfg["owner"]),
            )
        statements.append(statement.as_string(conn))
    prune_command = sql.SQL(
        "DELETE FROM cron.job_run_details WHERE end_time < now() - {}::interval"
    ).format(sql.Literal(cfg["retention"]))
    prune = sql.SQL("SELECT cron.schedule({}, {}, {})").format(
        sql.Literal(PRUNE_JOB),
        sql.Literal(cfg["prune_schedule"]),
        sql.Literal(prune_command.as_string(conn)),
    )
    return [*commands, PRUNE_JOB], [*statements, prune.as_string(conn)]


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
        jobs, statements = _statements(conn, cron_db)
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
        message=f"pg_cron: jobs {', '.join(map(repr, jobs))} scheduled in database {cron_db!r}",
        jobs=jobs,
    )


def unschedule_sweep(database_url: str) -> bool:
    """Remove this database's sweep and starts jobs (the shared prune job stays).
    True when one was removed."""
    removed = False
    with connect(database_url, autocommit=True) as conn:
        cron_db, _known = _cron_database(conn)
        if cron_db is None:
            return False
        dbname = conn.info.dbname
        cron_conn = conn if cron_db == dbname else _other_db(conn, cron_db)
        try:
            for job in (sweep_job_name(dbname), starts_job_name(dbname)):
                row = cron_conn.execute(query("cron_unschedule"), {"jobname": job}).fetchone()
                removed = removed or bool(row and row[0])
        finally:
            if cron_conn is not conn:
                cron_conn.close()
    return removed


def cron_status(conn: psycopg.Connection) -> dict[str, Any]:
    """What runs the sweep for this database, for `plunk-sql doctor`.

    Keys: pg_cron_loaded, cron_database, extension_version, job (jobid, jobname,
    schedule, command, database, active), starts_job (the same, for the job that
    starts scheduled campaigns), prune_job, last_run and starts_last_run (status,
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
        "starts_job": None,
        "prune_job": None,
        "last_run": None,
        "starts_last_run": None,
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
                        status["starts_job"] = cur.execute(
                            query("cron_job"), {"jobname": starts_job_name(conn.info.dbname)}
                        ).fetchone()
                        for key, run in (("job", "last_run"), ("starts_job", "starts_last_run")):
                            if status[key]:
                                status[run] = cur.execute(
                                    query("cron_last_run"), {"jobid": status[key]["jobid"]}
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
