"""The reference worker against real PostgreSQL and a real aiosmtpd server."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections import Counter

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from plunk_sql.commands.common import EXIT_ILLEGAL_STATE
from plunk_sql.errors import IllegalTransition, NotFound
from plunk_sql.testing.cluster import free_port
from plunk_sql.testing.smtp_sink import SmtpSink
from plunk_sql.worker import SmtpConfig, Worker, WorkerConfig


def _campaign(plunk, conn, n, *, subject="Hi", body="<p>x</p>", data=None):
    pid = plunk.project()
    ids = plunk.contacts(pid, n, data=data)
    cid = plunk.campaign(pid)
    conn.execute(
        'UPDATE public.campaigns SET subject = %s, body = %s, "fromName" = %s WHERE id = %s',
        (subject, body, "Acme News", cid),
    )
    plunk.start(cid)
    return pid, cid, ids


def _config(db_url, cid, sink, **kw):
    kw.setdefault("concurrency", 2)
    kw.setdefault("batch_size", 4)
    kw.setdefault("backoff", 0.01)
    return WorkerConfig(db_url, cid, SmtpConfig.from_url(sink.url), **kw)


def _email_rows(conn, cid):
    return conn.execute(
        'SELECT "contactId", status::text, "messageId", "sentAt" IS NOT NULL, error, "sourceType"::text'
        ' FROM public.emails WHERE "campaignId" = %s ORDER BY "contactId"',
        (cid,),
    ).fetchall()


def test_worker__renders_sends_and_settles(db_url, conn, plunk):
    _, cid, ids = _campaign(
        plunk,
        conn,
        7,
        subject="Hello {{ firstName }}",
        body="<p>{{ data.plan }} {{ email }} {{ id }}</p><a href='{{ unsubscribeUrl }}'>u</a>",
        data={"firstName": "Ada", "plan": "pro"},
    )
    with SmtpSink(keep=True) as sink:
        stats = Worker(_config(db_url, cid, sink, unsubscribe_base="https://x.test/u/")).run()
    assert stats.errors == []
    assert (stats.sent, stats.failed, stats.claimed) == (7, 0, 7)
    assert sorted(m.rcpt for m in sink.messages) == sorted(f"{i}@example.com" for i in ids)
    msg = next(m for m in sink.messages if m.rcpt == f"{ids[0]}@example.com")
    assert msg.subject == "Hello Ada"
    assert msg.body == (
        f"<p>pro {ids[0]}@example.com {ids[0]}</p><a href='https://x.test/u/{ids[0]}'>u</a>"
    )
    assert msg.mail_from == "news@example.com"
    rows = _email_rows(conn, cid)
    assert [r[0] for r in rows] == sorted(ids)
    assert all(r[1] == "SENT" and r[3] and r[5] == "CAMPAIGN" for r in rows)
    # The server's queue id ("250 ... queued as sink-N") becomes the messageId.
    assert all(r[2].startswith("sink-") for r in rows)
    assert len({r[2] for r in rows}) == 7
    p = plunk.progress(cid)
    assert (p["status"], p["sent"], p["failed"]) == ("SENT", 7, 0)


def test_worker__retries_4xx_with_backoff(db_url, conn, plunk):
    _, cid, ids = _campaign(plunk, conn, 3)
    flaky = f"{ids[1]}@example.com"

    def responder(rcpt, attempt):
        return "451 4.3.0 try again later" if rcpt == flaky and attempt <= 2 else None

    with SmtpSink(responder=responder) as sink:
        stats = Worker(_config(db_url, cid, sink, retries=3)).run()
    assert sink.attempts[flaky] == 3
    assert stats.retried == 2
    assert sink.received == 3 and not sink.duplicates()
    assert {r[1] for r in _email_rows(conn, cid)} == {"SENT"}
    assert plunk.progress(cid)["status"] == "SENT"


def test_worker__5xx_fails_at_once_and_4xx_after_retries(db_url, conn, plunk):
    _, cid, ids = _campaign(plunk, conn, 4)
    hard, soft = f"{ids[0]}@example.com", f"{ids[1]}@example.com"

    def responder(rcpt, attempt):
        return {hard: "550 5.1.1 no such user", soft: "421 4.7.0 slow down"}.get(rcpt)

    with SmtpSink(responder=responder) as sink:
        stats = Worker(_config(db_url, cid, sink, retries=2)).run()
    assert sink.attempts[hard] == 1  # 5xx: no retry
    assert sink.attempts[soft] == 3  # 4xx: 1 + 2 retries
    assert (stats.sent, stats.failed) == (2, 2)
    rows = {r[0]: r for r in _email_rows(conn, cid)}
    assert rows[ids[0]][1] == "FAILED" and "550" in rows[ids[0]][4]
    assert rows[ids[1]][1] == "FAILED" and "421" in rows[ids[1]][4]
    assert not rows[ids[0]][3]  # no sentAt
    p = plunk.progress(cid)
    assert (p["status"], p["sent"], p["failed"]) == ("SENT", 2, 2)
    reasons = conn.execute(
        "SELECT reason FROM plunk_sql.recipients WHERE campaign_id = %s AND state = 'failed'",
        (cid,),
    ).fetchall()
    assert sorted(r[0][:3] for r in reasons) == ["421", "550"]


def test_worker__connection_refused_is_transient_then_fails(db_url, conn, plunk):
    _, cid, _ = _campaign(plunk, conn, 1)
    config = WorkerConfig(db_url, cid, SmtpConfig(port=free_port()), retries=1, backoff=0.01)
    stats = Worker(config).run()  # nothing listens on that port
    assert (stats.sent, stats.failed, stats.retried) == (0, 1, 1)
    assert "connection" in _email_rows(conn, cid)[0][4]


def test_worker__refuses_campaign_not_sending(db_url, conn, plunk):
    pid = plunk.project()
    plunk.contacts(pid, 2)
    cid = plunk.campaign(pid)  # DRAFT: never started
    with SmtpSink() as sink:
        with pytest.raises(IllegalTransition, match="DRAFT"):
            Worker(_config(db_url, cid, sink)).run()
        with pytest.raises(NotFound):
            Worker(_config(db_url, "no-such-campaign", sink)).run()
        assert sink.received == 0
    cmd = [sys.executable, "-m", "plunk_sql.cli", "--database-url", db_url, "worker"]
    res = subprocess.run(
        [*cmd, "--campaign", cid, "--smtp", "smtp://127.0.0.1:9"], capture_output=True, text=True
    )
    assert res.returncode == EXIT_ILLEGAL_STATE and "(55000)" in res.stderr, res.stderr


def test_worker__runs_as_a_login_role_holding_only_plunk_sql_worker(db_url, conn, plunk):
    """Least privilege end to end: no right on campaigns, contacts or the toolkit's tables."""
    _, cid, ids = _campaign(plunk, conn, 9, subject="Hi {{ data.plan }}", data={"plan": "pro"})
    role = f"mailer_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE plunk_sql_worker")
    try:
        url = make_conninfo(db_url, user=role)
        with psycopg.connect(url) as probe, pytest.raises(psycopg.errors.InsufficientPrivilege):
            probe.execute("SELECT 1 FROM public.campaigns")
        with SmtpSink(keep=True) as sink:
            stats = Worker(_config(url, cid, sink)).run()
        assert stats.errors == []
        assert (stats.sent, sink.received) == (9, 9)
        assert {m.rcpt for m in sink.messages} == {f"{i}@example.com" for i in ids}
        assert plunk.campaign_row(cid)["status"] == "SENT"
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_worker__sigterm_mid_batch_loses_and_duplicates_nothing(db_url, conn, plunk):
    _, cid, ids = _campaign(plunk, conn, 240)

    def slow(rcpt, attempt):
        time.sleep(0.004)  # slows the whole sink: the worker is mid-batch when signalled
        return None

    with SmtpSink(responder=slow) as sink:
        cmd = [sys.executable, "-m", "plunk_sql.cli", "--database-url", db_url, "worker"]
        cmd += ["--campaign", cid, "--smtp", sink.url, "--concurrency", "3", "--batch-size", "20"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while sink.received < 30 and time.monotonic() < deadline:
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert '"event": "stopping"' in out
        states = dict(
            conn.execute(
                "SELECT state::text, count(*) FROM plunk_sql.recipients"
                " WHERE campaign_id = %s GROUP BY state",
                (cid,),
            ).fetchall()
        )
        # Stopped mid-send: claimed batches were finished, nothing is left in the air.
        assert set(states) == {"sent", "pending"}, states
        assert states["sent"] == sink.received
        assert sink.received < 240
        assert not sink.duplicates()

        # A second worker finishes the rest: every recipient exactly once.
        Worker(_config(db_url, cid, sink, concurrency=3, batch_size=20)).run()
    assert sink.received == 240
    assert Counter(sink.by_rcpt.values()) == {1: 240}
    assert set(sink.by_rcpt) == {f"{i}@example.com" for i in ids}
    assert plunk.progress(cid)["status"] == "SENT"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.test", ("mail.test", 25, False, False, None, None)),
        ("smtp://u%40x:p@h:2525?starttls=1", ("h", 2525, True, False, "u@x", "p")),
        ("smtps://h", ("h", 465, False, True, None, None)),
    ],
)
def test_worker__smtp_url(url, expected):
    c = SmtpConfig.from_url(url)
    assert (c.host, c.port, c.starttls, c.ssl, c.username, c.password) == expected


def test_worker__smtp_url_rejects_other_schemes():
    with pytest.raises(ValueError, match="smtp://"):
        SmtpConfig.from_url("http://h")


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return ctx


def test_worker__starttls_and_auth(db_url, conn, plunk, tls_context):
    _, cid, ids = _campaign(plunk, conn, 2)
    with SmtpSink(auth=("mailer", "s3cret"), tls_context=tls_context) as sink:
        smtp = SmtpConfig.from_url(
            f"smtp://mailer:s3cret@{sink.host}:{sink.port}?starttls=1&verify=0"
        )
        stats = Worker(WorkerConfig(db_url, cid, smtp, concurrency=1)).run()
    assert (stats.sent, stats.failed) == (2, 0)
    assert set(sink.by_rcpt) == {f"{i}@example.com" for i in ids}


def test_worker__plaintext_is_refused_where_starttls_is_required(db_url, conn, plunk, tls_context):
    _, cid, _ = _campaign(plunk, conn, 1)
    with SmtpSink(tls_context=tls_context) as sink:
        stats = Worker(_config(db_url, cid, sink, retries=0)).run()
    assert (stats.sent, stats.failed, sink.received) == (0, 1, 0)
    assert "530" in _email_rows(conn, cid)[0][4]  # "Must issue a STARTTLS command first"


def test_worker__wrong_password_fails_at_once(db_url, conn, plunk, tls_context):
    _, cid, _ = _campaign(plunk, conn, 1)
    with SmtpSink(auth=("mailer", "s3cret"), tls_context=tls_context) as sink:
        smtp = SmtpConfig.from_url(
            f"smtp://mailer:wrong@{sink.host}:{sink.port}?starttls=1&verify=0"
        )
        stats = Worker(WorkerConfig(db_url, cid, smtp, concurrency=1, backoff=0.01)).run()
    assert (stats.sent, stats.failed, stats.retried) == (0, 1, 0)
    assert "535" in _email_rows(conn, cid)[0][4]
