"""`plunk-sql migrate`: install or upgrade the toolkit in a database.

Order: (optionally) Plunk's own tables, then the toolkit's state through yoyo
migrations (tracked in schema plunk_sql), then every function/trigger/view
file of sql/ in one transaction. Re-running is a no-op.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict
from yoyo import get_backend, read_migrations

from plunk_sql import cron, plunk_schema, resources
from plunk_sql.connection import connect, prepare_threshold
from plunk_sql.queries import query

SCHEMA = "plunk_sql"
DEFAULT_ROLE_PREFIX = "plunk_sql"
_ROLE_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


class MigrateRefused(RuntimeError):
    """migrate refused before changing anything; the message says why, on one line."""


class PlunkTablesMissing(MigrateRefused):
    """The database has no Plunk tables and --with-plunk-tables was not given."""


class UnsupportedPlunkSchema(MigrateRefused):
    """Plunk's tables lack a table or column the toolkit uses (e.g. Plunk v1: no segments)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(plunk_schema.refusal(missing))
        self.missing = missing


@dataclass(frozen=True)
class MigrateResult:
    created_plunk_tables: bool
    applied_migrations: list[str]
    function_files: list[str]
    # pg_cron scheduling of the sweep (None when scheduling was turned off).
    cron: cron.ScheduleResult | None = field(default=None)
    # The role names in use and what of the least-privilege setup this user could not do
    # (plunk_sql.privilege_gaps(): (kind, statement) rows an administrator still runs).
    roles: tuple[str, str] = (f"{DEFAULT_ROLE_PREFIX}_worker", f"{DEFAULT_ROLE_PREFIX}_operator")
    privilege_gaps: list[tuple[str, str]] = field(default_factory=list)


def yoyo_url(database_url: str) -> str:
    """A yoyo URL for psycopg 3 from a libpq URL or key=value conninfo string.

    Every connection parameter travels as a query argument (yoyo passes them to
    psycopg.connect), so sockets, passwords and sslmode survive unchanged.
    """
    params = {k: str(v) for k, v in conninfo_to_dict(database_url).items() if v is not None}
    dbname = params.pop("dbname", "")
    params["schema"] = SCHEMA
    return f"postgresql+psycopg:///{dbname}?{urlencode(params)}"


def has_plunk_tables(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT to_regclass('public.campaigns') IS NOT NULL"
        " AND to_regclass('public.emails') IS NOT NULL"
        " AND to_regclass('public.contacts') IS NOT NULL"
    ).fetchone()
    return bool(row and row[0])


def check_role_prefix(prefix: str) -> str:
    """The prefix, or MigrateRefused when it is not a lower-case identifier (<= 40 chars)."""
    if not _ROLE_PREFIX.match(prefix):
        raise MigrateRefused(
            f"--role-prefix {prefix!r}: use a lower-case SQL identifier of at most 40 "
            "characters (letters, digits, _), e.g. plunk_sql_staging"
        )
    return prefix


def apply_functions(conn: psycopg.Connection, role_prefix: str | None = None) -> list[str]:
    """(Re)apply sql/NN_*.sql in one transaction: all or nothing. role_prefix, when given,
    is stored first (setting role_prefix), so 95_roles.sql creates and grants those names."""
    files = resources.function_files()
    with conn.transaction():
        # Two migrates at once would race on CREATE OR REPLACE; take turns.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('plunk_sql.migrate'))")
        if role_prefix is not None:
            conn.execute(query("set_role_prefix"), {"prefix": check_role_prefix(role_prefix)})
        for path in files:
            conn.execute(path.read_text())  # no parameters: multi-statement text is allowed
    return [p.name for p in files]


def migrate(
    database_url: str,
    *,
    with_plunk_tables: bool = False,
    schedule_sweep: bool | None = None,
    role_prefix: str | None = None,
) -> MigrateResult:
    """schedule_sweep: schedule the sweep with pg_cron (plunk_sql.cron) after installing;
    None means yes unless PLUNK_SQL_SCHEDULE_SWEEP=0. role_prefix: the toolkit's role names
    are <prefix>_worker and <prefix>_operator (None keeps the stored one, first plunk_sql)."""
    if role_prefix is not None:
        check_role_prefix(role_prefix)
    created = False
    with connect(database_url, autocommit=True) as conn:
        if not has_plunk_tables(conn):
            if not with_plunk_tables:
                raise PlunkTablesMissing(
                    "this database has no Plunk tables (public.campaigns, emails, contacts); "
                    "install into Plunk's database, or pass --with-plunk-tables on an empty one"
                )
            with conn.transaction():
                conn.execute(resources.plunk_tables_file().read_text())
            created = True
        # Before anything of the toolkit exists: refuse a schema its functions cannot use.
        if lacking := plunk_schema.missing(conn):
            raise UnsupportedPlunkSchema(lacking)
        # yoyo keeps its tracking tables in plunk_sql but does not create the schema.
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")

    backend = get_backend(yoyo_url(database_url))
    try:
        # yoyo opens its own psycopg connection: same prepare switch as everywhere.
        backend.connection.prepare_threshold = prepare_threshold()
        migrations = read_migrations(str(resources.migrations_dir()))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        applied = [m.id for m in pending]
    finally:
        backend.connection.close()

    with connect(database_url, autocommit=True) as conn:
        files = apply_functions(conn, role_prefix)
        roles_row = conn.execute(query("role_names")).fetchone()
        gaps = [(str(k), str(s)) for k, s in conn.execute(query("privilege_gaps")).fetchall()]
    if schedule_sweep is None:
        schedule_sweep = cron.enabled_by_env()
    scheduled = cron.schedule_sweep(database_url) if schedule_sweep else None
    assert roles_row is not None
    roles = (str(roles_row[0]), str(roles_row[1]))
    return MigrateResult(created, applied, files, scheduled, roles, gaps)
