"""The same install and send on a PostgreSQL testcontainer, when a Docker engine runs here.

No engine (as on the project's CI machines): skipped, with the reason.
"""

from __future__ import annotations

import os
import socket

import psycopg
import pytest

from plunk_sql.migrate import migrate
from tests.factories import Plunk
from tests.helpers import check_invariants


def _docker_engine_available() -> bool:
    """Ping the engine's socket ourselves: docker-py leaks a socket when none answers."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a remote engine: let testcontainers try it
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            sock.connect(host.removeprefix("unix://"))
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False


@pytest.mark.skipif(not _docker_engine_available(), reason="no Docker engine on this machine")
def test_testcontainer__migrate_and_send_on_postgres_15():
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:15", driver=None) as pg:
        url = pg.get_connection_url()
        migrate(url, with_plunk_tables=True)
        with psycopg.connect(url, autocommit=True) as conn:
            plunk = Plunk(conn)
            p = plunk.project()
            plunk.contacts(p, 10)
            c = plunk.campaign(p)
            assert plunk.start(c) == 10
            emails = plunk.create_emails(c, p, [r[0] for r in plunk.claim(c)])
            plunk.set_email_status(emails, "SENT")
            assert check_invariants(conn, c)["status"] == "SENT"
