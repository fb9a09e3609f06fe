"""The plunk-sql CLI through its entry point: exit codes, messages, --json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from plunk_sql.cli import main
from plunk_sql.commands.common import EXIT_ILLEGAL_STATE, EXIT_NOT_FOUND, EXIT_USAGE


@pytest.fixture
def cli(db_url, capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--database-url", db_url, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def campaign(plunk):
    pid = plunk.project()
    plunk.contacts(pid, 4)
    plunk.contacts(pid, 1, subscribed=False, prefix="unsub")
    return plunk.campaign(pid)


def test_cli__start_json_and_idempotent(cli, campaign):
    code, out, _ = cli("start", campaign, "--preview", "--json")
    assert code == 0
    assert json.loads(out) == {"campaign_id": campaign, "recipients": 4}
    code, out, _ = cli("start", campaign, "--json")
    assert (code, json.loads(out)) == (
        0,
        {"campaign_id": campaign, "total": 4, "status": "SENDING"},
    )
    code, out, _ = cli("start", campaign)
    assert code == 0 and "SENDING, 4 recipients" in out


def test_cli__start_exit_codes(cli, plunk):
    code, out, err = cli("start", "no-such-campaign")
    assert (code, out) == (EXIT_NOT_FOUND, "")
    assert err.startswith("plunk-sql start: campaign no-such-campaign does not exist (P0002)")
    sent = plunk.campaign(plunk.project(), status="SENT")
    code, _, err = cli("start", sent)
    assert code == EXIT_ILLEGAL_STATE and "(55000)" in err


def test_cli__status_table_and_json(cli, campaign, plunk, conn):
    code, out, _ = cli("status")
    assert (code, out.strip()) == (0, "no campaigns started by plunk_sql yet")
    code, out, _ = cli("status", "--json")
    assert (code, json.loads(out)) == (0, [])
    plunk.start(campaign)
    conn.execute("DELETE FROM public.contacts WHERE id LIKE 'user-0000000%'")
    plunk.claim(campaign, batch_size=10)

    code, out, _ = cli("status")
    assert code == 0
    header, _, row = out.splitlines()
    assert header.split() == [
        "campaign_id",
        "status",
        "total",
        "pending",
        "claimed",
        "in_flight",
        "sent",
        "failed",
        "skipped",
    ]
    assert row.split() == [campaign, "SENDING", "4", "0", "3", "0", "0", "0", "1"]

    code, out, _ = cli("status", campaign, "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["campaign_id"], doc["total"], doc["claimed"], doc["skipped"]) == (campaign, 4, 3, 1)
    assert {"state": "skipped", "reason": "contact deleted", "recipients": 1} in doc["outcomes"]
    code, out, _ = cli("status", campaign)
    assert code == 0 and "contact deleted" in out


def test_cli__status_unknown_campaign(cli, campaign):
    code, out, err = cli("status", campaign)  # exists, never started
    assert (code, out) == (EXIT_NOT_FOUND, "")
    assert "not started by plunk_sql" in err


def test_cli__watch_finished_campaign_returns(cli, plunk):
    pid = plunk.project()
    empty = plunk.campaign(pid)  # no contacts: SENT at start
    plunk.start(empty)
    code, out, _ = cli("watch", empty, "--interval", "0.01")
    assert code == 0
    line = json.loads(out.strip().splitlines()[-1])  # not a TTY: JSON lines
    assert (line["event"], line["status"], line["total"]) == ("progress", "SENT", 0)
    assert cli("watch", "nope")[0] == EXIT_NOT_FOUND


def test_cli__watch_once_while_sending(cli, campaign, plunk):
    plunk.start(campaign)
    code, out, _ = cli("watch", campaign, "--once")
    assert code == 0
    assert json.loads(out)["status"] == "SENDING"


def test_cli__worker_argument_errors(cli, campaign):
    assert cli("worker", "--campaign", "nope", "--smtp", "smtp://127.0.0.1:1")[0] == EXIT_NOT_FOUND
    code, _, err = cli("worker", "--campaign", campaign, "--smtp", "http://x")
    assert code == EXIT_USAGE and "smtp://" in err


def test_cli__no_database_url_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["status"]) == EXIT_USAGE
    assert capsys.readouterr().err == (
        "plunk-sql status: no database: pass --database-url or set DATABASE_URL\n"
    )


def test_cli__console_entry_point_runs(db_url):
    res = subprocess.run(
        [sys.executable, "-m", "plunk_sql.cli", "--database-url", db_url, "status", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (res.returncode, json.loads(res.stdout)) == (0, [])
    res = subprocess.run(
        [sys.executable, "-m", "plunk_sql.cli", "frobnicate"], capture_output=True, check=False
    )
    assert res.returncode == EXIT_USAGE  # argparse


def test_cli__worker_smtp_url_from_the_environment(cli, monkeypatch):
    monkeypatch.setenv("PLUNK_SQL_SMTP_URL", "smtp://127.0.0.1:1")
    code, _, err = cli("worker", "--campaign", "nope")
    assert code == EXIT_NOT_FOUND and "(P0002)" in err
