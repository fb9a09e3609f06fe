"""Client wrappers of the operator functions: sweep, pause, resume, cancel, repair;
and the worker's --wait, which relies on the sweep to return expired claims."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest

from plunk_sql import errors
from plunk_sql.api import Client, SweepAction
from plunk_sql.testing.smtp_sink import SmtpSink
from plunk_sql.worker import SmtpConfig, SmtpSender, Worker, WorkerConfig


@pytest.fixture
def client(db_url):
    with Client(db_url) as c:
        yield c


def _started(plunk, n=3):
    pid = plunk.project()
    plunk.contacts(pid, n)
    cid = plunk.campaign(pid)
    plunk.start(cid)
    return pid, cid


def test_api__pause_and_resume(client, plunk):
    _, cid = _started(plunk)
    client.pause(cid)
    assert client.claim(cid) == []
    assert client.progress(cid).paused
    with pytest.raises(errors.IllegalTransition):
        client.pause(cid)
    client.resume(cid)
    assert not client.progress(cid).paused
    assert len(client.claim(cid)) == 3
    with pytest.raises(errors.IllegalTransition):
        client.resume(cid)
    with pytest.raises(errors.NotFound):
        client.pause("nope")


def test_api__cancel(client, plunk):
    _, untouched = _started(plunk)
    assert client.cancel(untouched) == "DRAFT"  # nothing had left yet
    _, claimed = _started(plunk)
    client.claim(claimed, batch_size=1)
    # Nothing left yet: DRAFT even with a live claim (issue 13: the retired run refuses its email).
    assert client.cancel(claimed) == "DRAFT"
    assert plunk.campaign_row(claimed)["status"] == "DRAFT"
    with pytest.raises(errors.IllegalTransition):
        client.cancel(claimed)


def test_api__repair_legacy_campaign(client, plunk, conn):
    pid = plunk.project()
    (contact,) = plunk.contacts(pid, 1)
    legacy = plunk.campaign(pid, status="SENDING")  # started by Plunk, not by plunk_sql
    plunk.create_emails(legacy, pid, [contact], status="SENT")
    assert client.repair(legacy) == "SENT"
    assert plunk.campaign_row(legacy)["status"] == "SENT"
    _, mine = _started(plunk)
    with pytest.raises(errors.IllegalTransition):
        client.repair(mine)


def test_api__sweep_returns_expired_claims(client, plunk):
    _, cid = _started(plunk, 2)
    assert len(client.claim(cid, lease=timedelta(milliseconds=200))) == 2
    time.sleep(0.3)
    actions = client.sweep()
    assert SweepAction("lease_expired", cid, 2) in actions
    assert client.progress(cid).pending == 2


def test_worker__wait_picks_up_claims_the_sweep_returns(db_url, client, plunk):
    _, cid = _started(plunk, 5)
    # A worker that crashed after claiming two recipients (short lease).
    lost = client.claim(cid, batch_size=2, lease=timedelta(seconds=1))
    with SmtpSink() as sink:
        config = WorkerConfig(db_url, cid, SmtpConfig.from_url(sink.url), concurrency=1, wait=True)
        worker = Worker(config)
        thread = threading.Thread(target=worker.run)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while sink.received < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)
            assert sink.received == 3 and thread.is_alive()  # waiting, not exited
            time.sleep(1.0)  # the lease runs out
            assert SweepAction("lease_expired", cid, 2) in client.sweep()
            thread.join(20)
        finally:
            worker.stop()
            thread.join(20)
        assert not thread.is_alive()
    assert sink.received == 5
    assert {f"{r.contact_id}@example.com" for r in lost} <= set(sink.by_rcpt)
    assert client.progress(cid).status == "SENT"


def test_worker__claims_cancelled_underneath_are_refused_not_sent(db_url, client, plunk):
    _, cid = _started(plunk, 3)
    batch = client.claim(cid)
    events: list[str] = []
    with SmtpSink() as sink:
        config = WorkerConfig(db_url, cid, SmtpConfig.from_url(sink.url))
        worker = Worker(config, on_event=lambda event, **f: events.append(event))
        worker.load()  # while SENDING: campaign_message refuses a cancelled campaign
        assert client.cancel(cid) == "DRAFT"  # nothing had left: the run is retired
        with psycopg.connect(db_url, autocommit=True) as conn:
            worker._process(conn, SmtpSender(config.smtp), batch)
    assert sink.received == 0
    assert events.count("email_refused") == 3
    assert plunk.campaign_row(cid)["status"] == "DRAFT"
