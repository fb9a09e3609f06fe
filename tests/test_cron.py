"""pg_cron scheduling (plunk_sql.cron), `plunk-sql doctor`, and a real pg_cron tick.

The session cluster preloads pg_cron with cron.database_name = postgres, so the
Plunk test databases exercise the "pg_cron lives in another database" path
(cron.schedule_in_database). The same-database path is covered in test_crash.py.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import threading
import time
import uuid

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from plunk_sql import cli, cron, resources
from plunk_sql.migrate import migrate

pytestmark = pytest.mark.usefixtures("needs_pg_cron")

STARTS_COMMAND = "SET statement_timeout = 60000; " + " ".join(
    ["SELECT * FROM plunk_sql.start_next_scheduled(); COMMIT;"] * 25
)


@pytest.fixture
def needs_pg_cron(pg_server):
    if not pg_server.pg_cron:
        pytest.skip("pg_cron is not installed on the test server")


@pytest.fixture
def scheduled(db_url):
    """Unschedule this database's sweep job after the test (the database is dropped next)."""
    yield
    cron.unschedule_sweep(db_url)


def jobs(pg_server, dbname: str) -> list[tuple]:
    with pg_server.admin() as admin:
        return admin.execute(
            "SELECT jobname, schedule, command, database FROM cron.job"
            " WHERE jobname IN (%s, %s, %s) ORDER BY jobname",
            (cron.sweep_job_name(dbname), cron.starts_job_name(dbname), cron.PRUNE_JOB),
        ).fetchall()


def dbname(url: str) -> str:
    return conninfo_to_dict(url)["dbname"]


def test_cron__migrate_schedules_sweep_and_prune_idempotently(pg_server, db_url, scheduled):
    first = migrate(db_url, schedule_sweep=True)
    second = migrate(db_url, schedule_sweep=True)
    assert first.cron.mode == second.cron.mode == "pg_cron"
    name = dbname(db_url)
    assert jobs(pg_server, name) == [
        (
            cron.PRUNE_JOB,
            "17 * * * *",
            "DELETE FROM cron.job_run_details WHERE end_time < now() - '7 days'::interval",
            "postgres",
        ),
        (cron.starts_job_name(name), "* * * * *", STARTS_COMMAND, name),
        (cron.sweep_job_name(name), "* * * * *", "SELECT * FROM plunk_sql.sweep()", name),
    ]


def test_cron__starts_job_follows_its_settings(pg_server, db_url, conn, scheduled):
    conn.execute("UPDATE plunk_sql.settings SET value = '2 seconds' WHERE key = 'start_timeout'")
    conn.execute("UPDATE plunk_sql.settings SET value = '2' WHERE key = 'starts_per_run'")
    assert cron.schedule_sweep(db_url).mode == "pg_cron"
    command = jobs(pg_server, dbname(db_url))[1][2]
    assert command == (
        "SET statement_timeout = 2000;"
        " SELECT * FROM plunk_sql.start_next_scheduled(); COMMIT;"
        " SELECT * FROM plunk_sql.start_next_scheduled(); COMMIT;"
    )


def test_cron__migrate_adds_the_starts_job_beside_an_older_versions_sweep_job(
    pg_server, db_url, conn, capsys, scheduled
):
    """Before 0.3 the sweep job started scheduled campaigns and was the only job: an upgrade
    keeps it (same name and command) and adds the starts job; doctor flags a missing one."""
    name = dbname(db_url)
    with pg_server.admin() as admin:
        admin.execute(
            "SELECT cron.schedule_in_database(%s, '* * * * *', 'SELECT * FROM plunk_sql.sweep()',"
            " %s, username => 'postgres')",
            (cron.sweep_job_name(name), name),
        )
    own = [j[0] for j in jobs(pg_server, name) if j[0] != cron.PRUNE_JOB]
    assert own == [cron.sweep_job_name(name)]
    assert cli.main(["--database-url", db_url, "doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["sweep"]["mode"] == "pg_cron"
    assert report["sweep"]["starts_job"] is None
    assert any("starts scheduled campaigns" in p and "missing" in p for p in report["problems"])

    assert migrate(db_url, schedule_sweep=True).cron.mode == "pg_cron"
    assert [j[0] for j in jobs(pg_server, name)] == [
        cron.PRUNE_JOB,
        cron.starts_job_name(name),
        cron.sweep_job_name(name),
    ]
    with pg_server.admin() as admin:
        count = admin.execute(
            "SELECT count(*) FROM cron.job WHERE jobname = %s", (cron.sweep_job_name(name),)
        ).fetchone()
    assert count == (1,)  # updated in place, not doubled
    assert cli.main(["--database-url", db_url, "doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sweep"]["starts_job"]["active"] is True
    assert cron.unschedule_sweep(db_url) is True
    assert [j[0] for j in jobs(pg_server, name)] == [cron.PRUNE_JOB]  # shared: it stays


def test_cron__schedule_follows_the_settings(pg_server, db_url, conn, scheduled):
    conn.execute("UPDATE plunk_sql.settings SET value = '*/5 * * * *' WHERE key = 'sweep_schedule'")
    assert cron.schedule_sweep(db_url).mode == "pg_cron"
    assert [j[1] for j in jobs(pg_server, dbname(db_url))[1:]] == ["*/5 * * * *"] * 2
    conn.execute("UPDATE plunk_sql.settings SET value = '30 seconds' WHERE key = 'sweep_schedule'")
    result = cron.schedule_sweep(db_url)  # pg_cron 1.4 has no seconds schedules
    with pg_server.admin() as admin:
        version = admin.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'"
        ).fetchone()[0]
    if version.startswith("1.4"):
        assert result.mode == "manual" and "invalid schedule" in result.message
        assert jobs(pg_server, dbname(db_url))[2][1] == "*/5 * * * *"  # unchanged
    else:
        assert result.mode == "pg_cron"


def test_cron__disabled_by_the_environment_switch(pg_server, db_url, monkeypatch):
    monkeypatch.setenv(cron.ENV_SWITCH, "0")
    assert migrate(db_url).cron is None
    name = dbname(db_url)
    assert [j for j in jobs(pg_server, name) if j[0] != cron.PRUNE_JOB] == []


def test_cron__without_rights_prints_the_exact_psql_lines(pg_server, db_url, conn):
    role = f"weak_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} LOGIN")
    conn.execute(
        f"GRANT USAGE ON SCHEMA plunk_sql TO {role};"
        f" GRANT SELECT ON ALL TABLES IN SCHEMA plunk_sql TO {role}"
    )
    weak_url = make_conninfo(db_url, user=role)
    try:
        result = cron.schedule_sweep(weak_url)
        assert result.mode == "manual"
        assert "permission denied" in result.message
        name = dbname(db_url)
        assert result.psql == [
            'psql -d postgres -c "CREATE EXTENSION IF NOT EXISTS pg_cron"',
            "psql -d postgres -c \"SELECT cron.schedule_in_database('plunk_sql_sweep:"
            f"{name}', '* * * * *', 'SELECT * FROM plunk_sql.sweep()', '{name}',"
            " username => 'postgres')\"",
            "psql -d postgres -c \"SELECT cron.schedule_in_database('plunk_sql_starts:"
            f"{name}', '* * * * *', '{STARTS_COMMAND}', '{name}', username => 'postgres')\"",
            "psql -d postgres -c \"SELECT cron.schedule('plunk_sql_prune_job_run_details',"
            " '17 * * * *', 'DELETE FROM cron.job_run_details WHERE end_time < now() -"
            " ''7 days''::interval')\"",
        ]
        # The administrator runs them: the jobs exist afterwards.
        admin = conninfo_to_dict(pg_server.admin_url)
        psql = shutil.which("psql")
        for line in result.psql:
            argv = shlex.split(line)
            if psql:
                env = {"PGHOST": admin["host"], "PGPORT": str(admin["port"]), "PGUSER": "postgres"}
                subprocess.run([psql, "-v", "ON_ERROR_STOP=1", *argv[1:]], env=env, check=True)
            else:
                with pg_server.admin() as c:
                    c.execute(argv[-1])
        assert [j[0] for j in jobs(pg_server, name)] == [
            cron.PRUNE_JOB,
            cron.starts_job_name(name),
            cron.sweep_job_name(name),
        ]
    finally:
        cron.unschedule_sweep(db_url)
        conn.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_cron__without_pg_cron_the_mode_is_the_loop(db_url, monkeypatch):
    monkeypatch.setattr(cron, "_cron_database", lambda conn: (None, True))
    result = cron.schedule_sweep(db_url)
    assert result.mode == "loop"
    assert "plunk-sql sweep --every 30s" in result.message


def test_cron__prune_job_command_deletes_old_run_details(pg_server):
    with pg_server.admin() as admin:
        admin.execute(
            "INSERT INTO cron.job_run_details (jobid, runid, status, start_time, end_time)"
            " VALUES (-1, -1, 'succeeded', now() - interval '9 days', now() - interval '9 days'),"
            " (-1, -2, 'succeeded', now() - interval '1 day', now() - interval '1 day')"
        )
        admin.execute(
            "DELETE FROM cron.job_run_details WHERE end_time < now() - '7 days'::interval"
        )
        left = admin.execute("SELECT runid FROM cron.job_run_details WHERE jobid = -1").fetchall()
        admin.execute("DELETE FROM cron.job_run_details WHERE jobid = -1")
    assert left == [(-2,)]


def test_cron__doctor_reports_mode_triggers_and_problems(db_url, conn, capsys, scheduled):
    base = ["--database-url", db_url, "doctor", "--json"]
    assert cli.main(base) == 1
    report = json.loads(capsys.readouterr().out)
    assert all(report["triggers"].values())
    assert report["sweep"]["mode"] == "none"
    assert any("no sweep" in p for p in report["problems"])
    assert report["migrations"] == sorted(
        m.stem for m in resources.migrations_dir().glob("0*.sql") if ".rollback" not in m.name
    )

    # A `plunk-sql sweep --every` loop connected: loop mode.
    loop = threading.Thread(
        target=cli.main,
        args=(["--database-url", db_url, "sweep", "--every", "100ms", "--count", "15"],),
    )
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while cron.cron_status(conn)["mode"] != "loop":
            assert time.monotonic() < deadline, "the loop never showed up"
            time.sleep(0.05)
    finally:
        loop.join(timeout=30)
    capsys.readouterr()

    cron.schedule_sweep(db_url)
    assert cli.main(base) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sweep"]["mode"] == "pg_cron"
    assert report["sweep"]["last_sweep_at"] is not None  # the loop's passes
    assert report["problems"] == []

    conn.execute("DROP TRIGGER plunk_sql_emails_after_update ON public.emails")
    assert cli.main(["--database-url", db_url, "doctor"]) == 1
    assert "plunk_sql_emails_after_update on public.emails is missing" in capsys.readouterr().out


@pytest.mark.slow
def test_cron__a_real_pg_cron_tick_runs_the_sweep_and_the_starts(
    pg_server, db_url, conn, plunk, scheduled
):
    project = plunk.project()
    plunk.contacts(project, 4)
    due = plunk.campaign(project, status="SCHEDULED", scheduled_for="2020-01-01 00:00:00")
    assert cron.schedule_sweep(db_url).mode == "pg_cron"
    deadline = time.monotonic() + 75
    while plunk.campaign_row(due)["status"] == "SCHEDULED":
        assert time.monotonic() < deadline, "pg_cron did not run the starts job within 75 s"
        time.sleep(0.5)
    assert plunk.campaign_row(due)["status"] == "SENDING"
    assert plunk.progress(due)["total"] == 4
    status: dict = {}
    while not all(
        (status.get(run) or {}).get("status") == "succeeded"
        for run in ("last_run", "starts_last_run")
    ):
        assert time.monotonic() < deadline + 10, status
        status = cron.cron_status(conn)
        time.sleep(0.2)
    assert status["mode"] == "pg_cron"
