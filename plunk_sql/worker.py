"""The reference worker: claim, render, create emails, deliver over SMTP, settle.

Each of `concurrency` threads has its own database connection and its own
SMTP connection, and loops:

1. `plunk_sql.claim_batch` (committed: the claim survives a crash; only an
   expired lease makes it pending again);
2. renders subject and body with Liquid for every claimed contact;
3. creates the batch's `emails` rows in ONE INSERT ("sourceType" CAMPAIGN,
   status PENDING): the toolkit's trigger links them to their recipients;
4. per chunk: moves the rows to SENDING, delivers each message over SMTP, then
   marks them SENT (with the server's message id, "sentAt") or FAILED (with the
   error) in one UPDATE each. The trigger settles the recipients and sets the
   campaign SENT when the last one settles.

SMTP 4xx replies and dropped connections are retried with exponential backoff
(`retries` times); a 5xx reply fails the message at once.

`stop()` (SIGINT/SIGTERM in the CLI) stops claiming; batches already claimed
are delivered and settled, so nothing is lost or sent twice.

A thread that fails (the database or the code raised) hands back what it
never gave to SMTP through `plunk_sql.release_claims`, on a new connection:
its claims whose lease it knows to be in force go back to pending, and the
emails it inserted but never handed to SMTP are deleted with their recipients
pending again, so another worker sends them at once. What it cannot hand back
(the database is unreachable, the lease ran out) is recovered as before: an
expired lease by the sweep, an unsent email as failed ("abandoned") after
`abandon_timeout`. A message handed to SMTP is never handed back. A thread exits
when the campaign is no longer SENDING or has nothing pending (with `wait`:
only when it is no longer SENDING).

Template variables (as Plunk renders campaigns): every key of the contact's
`data` at the top level, then `id` (the contact id), `email`, `data` (the whole
object) and `unsubscribeUrl` (`<unsubscribe_base>/<contact id>`); these four
win over a data key of the same name.
"""

from __future__ import annotations

import base64
import re
import smtplib
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.header import Header
from email.utils import formataddr, formatdate
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from liquid import Environment

from plunk_sql.api import Client, Recipient
from plunk_sql.connection import connect
from plunk_sql.queries import query

_QUEUED_AS = re.compile(r"queued as\s+<?([^\s>]+)>?", re.IGNORECASE)
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    ssl: bool = False  # implicit TLS (smtps://)
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    verify: bool = True  # verify the server certificate for STARTTLS / smtps

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> SmtpConfig:
        """smtp://[user:pass@]host[:port][?starttls=1&timeout=10&verify=0], or smtps://..."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"SMTP URL must start with smtp:// or smtps://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"SMTP URL has no host: {url!r}")
        qs = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        values: dict[str, Any] = {
            "host": parts.hostname,
            "port": parts.port or (465 if implicit else 25),
            "ssl": implicit,
            "starttls": qs.get("starttls", "0").lower() in _TRUE,
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "timeout": float(qs.get("timeout", 30)),
            "verify": qs.get("verify", "1").lower() in _TRUE,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class WorkerConfig:
    database_url: str
    campaign_id: str
    smtp: SmtpConfig
    concurrency: int = 4
    batch_size: int = 100
    lease: timedelta = timedelta(minutes=5)
    chunk_size: int = 25  # messages per SENDING / SENT update
    retries: int = 3
    backoff: float = 0.5  # first retry delay, doubled each time
    max_backoff: float = 30.0
    unsubscribe_base: str = "http://localhost:3000/unsubscribe"
    # Keep polling while the campaign is SENDING even when nothing is pending (claims of a
    # crashed worker come back when their lease expires and the sweep runs).
    wait: bool = False


@dataclass
class WorkerStats:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    batches: int = 0
    released: int = 0  # recipients handed back to pending by a failing thread
    deleted: int = 0  # of them, unsent emails deleted
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, n in counts.items():
                setattr(self, key, getattr(self, key) + n)


@dataclass(frozen=True)
class Campaign:
    """The message of a SENDING campaign, as plunk_sql.campaign_message hands it out."""

    id: str
    subject: str
    body: str
    from_address: str
    from_name: str | None
    reply_to: str | None
    project_id: str


class DeliveryError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass
class _Email:
    id: str
    recipient: Recipient
    subject: str
    body: str
    error: str | None = None  # rendering failed: never delivered


class _Held:
    """What one thread holds and has not given to SMTP: released if the thread fails."""

    def __init__(self) -> None:
        self.claimed: set[str] = set()  # contact ids claimed, no email yet
        self.unsent: set[str] = set()  # email ids inserted, not handed to SMTP
        self.lease_deadline = 0.0  # time.monotonic() before which our lease surely holds

    def claim(self, batch: list[Recipient], deadline: float) -> None:
        self.claimed = {r.contact_id for r in batch}
        self.unsent = set()
        self.lease_deadline = deadline

    def inserted(self, emails: list[_Email]) -> None:
        self.claimed -= {e.recipient.contact_id for e in emails}
        self.unsent |= {e.id for e in emails}

    def settled(self, email_ids: list[str]) -> None:
        self.unsent -= set(email_ids)

    def clear(self) -> None:
        self.claimed, self.unsent = set(), set()


class Renderer:
    """Liquid templates of a campaign, compiled once."""

    def __init__(self, campaign: Campaign, unsubscribe_base: str) -> None:
        env = Environment()
        self.subject = env.from_string(campaign.subject or "")
        self.body = env.from_string(campaign.body or "")
        self.unsubscribe_base = unsubscribe_base.rstrip("/")

    def variables(self, r: Recipient) -> dict[str, Any]:
        data = r.data if isinstance(r.data, dict) else {}
        return {
            **data,
            "id": r.contact_id,
            "email": r.email,
            "data": data,
            "unsubscribeUrl": f"{self.unsubscribe_base}/{r.contact_id}",
        }

    def render(self, r: Recipient) -> tuple[str, str]:
        v = self.variables(r)
        return self.subject.render(**v), self.body.render(**v)


def build_message(campaign: Campaign, email: _Email, message_id: str) -> bytes:
    """A text/html message (base64 body), built without the slow email package."""
    subject = email.subject.replace("\r", " ").replace("\n", " ")
    if not subject.isascii():
        subject = Header(subject, "utf-8").encode()
    sender = campaign.from_address
    if campaign.from_name:
        sender = formataddr((campaign.from_name, campaign.from_address), charset="utf-8")
    headers = [
        f"From: {sender}",
        f"To: {email.recipient.email}",
        f"Subject: {subject}",
        f"Date: {formatdate(localtime=False, usegmt=True)}",
        f"Message-ID: {message_id}",
    ]
    if campaign.reply_to:
        headers.append(f"Reply-To: {campaign.reply_to}")
    headers += [
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: base64",
    ]
    body = base64.encodebytes(email.body.encode("utf-8")).replace(b"\n", b"\r\n")
    return "\r\n".join(headers).encode("ascii") + b"\r\n\r\n" + body


class SmtpSender:
    """One SMTP connection (per worker thread), reconnected on demand."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        context = ssl.create_default_context()
        if not c.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if c.ssl:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                c.host, c.port, timeout=c.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        try:
            if c.starttls and not c.ssl:
                smtp.starttls(context=context)
            smtp.ehlo_or_helo_if_needed()
            if c.username:
                smtp.login(c.username, c.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None

    def send(self, sender: str, rcpt: str, message: bytes) -> str | None:
        """Deliver one message; the server's queue id when its reply names one.

        Raises DeliveryError(transient=True) for 4xx replies and connection
        trouble, DeliveryError(transient=False) for 5xx replies.
        """
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            smtp = self._smtp
            code, resp = smtp.mail(sender)
            if code == 250:
                code, resp = smtp.rcpt(rcpt)
            if code in (250, 251):
                code, resp = smtp.data(message)
                if code == 250:
                    m = _QUEUED_AS.search(resp.decode(errors="replace"))
                    return m.group(1) if m else None
            text = f"{code} {resp.decode(errors='replace')}"
            try:
                smtp.rset()
            except (smtplib.SMTPException, OSError):
                self.close()
            raise DeliveryError(text, transient=400 <= code < 500 or code == -1)
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            raise DeliveryError(f"{exc.smtp_code} {exc.smtp_error!r}", transient=False) from exc
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
            self.close()
            raise DeliveryError(f"connection: {exc}", transient=True) from exc
        except smtplib.SMTPResponseException as exc:
            self.close()
            code = exc.smtp_code
            reply = exc.smtp_error
            text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
            raise DeliveryError(
                f"{code} {text}",
                transient=400 <= code < 500,
            ) from exc


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        *,
        on_event: Callable[..., None] | None = None,
    ) -> None:
        self.config = config
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._on_event = on_event or (lambda event, **fields: None)
        self._threads: list[threading.Thread] = []
        self.campaign: Campaign | None = None
        self.renderer: Renderer | None = None

    # -- control ----------------------------------------------------------

    def stop(self, *, emit: bool = True) -> None:
        """Stop claiming; claimed work is still delivered and settled.

        emit=False from a signal handler (printing there can re-enter stdout)."""
        if not self._stop.is_set():
            self._stop.set()
            if emit:
                self._on_event("stopping")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def load(self) -> Campaign:
        """Read the campaign's message. Raises NotFound (P0002) for an unknown campaign and
        IllegalTransition (55000) unless plunk_sql is sending it."""
        with Client(self.config.database_url) as client:
            self.campaign = Campaign(**client.message(self.config.campaign_id))
        self.renderer = Renderer(self.campaign, self.config.unsubscribe_base)  # fails fast
        return self.campaign

    def start(self) -> None:
        if self.campaign is None:
            self.load()
        for i in range(self.config.concurrency):
            t = threading.Thread(target=self._thread_main, args=(i,), name=f"worker-{i}")
            t.start()
            self._threads.append(t)

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout: float | None = None) -> None:
        """Wait for every thread, or at most `timeout` seconds in all."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def run(self) -> WorkerStats:
        self.start()
        self.join()
        return self.stats

    # -- one thread ---------------------------------------------------------

    def _thread_main(self, index: int) -> None:
        sender = SmtpSender(self.config.smtp)
        held = _Held()
        # The lease as this process can vouch for it: measured from before the claim was
        # sent, less a margin for clock drift between this host and the server.
        lease = self.config.lease.total_seconds()
        vouched = lease - min(lease * 0.1, 30.0)
        try:
            with connect(self.config.database_url, autocommit=True) as conn:
                client = Client(conn)
                while not self._stop.is_set():
                    asked_at = time.monotonic()
                    batch = client.claim(
                        self.config.campaign_id, self.config.batch_size, self.config.lease
                    )
                    if not batch:
                        if self._idle(client):
                            continue
                        break
                    held.claim(batch, asked_at + vouched)
                    self.stats.add(claimed=len(batch), batches=1)
                    self._process(conn, sender, batch, held)
                    held.clear()
        except Exception as exc:
            self.stats.errors.append(f"{type(exc).__name__}: {exc}")
            self._on_event("error", thread=index, error=str(exc))
            self.stop()
            self._release(index, held)
        finally:
            sender.close()

    def _release(self, index: int, held: _Held) -> None:
        """Hand back what a failing thread holds (plunk_sql.release_claims), on a new
        connection: the thread's own may be the thing that failed."""
        claimed = sorted(held.claimed) if time.monotonic() < held.lease_deadline else []
        unsent = sorted(held.unsent)
        if not claimed and not unsent:
            return
        try:
            with connect(self.config.database_url, autocommit=True, connect_timeout=5) as c:
                released, deleted = Client(c).release_claims(
                    self.config.campaign_id, claimed, unsent
                )
        except Exception as exc:  # the database is gone too: the sweep recovers them
            self._on_event("release_failed", thread=index, error=str(exc))
            return
        self.stats.add(released=released, deleted=deleted)
        held.clear()
        self._on_event("released", thread=index, recipients=released, emails_deleted=deleted)

    def _idle(self, client: Client) -> bool:
        """Nothing claimed: True to try again, False when this thread is done."""
        p = client.progress(self.config.campaign_id)
        if p is None or p.status != "SENDING":
            return False
        if p.pending == 0:
            if not self.config.wait:
                return False
            self._stop.wait(1.0)
            return True
        # Paused, or the pending rows were locked by a concurrent claim: wait a little.
        self._stop.wait(0.5 if p.paused else 0.05)
        return True

    def _process(
        self,
        conn: psycopg.Connection,
        sender: SmtpSender,
        batch: list[Recipient],
        held: _Held | None = None,
    ) -> None:
        assert self.campaign is not None and self.renderer is not None
        emails = []
        for r in batch:
            try:
                subject, body = self.renderer.render(r)
                emails.append(_Email(str(uuid.uuid4()), r, subject, body))
            except Exception as exc:  # a template error for this contact's data
                emails.append(
                    _Email(
                        str(uuid.uuid4()), r, self.campaign.subject, self.campaign.body, str(exc)
                    )
                )
        held = held or _Held()
        emails = self._insert(conn, emails)
        held.inserted(emails)
        unrenderable = [e for e in emails if e.error]
        if unrenderable:
            self._mark_failed(conn, [(e.id, f"render: {e.error}") for e in unrenderable])
            held.settled([e.id for e in unrenderable])
        deliverable = [e for e in emails if not e.error]
        size = self.config.chunk_size
        for start in range(0, len(deliverable), size):
            chunk = deliverable[start : start + size]
            conn.execute(query("emails_sending"), {"ids": [e.id for e in chunk]})
            sent: list[tuple[str, str]] = []
            failed: list[tuple[str, str]] = []
            for email in chunk:
                # Given to SMTP from here on, whatever happens next: never handed back.
                held.settled([email.id])
                ok, detail = self._deliver(sender, email)
                (sent if ok else failed).append((email.id, detail))
            if sent:
                conn.execute(
                    query("emails_sent"),
                    {"ids": [i for i, _ in sent], "message_ids": [m for _, m in sent]},
                )
            if failed:
                self._mark_failed(conn, failed)
            self.stats.add(sent=len(sent), failed=len(failed))

    def _insert(self, conn: psycopg.Connection, emails: list[_Email]) -> list[_Email]:
        """One INSERT for the batch; on a refusal, row by row, keeping the rows that link."""
        assert self.campaign is not None
        base = {
            "campaign_id": self.campaign.id,
            "project_id": self.campaign.project_id,
            "from_address": self.campaign.from_address,
        }

        def insert(rows: list[_Email]) -> None:
            conn.execute(
                query("insert_emails"),
                base
                | {
                    "ids": [e.id for e in rows],
                    "contact_ids": [e.recipient.contact_id for e in rows],
                    "subjects": [e.subject for e in rows],
                    "bodies": [e.body for e in rows],
                },
            )

        try:
            insert(emails)
            return emails
        except (psycopg.errors.IntegrityError, psycopg.errors.ObjectNotInPrerequisiteState):
            pass  # e.g. a lease expired and the recipient went to another worker
        kept = []
        for email in emails:
            try:
                insert([email])
                kept.append(email)
            except psycopg.Error as exc:
                self._on_event(
                    "email_refused", contact_id=email.recipient.contact_id, error=str(exc)
                )
        return kept

    def _mark_failed(self, conn: psycopg.Connection, failed: list[tuple[str, str]]) -> None:
        conn.execute(
            query("emails_failed"),
            {"ids": [i for i, _ in failed], "errors": [e[:1000] for _, e in failed]},
        )

    def _deliver(self, sender: SmtpSender, email: _Email) -> tuple[bool, str]:
        """(True, message id) or (False, error) once retries are spent or on a 5xx."""
        assert self.campaign is not None
        domain = self.campaign.from_address.rpartition("@")[2] or "plunk-sql.invalid"
        message_id = f"<{email.id}@{domain}>"
        message = build_message(self.campaign, email, message_id)
        delay = self.config.backoff
        for attempt in range(self.config.retries + 1):
            try:
                queue_id = sender.send(self.campaign.from_address, email.recipient.email, message)
                return True, queue_id or message_id
            except DeliveryError as exc:
                if not exc.transient or attempt == self.config.retries:
                    return False, str(exc)
                self.stats.add(retried=1)
                time.sleep(delay)
                delay = min(delay * 2, self.config.max_backoff)
        raise AssertionError("unreachable")
