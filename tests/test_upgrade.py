"""Release-to-head upgrades: the previous release, taken from git, is installed into a database,
a campaign is sent part way (recipients claimed, in flight as PENDING and SENDING emails, and
settled), the current `migrate` runs while a worker's transaction is open, the send is finished
under the current version, and the upgraded `plunk_sql` catalog is compared with a fresh
install of the current version: no difference.

Generic on purpose: nothing here names a migration or a function file, so a migration added
later is exercised (and a function it forgets to drop is caught) without editing this file."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from yoyo import get_backend, read_migrations

from plunk_sql import resources
from plunk_sql.migrate import migrate, yoyo_url
from tests.factories import Plunk
from tests.helpers import check_invariants

ROOT = Path(__file__).resolve().parent.parent
PREVIOUS_TAG = "v0.1.0"
# The tag's commit: CI's clone may lack tags (or be shallow); the commit id pins the same tree.
PREVIOUS_COMMIT = "48cd309d21d5b8761fdae63a8afa2ce338d1dae2"


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False)


def previous_release_ref() -> str:
    """The previous release's commit: its tag, else its commit id, fetched if a shallow clone
    lacks it. Fails (never skips) when the history cannot be had: the test would prove nothing."""
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.fail("test_upgrade needs the git history of the checkout (git and .git)")
    for ref in (f"{PREVIOUS_TAG}^{{commit}}", f"{PREVIOUS_COMMIT}^{{commit}}"):
        if _git("rev-parse", "--verify", "--quiet", ref).returncode == 0:
            return ref
    fetched = _git("fetch", "--quiet", "--depth=1", "origin", PREVIOUS_COMMIT)
    if (
        fetched.returncode == 0
        and _git("cat-file", "-e", f"{PREVIOUS_COMMIT}^{{commit}}").returncode == 0
    ):
        return PREVIOUS_COMMIT
    pytest.fail(
        f"cannot find the previous release ({PREVIOUS_TAG} / {PREVIOUS_COMMIT}) in git: "
        f"{fetched.stderr.decode(errors='replace').strip()}"
    )


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sql/ and migrations/ of the previous release, extracted from git."""
    ref = previous_release_ref()
    out = tmp_path_factory.mktemp("previous_release")
    archive = _git("archive", "--format=tar", ref, "sql", "migrations")
    assert archive.returncode == 0, archive.stderr.decode(errors="replace")
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    assert list((out / "migrations").glob("0001_*.sql")), "previous release has no migrations"
    return out


def install_release(url: str, release: Path) -> None:
    """What that release's `plunk-sql migrate` did: its yoyo migrations, then its function files
    in name order in one transaction. Plunk's own tables are the current ones (Plunk's schema is
    the environment, not part of the toolkit's release)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(resources.plunk_tables_file().read_text())
        conn.execute("CREATE SCHEMA IF NOT EXISTS plunk_sql")
    backend = get_backend(yoyo_url(url))
    try:
        with backend.lock():
            backend.apply_migrations(backend.to_apply(read_migrations(str(release / "migrations"))))
    finally:
        backend.connection.close()
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for path in sorted((release / "sql").glob("[0-9][0-9]_*.sql")):
            conn.execute(path.read_text())


def applied_migrations(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT migration_id FROM plunk_sql._yoyo_migration ORDER BY migration_id"
    ).fetchall()
    return [r[0] for r in rows]


def migration_ids(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("[0-9]*.sql") if not p.stem.endswith(".rollback"))


# The plunk_sql catalog, as comparable rows. Names, never oids; ACLs included (same cluster, same
# roles). Data is compared only for plunk_sql.settings (its defaults are part of an install).
CATALOG_QUERIES: dict[str, str] = {
    "relations": """
        SELECT c.relname, c.relkind, c.relpersistence, c.reloptions::text, (SELECT pg_catalog.array_agg(x::text ORDER BY x::text) FROM pg_catalog.unnest(c.relacl) AS x)::text,
               pg_catalog.obj_description(c.oid, 'pg_class')
        FROM pg_catalog.pg_class AS c
        WHERE c.relnamespace = 'plunk_sql'::regnamespace AND c.relkind <> 'i'
        ORDER BY 1""",
    "columns": """
        SELECT c.relname, a.attname,
               row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
               pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               a.attstattarget, (SELECT pg_catalog.array_agg(x::text ORDER BY x::text) FROM pg_catalog.unnest(a.attacl) AS x)::text, pg_catalog.col_description(c.oid, a.attnum)
        FROM pg_catalog.pg_attribute AS a
        JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
        LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'plunk_sql'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p', 'c')
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1, 3""",
    "indexes": """
        SELECT i.indexname, i.tablename, i.indexdef
        FROM pg_catalog.pg_indexes AS i
        WHERE i.schemaname = 'plunk_sql'
        ORDER BY 1""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype, pg_catalog.pg_get_constraintdef(k.oid)
        FROM pg_catalog.pg_constraint AS k
        JOIN pg_catalog.pg_class AS c ON c.oid = k.conrelid
        WHERE c.relnamespace = 'plunk_sql'::regnamespace
        ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid),
               pg_catalog.pg_get_functiondef(p.oid), (SELECT pg_catalog.array_agg(x::text ORDER BY x::text) FROM pg_catalog.unnest(p.proacl) AS x)::text,
               pg_catalog.obj_description(p.oid, 'pg_proc')
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = 'plunk_sql'::regnamespace
        ORDER BY 1, 2""",
    "views": """
        SELECT v.viewname, pg_catalog.pg_get_viewdef(format('plunk_sql.%I', v.viewname)::regclass)
        FROM pg_catalog.pg_views AS v
        WHERE v.schemaname = 'plunk_sql'
        ORDER BY 1""",
    # Triggers on plunk_sql's tables and the ones it puts on Plunk's (their function is ours).
    "triggers": """
        SELECT c.relnamespace::regnamespace::text, c.relname, t.tgname, t.tgenabled,
               pg_catalog.pg_get_triggerdef(t.oid)
        FROM pg_catalog.pg_trigger AS t
        JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
        JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
        WHERE NOT t.tgisinternal
          AND (c.relnamespace = 'plunk_sql'::regnamespace
               OR p.pronamespace = 'plunk_sql'::regnamespace)
        ORDER BY 1, 2, 3""",
    "types": """
        SELECT t.typname, t.typtype,
               (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                FROM pg_catalog.pg_enum AS e WHERE e.enumtypid = t.oid),
               (SELECT pg_catalog.array_agg(x::text ORDER BY x::text) FROM pg_catalog.unnest(t.typacl) AS x)::text
        FROM pg_catalog.pg_type AS t
        LEFT JOIN pg_catalog.pg_class AS c ON c.oid = t.typrelid
        WHERE t.typnamespace = 'plunk_sql'::regnamespace
          AND t.typname NOT LIKE '\\_%' AND (c.oid IS NULL OR c.relkind = 'c')
        ORDER BY 1""",
    "schema": """
        SELECT n.nspname, (SELECT pg_catalog.array_agg(x::text ORDER BY x::text) FROM pg_catalog.unnest(n.nspacl) AS x)::text, pg_catalog.obj_description(n.oid, 'pg_namespace'),
               (SELECT string_agg(d.defaclobjtype::text || ':' || d.defaclacl::text, ';' ORDER BY 1)
                FROM pg_catalog.pg_default_acl AS d WHERE d.defaclnamespace = n.oid)
        FROM pg_catalog.pg_namespace AS n
        WHERE n.nspname = 'plunk_sql'""",
    "settings": """
        SELECT s.key, s.value, s.description
        FROM plunk_sql.settings AS s
        ORDER BY 1""",
}


def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in CATALOG_QUERIES.items()}


def catalog_differences(
    upgraded: dict[str, list[tuple[Any, ...]]], fresh: dict[str, list[tuple[Any, ...]]]
) -> list[str]:
    out = []
    for name in CATALOG_QUERIES:
        old, new = set(upgraded[name]), set(fresh[name])
        out += [f"{name}: only after the upgrade: {row}" for row in sorted(old - new, key=str)]
        out += [f"{name}: only in a fresh install: {row}" for row in sorted(new - old, key=str)]
    return out


@pytest.fixture
def release_db(empty_db: str, previous_release: Path) -> Iterator[str]:
    install_release(empty_db, previous_release)
    yield empty_db


def test_upgrade__previous_release_mid_send_migrates_finishes_and_equals_a_fresh_install(
    release_db: str, previous_release: Path, db_url: str
) -> None:
    with psycopg.connect(release_db, autocommit=True) as conn:
        assert applied_migrations(conn) == migration_ids(previous_release / "migrations")
        plunk = Plunk(conn)
        project = plunk.project()
        contacts = plunk.contacts(project, 40)
        campaign = plunk.campaign(project)
        assert plunk.start(campaign) == 40

        # Partial send under the previous release: 10 sent, 2 failed, 4 SENDING, 4 PENDING,
        # 6 claimed without email, 1 skipped (unsubscribed before its claim), 13 pending.
        conn.execute("UPDATE public.contacts SET subscribed = false WHERE id = %s", (contacts[0],))
        claimed = [r[0] for r in plunk.claim(campaign, 27, "1 hour")]
        assert len(claimed) == 26
        emails = plunk.create_emails(campaign, project, claimed[:20])
        plunk.set_email_status(emails[:10], "SENT")
        plunk.set_email_status(emails[10:12], "FAILED")
        plunk.set_email_status(emails[12:16], "SENDING")
        before = plunk.progress(campaign)
        assert (before["sent"], before["failed"], before["skipped"]) == (10, 2, 1)
        assert (before["in_flight"], before["claimed"], before["pending"]) == (8, 6, 13)

        # A worker is mid-transaction when the upgrade starts: an email inserted, not committed.
        worker = psycopg.connect(release_db)
        [open_email] = plunk.create_emails(campaign, project, [claimed[20]], conn=worker)
        errors: list[BaseException] = []

        def upgrade() -> None:
            try:
                migrate(release_db)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=upgrade)
        thread.start()
        deadline = time.monotonic() + 30
        while thread.is_alive() and time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ).fetchone()[0]
            if waiting:
                break
            time.sleep(0.05)
        worker.commit()
        worker.close()
        thread.join(60)
        assert not thread.is_alive()
        assert not errors, errors

        assert applied_migrations(conn) == migration_ids(resources.migrations_dir())
        after = plunk.progress(campaign)
        for key in ("total", "sent", "failed", "skipped", "in_flight", "claimed", "pending"):
            expected = before[key] + (1 if key == "in_flight" else -1 if key == "claimed" else 0)
            assert after[key] == expected, (key, before, after)
        assert after["status"] == "SENDING"
        check_invariants(conn, campaign)

        # Finish the send with the current toolkit: the old claims and emails still count.
        plunk.set_email_status([*emails[12:20], open_email], "SENT")
        rest = [r[0] for r in plunk.claim(campaign, 100, "1 minute")]
        assert len(rest) == 13
        leftovers = claimed[21:]
        assert len(leftovers) == 5  # still claimed under their previous-release lease
        late = plunk.create_emails(campaign, project, rest + leftovers)
        plunk.set_email_status(late, "SENT")

        final = check_invariants(conn, campaign)
        assert final == {"total": 40, "sent": 37, "failed": 2, "skipped": 1, "status": "SENT"}
        progress = plunk.progress(campaign)

        # Re-running the migration afterwards is a no-op for the data.
        migrate(release_db)
        assert plunk.progress(campaign) == progress

    differences = catalog_differences(catalog(release_db), catalog(db_url))
    assert differences == [], "upgraded catalog differs from a fresh install:\n" + "\n".join(
        differences
    )


def test_upgrade__catalog_comparison_sees_a_changed_function_and_a_grant(
    db_url: str, empty_db: str
) -> None:
    """The comparison is not vacuous: an edited definition, a stray grant and a leftover
    function each show up."""
    migrate(empty_db, with_plunk_tables=True)
    assert catalog_differences(catalog(empty_db), catalog(db_url)) == []
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION plunk_sql.leftover() RETURNS int LANGUAGE sql RETURN 1")
        conn.execute("GRANT SELECT ON plunk_sql.campaign_runs TO PUBLIC")
        conn.execute(
            "CREATE OR REPLACE FUNCTION plunk_sql.condition_max_depth() RETURNS integer"
            " LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp RETURN 9"
        )
    differences = catalog_differences(catalog(empty_db), catalog(db_url))
    kinds = {d.split(":")[0] for d in differences}
    assert {"functions", "relations"} <= kinds
    assert any("leftover" in d for d in differences)
    assert any("condition_max_depth" in d and "RETURN 9" in d for d in differences)
