"""Installing the toolkit: into an empty database, into a Plunk database, twice."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest

from plunk_sql import resources
from plunk_sql.cli import main
from plunk_sql.migrate import PlunkTablesMissing, migrate

ALL_MIGRATIONS = sorted(
    m.stem for m in resources.migrations_dir().glob("0*.sql") if ".rollback" not in m.name
)

# What Prisma would see as drift: columns, indexes, constraints, enum values of
# the public schema (triggers are invisible to Prisma and allowed).
PUBLIC_SCHEMA_FINGERPRINT = """
SELECT 'column', c.relname || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod)
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index', pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'enum', t.typname || '.' || e.enumlabel
FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typnamespace = 'public'::regnamespace
ORDER BY 1, 2
"""


def _fingerprint(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(PUBLIC_SCHEMA_FINGERPRINT).fetchall()


def _toolkit_objects(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT p.proname, md5(p.prosrc) FROM pg_proc p WHERE p.pronamespace = 'plunk_sql'::regnamespace
            UNION ALL SELECT c.relname, c.relkind::text FROM pg_class c WHERE c.relnamespace = 'plunk_sql'::regnamespace
            UNION ALL SELECT t.tgname, t.tgrelid::regclass::text FROM pg_trigger t WHERE NOT t.tgisinternal
            ORDER BY 1, 2
            """
        ).fetchall()


def test_migrate__empty_database_without_flag_is_refused(empty_db):
    with pytest.raises(PlunkTablesMissing, match="--with-plunk-tables"):
        migrate(empty_db)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regnamespace('plunk_sql')").fetchone()[0] is None


def test_migrate__cli_reports_missing_plunk_tables_with_exit_1(empty_db, capsys):
    assert main(["--database-url", empty_db, "migrate"]) == 1
    assert "no Plunk tables" in capsys.readouterr().err


def test_migrate__cli_without_database_exits_2(monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["migrate"]) == 2


def test_migrate__with_plunk_tables_then_again_is_a_noop(empty_db, capsys):
    assert main(["--database-url", empty_db, "migrate", "--with-plunk-tables"]) == 0
    out = capsys.readouterr().out
    assert "created Plunk tables" in out and "0001_initial" in out
    before = (_fingerprint(empty_db), _toolkit_objects(empty_db))

    result = migrate(empty_db, with_plunk_tables=True)
    assert result.applied_migrations == []
    assert not result.created_plunk_tables
    assert (_fingerprint(empty_db), _toolkit_objects(empty_db)) == before


def test_migrate__existing_plunk_database_gets_no_drift(empty_db):
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(resources.plunk_tables_file().read_text())
    before = _fingerprint(empty_db)

    result = migrate(empty_db)  # no flag: the Plunk tables are there

    assert not result.created_plunk_tables
    assert result.applied_migrations == ALL_MIGRATIONS
    assert _fingerprint(empty_db) == before
    with psycopg.connect(empty_db) as conn:
        triggers = {
            r[0]
            for r in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.emails'::regclass AND NOT tgisinternal"
            )
        }
    assert triggers == {
        "plunk_sql_emails_after_insert",
        "plunk_sql_emails_after_update",
        "plunk_sql_emails_after_delete",
        "plunk_sql_emails_refuse_move",  # issue 13
    }


def test_migrate__older_enum_without_suppressed_works(empty_db, plunk_factory_for):
    """Plunk versions before SUPPRESSED: the toolkit compares status as text."""
    ddl = resources.plunk_tables_file().read_text().replace(", 'SUPPRESSED'", "")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(ddl)
    migrate(empty_db)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert "SUPPRESSED" not in {
            r[0] for r in conn.execute('SELECT unnest(enum_range(NULL::"EmailStatus"))::text')
        }
        plunk = plunk_factory_for(conn)
        p = plunk.project()
        ids = plunk.contacts(p, 3)
        c = plunk.campaign(p)
        assert plunk.start(c) == 3
        emails = plunk.create_emails(c, p, [r[0] for r in plunk.claim(c)])
        plunk.set_email_status(emails[:2], "SENT")
        plunk.set_email_status(emails[2:], "FAILED")
        assert plunk.campaign_row(c)["status"] == "SENT"
        assert len(ids) == 3


def test_migrate__conninfo_string_works(empty_db):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    kv = make_conninfo(**conninfo_to_dict(empty_db))  # "host=... dbname=..." form
    assert "://" not in kv
    assert migrate(kv, with_plunk_tables=True).applied_migrations == ALL_MIGRATIONS


def test_packaging__wheel_ships_sql_and_migrations(tmp_path):
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=root,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in resources.function_files():
        assert f"plunk_sql/_sql/{path.name}" in names
    assert "plunk_sql/_sql/plunk_tables.sql" in names
    assert "plunk_sql/_migrations/0001_initial.sql" in names
    assert "plunk_sql/queries.sql" in names
