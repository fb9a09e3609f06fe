"""Through a real PgBouncer in transaction pooling mode: the worker at concurrency 4, with
two `watch` processes and `sweep --every` beside it, sends the whole campaign and no process
fails.

PgBouncer 1.18 (Debian 12's) does not track server-side prepared statements: a
statement psycopg prepared on one server connection is missing, or already
exists, when the client's next transaction lands on another. The toolkit
therefore prepares nothing by default (plunk_sql.connection). The second test
turns psycopg's default threshold back on and shows the same run failing, so the
first one is known to be able to fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from plunk_sql.testing.pgbouncer import (
    PgBouncer,
    find_pgbouncer,
    pgbouncer_version,
    start_pgbouncer,
)
from plunk_sql.testing.smtp_sink import SmtpSink

CONTACTS = 600


@pytest.fixture
def bouncer(db_url: str) -> Iterator[PgBouncer]:
    if find_pgbouncer() is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    info = conninfo_to_dict(db_url)
    with start_pgbouncer(
        str(info.get("host", "127.0.0.1")), int(info.get("port", 5432)), users=["postgres"]
    ) as b:
        yield b


def _started_campaign(plunk) -> str:
    pid = plunk.project()
    plunk.contacts(pid, CONTACTS)
    campaign = plunk.campaign(pid)
    plunk.start(campaign)
    return campaign


def _cli(url: str, *argv: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "plunk_sql.cli", "--database-url", url, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _send_through(bouncer: PgBouncer, db_url: str, campaign: str, sink: SmtpSink, env):
    """Worker (concurrency 4), two watches and `sweep --every` through PgBouncer; results."""
    url = bouncer.url(conninfo_to_dict(db_url)["dbname"])
    sweep = _cli(url, "sweep", "--every", "50ms", env=env)
    watch = _cli(url, "watch", campaign, "--interval", "0.02", env=env)
    watch2 = _cli(url, "watch", campaign, "--interval", "0.03", env=env)
    worker = _cli(
        url,
        "worker",
        "--campaign",
        campaign,
        "--smtp",
        sink.url,
        "--concurrency",
        "4",
        "--batch-size",
        "5",
        "--log",
        "--log-every",
        "0.05",
        env=env,
    )
    results = {}
    try:
        results["worker"] = (worker.wait(180), *worker.communicate())
        results["watch"] = (watch.wait(60), *watch.communicate())
        results["watch2"] = (watch2.wait(60), *watch2.communicate())
    finally:
        for p in (worker, watch, watch2):
            if p.poll() is None:
                p.kill()
        sweep.send_signal(signal.SIGINT)  # the loop stops cleanly on Ctrl-C
        try:
            results["sweep"] = (sweep.wait(30), *sweep.communicate())
        except subprocess.TimeoutExpired:
            sweep.kill()
            results["sweep"] = (None, *sweep.communicate())
    return results


def test_pgbouncer__transaction_pooling_worker_watch_and_sweep(bouncer, db_url, plunk, conn):
    campaign = _started_campaign(plunk)
    env = {k: v for k, v in os.environ.items() if k != "PLUNK_SQL_PREPARE_THRESHOLD"}
    with SmtpSink() as sink:
        results = _send_through(bouncer, db_url, campaign, sink, env)
        received = sink.received
    for name, (code, _out, err) in results.items():
        assert (code, err) == (0, ""), (name, code, err)
    status, sent_emails = conn.execute(
        "SELECT c.status::text, (SELECT count(*) FROM public.emails AS e"
        "  WHERE e.\"campaignId\" = c.id AND e.status::text = 'SENT')"
        " FROM public.campaigns AS c WHERE c.id = %s",
        (campaign,),
    ).fetchone()
    assert (status, sent_emails, received) == ("SENT", CONTACTS, CONTACTS)
    assert '"status": "SENT"' in results["watch"][1].splitlines()[-1]


def test_pgbouncer__prepared_statements_break_transaction_pooling(bouncer, db_url, plunk):
    """psycopg's default (prepare after 5 executions) through PgBouncer 1.18: a failure."""
    version = pgbouncer_version()
    if version is None or version >= (1, 21):
        pytest.skip(f"PgBouncer {version} may track prepared statements (max_prepared_statements)")
    campaign = _started_campaign(plunk)
    env = os.environ | {"PLUNK_SQL_PREPARE_THRESHOLD": "5"}
    with SmtpSink() as sink:
        results = _send_through(bouncer, db_url, campaign, sink, env)
    errors = " ".join(err for _code, _out, err in results.values())
    assert any(code != 0 for code, _out, _err in results.values()) or errors
    assert "prepared statement" in errors, results


def test_pgbouncer__prepare_threshold_switch():
    from plunk_sql.connection import ConfigError, prepare_threshold

    env = "PLUNK_SQL_PREPARE_THRESHOLD"
    old = os.environ.pop(env, None)
    try:
        assert prepare_threshold() is None
        for value, expected in (("none", None), ("OFF", None), ("0", 0), (" 5 ", 5)):
            os.environ[env] = value
            assert prepare_threshold() == expected
        for bad in ("-1", "five"):
            os.environ[env] = bad
            with pytest.raises(ConfigError, match=env):
                prepare_threshold()
    finally:
        os.environ.pop(env, None)
        if old is not None:
            os.environ[env] = old


def test_pgbouncer__client_and_worker_connections_prepare_nothing(db_url, monkeypatch):
    from plunk_sql.api import Client
    from plunk_sql.connection import connect

    monkeypatch.delenv("PLUNK_SQL_PREPARE_THRESHOLD", raising=False)
    with Client(db_url) as client:
        for _ in range(10):
            client.all_progress()
        assert client._conn is not None and client._conn.prepare_threshold is None
    monkeypatch.setenv("PLUNK_SQL_PREPARE_THRESHOLD", "2")
    with connect(db_url) as c:
        assert c.prepare_threshold == 2
    assert isinstance(c, psycopg.Connection)
