"""A local SMTP sink (aiosmtpd) for the demo and the tests.

It accepts every message (250, with a queue id the worker stores as the
email's "messageId"), counts it per recipient, and can inject failures: a
`responder(rcpt, attempt)` returning an SMTP reply such as "451 4.3.0 try
again" or "550 5.1.1 no such user" answers the DATA command instead of 250
(`attempt` counts that recipient's deliveries, from 1). A rejected message is
not counted as received.

    with SmtpSink() as sink:
        ... send to sink.url ...
        assert sink.received == 10
"""

from __future__ import annotations

import itertools
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from plunk_sql.testing.cluster import free_port

Responder = Callable[[str, int], "str | None"]


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt: str
    subject: str
    body: str
    message_id: str


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd hook
        return self.sink._accept(envelope)


class SmtpSink:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        responder: Responder | None = None,
        keep: bool = False,
        auth: tuple[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """tls_context offers STARTTLS and requires it; auth=(user, password) also requires
        SMTP AUTH (PLAIN/LOGIN), after STARTTLS (so it needs tls_context)."""
        if auth is not None and tls_context is None:
            raise ValueError("SmtpSink: auth needs a tls_context (AUTH only after STARTTLS)")
        self.host = host
        self.port = port or free_port()
        self.responder = responder
        self.keep = keep
        self.auth = auth
        self.tls_context = tls_context
        self.messages: list[ReceivedMessage] = []
        self.by_rcpt: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.rejected = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def received(self) -> int:
        with self._lock:
            return sum(self.by_rcpt.values())

    def duplicates(self) -> dict[str, int]:
        """Recipients that received more than one message."""
        with self._lock:
            return {r: n for r, n in self.by_rcpt.items() if n > 1}

    def _accept(self, envelope: Any) -> str:
        rcpts = list(envelope.rcpt_tos)
        with self._lock:
            for rcpt in rcpts:
                self.attempts[rcpt] += 1
            if self.responder is not None:
                for rcpt in rcpts:
                    reply = self.responder(rcpt, self.attempts[rcpt])
                    if reply:
                        self.rejected += 1
                        return reply
            queue_id = f"sink-{next(self._ids)}"
            self.by_rcpt.update(rcpts)
            if self.keep:
                msg = message_from_bytes(envelope.content, policy=policy.default)
                body = msg.get_body(("html", "plain"))
                for rcpt in rcpts:
                    self.messages.append(
                        ReceivedMessage(
                            envelope.mail_from,
                            rcpt,
                            str(msg["Subject"]),
                            body.get_content() if body else "",
                            str(msg["Message-ID"]),
                        )
                    )
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: Any, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self.auth is not None
            and (data.login.decode(), data.password.decode()) == self.auth
        )
        return AuthResult(success=ok, handled=False)

    def start(self) -> SmtpSink:
        kwargs: dict[str, Any] = {}
        if self.auth is not None:
            kwargs |= {
                "auth_required": True,
                "auth_require_tls": True,
                "authenticator": self._authenticate,
            }
        if self.tls_context is not None:
            kwargs |= {"tls_context": self.tls_context, "require_starttls": True}
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:  # pragma: no cover - `python -m plunk_sql.testing.smtp_sink [PORT]`
    import sys
    import time

    sink = SmtpSink(port=int(sys.argv[1]) if len(sys.argv) > 1 else None).start()
    print(f"SMTP sink listening on {sink.url}", flush=True)
    try:
        while True:
            time.sleep(5)
            print(f"received {sink.received}", flush=True)
    except KeyboardInterrupt:
        sink.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
