"""One error path for every command: no server, a wrong password, a role without grants.

Each failure is exactly one line on stderr (`plunk-sql COMMAND: message` plus
` (SQLSTATE)` when the server sent one), no traceback, and exit code 1.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from plunk_sql.testing.cluster import free_port

EXIT_ERROR = 1


def commands(campaign: str) -> list[list[str]]:
    return [
        ["migrate"],
        ["start", campaign],
        ["start", campaign, "--preview"],
        ["status"],
        ["status", campaign],
        ["watch", campaign, "--once"],
        ["sweep"],
        ["sweep", "--every", "100ms", "--count", "2"],
        ["pause", campaign],
        ["resume", campaign],
        ["cancel", campaign],
        ["repair", campaign],
        ["repair", "--all-stuck"],
        ["doctor"],
        ["worker", "--campaign", campaign, "--smtp", "smtp://127.0.0.1:1"],
    ]


def run_cli(url: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plunk_sql.cli", "--database-url", url, *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line(res: subprocess.CompletedProcess[str], argv: list[str], sqlstate: str | None):
    lines = res.stderr.splitlines()
    assert res.returncode == EXIT_ERROR, (argv, res.returncode, res.stderr)
    assert len(lines) == 1, (argv, res.stderr)
    assert "Traceback" not in res.stderr
    assert lines[0].startswith(f"plunk-sql {argv[0]}: "), (argv, lines[0])
    if sqlstate is None:
        assert not re.search(r"\([0-9A-Z]{5}\)$", lines[0]), (argv, lines[0])
    else:
        assert lines[0].endswith(f"({sqlstate})"), (argv, lines[0])


def test_cli_errors__no_server():
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/plunk?connect_timeout=2"
    for argv in commands("c1"):
        res = run_cli(url, argv)
        assert_one_line(res, argv, None)
        assert "Connection refused" in res.stderr or "connection" in res.stderr


@pytest.fixture
def password_role(pg_server):
    """A role whose pg_hba line demands a password (the test cluster trusts everyone else)."""
    if pg_server.cluster is None:
        pytest.skip("needs the throwaway cluster (pg_hba.conf is edited)")
    role = f"pw_{uuid.uuid4().hex[:8]}"
    hba = pg_server.cluster.datadir / "pg_hba.conf"
    original = hba.read_text()
    with pg_server.admin() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right'")
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + original)
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)
    try:
        yield role
    finally:
        with pg_server.admin() as conn:
            hba.write_text(original)
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(f"DROP ROLE {role}")


def test_cli_errors__wrong_password(db_url, password_role):
    url = make_conninfo(db_url, user=password_role, password="wrong")
    for argv in commands("c1"):
        res = run_cli(url, argv)
        assert_one_line(res, argv, None)
        assert "password authentication failed" in res.stderr


def test_cli_errors__role_without_grants(db_url, plunk, pg_server):
    campaign = plunk.campaign(plunk.project())
    role = f"nogrants_{uuid.uuid4().hex[:8]}"
    with pg_server.admin() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        url = make_conninfo(db_url, user=role)
        assert conninfo_to_dict(url)["user"] == role
        for argv in commands(campaign):
            res = run_cli(url, argv)
            assert_one_line(res, argv, "42501")
    finally:
        with pg_server.admin() as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_cli_errors__start_on_a_started_campaign_is_idempotent(db_url, plunk):
    pid = plunk.project()
    plunk.contacts(pid, 2)
    campaign = plunk.campaign(pid)
    assert run_cli(db_url, ["start", campaign]).returncode == 0
    res = run_cli(db_url, ["start", campaign])
    assert (res.returncode, res.stderr) == (0, "")
    assert "2 recipients" in res.stdout
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE public.campaigns SET status = 'SENT' WHERE id = %s", (campaign,))
    res = run_cli(db_url, ["start", campaign])
    assert (res.returncode, res.stderr) == (0, "")
