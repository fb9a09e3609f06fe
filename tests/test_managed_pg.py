"""Managed PostgreSQL (RDS, Cloud SQL, Supabase): the app user owns Plunk's database but is
not a superuser, with or without CREATEROLE.

Each test uses its own --role-prefix: role names are cluster-wide, and the prefix is
what keeps the roles of two databases of one cluster apart.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.factories import Plunk


@dataclass
class Owner:
    url: str  # as the owner of the database (not a superuser)
    role: str
    prefix: str
    dbname: str


def cli(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plunk_sql.cli", "--database-url", url, *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _owner(pg_server, createrole: bool) -> Iterator[Owner]:
    tag = uuid.uuid4().hex[:8]
    role, prefix, dbname = f"owner_{tag}", f"t{tag}", f"managed_{tag}"
    logins = [f"{prefix}_op_login", f"{prefix}_worker_login"]
    with pg_server.admin() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN {'CREATEROLE' if createrole else ''}")
        conn.execute(f"CREATE DATABASE {dbname} OWNER {role}")
    try:
        yield Owner(make_conninfo(pg_server.url(dbname), user=role), role, prefix, dbname)
    finally:
        with pg_server.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            for r in [*logins, f"{prefix}_worker", f"{prefix}_operator", role]:
                conn.execute(f"DROP ROLE IF EXISTS {r}")


@pytest.fixture
def owner_with_createrole(pg_server) -> Iterator[Owner]:
    yield from _owner(pg_server, createrole=True)


@pytest.fixture
def owner_without_createrole(pg_server) -> Iterator[Owner]:
    yield from _owner(pg_server, createrole=False)


def _gaps(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT kind, statement FROM plunk_sql.privilege_gaps()").fetchall()


def _operator_login(pg_server, owner: Owner) -> str:
    login = f"{owner.prefix}_op_login"
    with pg_server.admin() as conn:
        conn.execute(f"CREATE ROLE {login} LOGIN IN ROLE {owner.prefix}_operator")
    return make_conninfo(pg_server.url(owner.dbname), user=login)


def test_managed_pg__owner_with_createrole_gets_prefixed_roles_and_grants(
    pg_server, owner_with_createrole
):
    owner = owner_with_createrole
    res = cli(owner.url, "migrate", "--with-plunk-tables", "--role-prefix", owner.prefix)
    assert (res.returncode, res.stderr) == (0, ""), res.stdout
    assert f"roles: {owner.prefix}_worker, {owner.prefix}_operator" in res.stdout
    assert "cluster-wide" in res.stdout and "INCOMPLETE" not in res.stdout
    assert _gaps(owner.url) == []

    # doctor as the operator role: no `permission denied for table _yoyo_migration`; the
    # sweep the operator ran is recognised by its time although no job or loop is visible.
    op_url = _operator_login(pg_server, owner)
    assert cli(op_url, "sweep").returncode == 0
    res = cli(op_url, "doctor")
    assert (res.returncode, res.stderr) == (0, ""), res.stdout
    assert "sweep mode: unseen" in res.stdout and "all good" in res.stdout
    assert "_yoyo_migration" not in res.stdout
    if pg_server.pg_cron:  # the operator may not read cron.job: a note, not a problem
        assert "note: cannot read pg_cron's jobs in 'postgres'" in res.stdout

    # Re-running migrate keeps the stored prefix.
    res = cli(owner.url, "migrate")
    assert res.returncode == 0 and f"roles: {owner.prefix}_worker" in res.stdout


def test_managed_pg__owner_without_createrole_is_told_what_an_admin_runs(
    pg_server, owner_without_createrole
):
    owner = owner_without_createrole
    res = cli(owner.url, "migrate", "--with-plunk-tables", "--role-prefix", owner.prefix)
    assert (res.returncode, res.stderr) == (0, ""), res.stdout
    out = res.stdout
    assert "privileges: INCOMPLETE" in out
    assert f"missing roles: {owner.prefix}_worker, {owner.prefix}_operator" in out
    create = [line.strip() for line in out.splitlines() if line.strip().startswith("CREATE ROLE")]
    assert create == [
        f"CREATE ROLE {owner.prefix}_worker NOLOGIN;",
        f"CREATE ROLE {owner.prefix}_operator NOLOGIN;",
    ]
    assert {k for k, _ in _gaps(owner.url)} == {"role", "toolkit", "plunk"}

    res = cli(owner.url, "doctor")
    assert res.returncode == 1
    assert f"PROBLEM: role {owner.prefix}_worker is missing" in res.stdout
    assert "grants of the least-privilege setup are missing" in res.stdout

    # The administrator runs exactly the printed statements; migrate again grants the rest.
    with pg_server.admin() as conn:
        for statement in create:
            conn.execute(statement)
    res = cli(owner.url, "migrate")
    assert res.returncode == 0 and "INCOMPLETE" not in res.stdout, res.stdout
    assert _gaps(owner.url) == []

    # The worker role works: a login holding only it reads a SENDING campaign's message.
    with psycopg.connect(owner.url, autocommit=True) as conn:
        plunk = Plunk(conn)
        pid = plunk.project()
        plunk.contacts(pid, 2)
        campaign = plunk.campaign(pid)
        plunk.start(campaign)
    login = f"{owner.prefix}_worker_login"
    with pg_server.admin() as conn:
        conn.execute(f"CREATE ROLE {login} LOGIN IN ROLE {owner.prefix}_worker")
    with psycopg.connect(make_conninfo(pg_server.url(owner.dbname), user=login)) as w:
        rows = w.execute("SELECT * FROM plunk_sql.claim_batch(%s, 10, '1 minute')", (campaign,))
        assert len(rows.fetchall()) == 2


def test_managed_pg__bad_role_prefix_is_refused_before_anything(empty_db):
    res = cli(empty_db, "migrate", "--with-plunk-tables", "--role-prefix", "Bad-Prefix")
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "--role-prefix 'Bad-Prefix'" in res.stderr
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('public.emails')").fetchone() == (None,)
