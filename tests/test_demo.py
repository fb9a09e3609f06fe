"""The demo end to end, at small scale (`make demo` runs the full size in .ci/run)."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg


def _run_demo(env: dict[str, str], contacts: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "plunk_sql.cli", "demo", "--contacts", str(contacts)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


def _databases(pg_server) -> set[str]:
    with pg_server.admin() as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


def test_demo__reconciles_on_the_test_server(pg_server):
    before = _databases(pg_server)
    env = os.environ | {"DATABASE_URL": pg_server.admin_url}
    res = _run_demo(env, 1500)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "reconciliation OK" in out
    assert "FAIL" not in out
    lines = dict(
        line.rsplit(None, 1) for line in out.splitlines() if line.startswith(("sent ", "SMTP"))
    )
    assert lines["sent"].strip() == lines["SMTP sink received"].strip()
    assert int(lines["sent"]) > 1000
    assert "skipped: unsubscribed" in out and "skipped: contact deleted" in out
    assert _databases(pg_server) == before  # its database was dropped


def test_demo__own_cluster_when_no_database_url(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    res = _run_demo(env, 600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "starting a throwaway PostgreSQL cluster" in res.stdout
    assert "reconciliation OK" in res.stdout


def test_demo__reconciliation_fails_loudly(pg_server, capsys):
    """A sink that lost a message makes the reconciliation (and the exit code) fail."""
    from plunk_sql.api import Client
    from plunk_sql.demos import demo
    from plunk_sql.migrate import migrate
    from plunk_sql.testing.smtp_sink import SmtpSink

    with demo.demo_database(pg_server.admin_url) as (url, _, _cron):
        migrate(url, with_plunk_tables=True)
        with psycopg.connect(url, autocommit=True) as conn:
            _, campaign = demo.seed(conn, 20)
        with Client(url) as client:
            client.start(campaign)
        sink = SmtpSink()  # received nothing, yet the campaign is SENDING with 0 sent
        assert demo.reconcile(url, campaign, sink, 0) is False
    out = capsys.readouterr().out
    assert "FAIL  final status SENT" in out
    assert "reconciliation FAILED" in out
