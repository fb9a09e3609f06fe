"""Upgrade safety: a database mid-send is migrated to the current toolkit and the send ends
intact. Step one installs the first release (migration 0001 and the function files 10..60
that shipped with it), starts a campaign and sends part of it, leaving recipients claimed,
in flight (emails PENDING and SENDING) and settled; step two is a full `migrate` while a
worker's transaction is open; then the send is finished and every invariant is checked."""

from __future__ import annotations

import subprocess
import threading
import time

import psycopg
import pytest
from yoyo import get_backend, read_migrations

from plunk_sql import resources
from plunk_sql.migrate import migrate, yoyo_url
from tests.factories import Plunk

FIRST_RELEASE_MIGRATIONS = {"0001_initial"}
FIRST_RELEASE_MAX_FILE = "60"  # sql/10_util.sql .. sql/60_progress.sql
FIRST_RELEASE_COMMIT = "cbccd12"  # the last commit before migration 0002


def install_first_release(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(resources.plunk_tables_file().read_text())
        conn.execute("CREATE SCHEMA IF NOT EXISTS plunk_sql")
    backend = get_backend(yoyo_url(url))
    try:
        migrations = read_migrations(str(resources.migrations_dir())).filter(
            lambda m: m.id in FIRST_RELEASE_MIGRATIONS
        )
        assert [m.id for m in migrations] == sorted(FIRST_RELEASE_MIGRATIONS)
        with backend.lock():
            backend.apply_migrations(backend.to_apply(migrations))
    finally:
        backend.connection.close()
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for _name, text in first_release_function_files():
            conn.execute(text)


def first_release_function_files() -> list[tuple[str, str]]:
    """sql/10..60 as the first release shipped them (from git history: today's files use
    columns and tables of later migrations, e.g. campaign_runs.kind and retired_runs)."""
    root = resources.migrations_dir().parent
    names = [p.name for p in resources.function_files() if p.name[:2] <= FIRST_RELEASE_MAX_FILE]
    files = []
    for name in names:
        shown = subprocess.run(
            ["git", "-C", str(root), "show", f"{FIRST_RELEASE_COMMIT}:sql/{name}"],
            capture_output=True,
            text=True,
        )
        if shown.returncode == 0:  # files added after the first release did not ship with it
            files.append((name, shown.stdout))
    if not files:
        pytest.skip("the first release's SQL needs the git history of a checkout")
    return files


def applied_migrations(conn: psycopg.Connection) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT migration_id FROM plunk_sql._yoyo_migration ORDER BY migration_id"
        ).fetchall()
    ]


def test_upgrade__mid_send_migration_keeps_the_send_intact(empty_db):
    install_first_release(empty_db)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert applied_migrations(conn) == ["0001_initial"]
        plunk = Plunk(conn)
        project = plunk.project()
        contacts = plunk.contacts(project, 40)
        campaign = plunk.campaign(project)
        assert plunk.start(campaign) == 40

        # Partial send under the first release: 10 sent, 2 failed, 4 SENDING, 4 PENDING,
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
        worker = psycopg.connect(empty_db)
        [open_email] = plunk.create_emails(campaign, project, [claimed[20]], conn=worker)
        errors: list[BaseException] = []

        def upgrade() -> None:
            try:
                migrate(empty_db)
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

        all_ids = sorted(p.stem for p in resources.migrations_dir().glob("[0-9]*.sql")
                         if not p.stem.endswith(".rollback"))  # fmt: skip
        assert applied_migrations(conn) == all_ids
        after = plunk.progress(campaign)
        for key in ("total", "sent", "failed", "skipped", "in_flight", "claimed", "pending"):
            expected = before[key] + (1 if key == "in_flight" else -1 if key == "claimed" else 0)
            assert after[key] == expected, (key, before, after)
        assert after["status"] == "SENDING"

        # Finish the send with the upgraded toolkit: the old claims and emails still count.
        plunk.set_email_status([*emails[12:20], open_email], "SENT")
        rest = [r[0] for r in plunk.claim(campaign, 100, "1 minute")]
        assert len(rest) == 13
        leftovers = claimed[21:]
        assert len(leftovers) == 5  # still claimed under their first-release lease
        late = plunk.create_emails(campaign, project, rest + leftovers)
        plunk.set_email_status(late, "SENT")

        final = plunk.progress(campaign)
        assert final["status"] == "SENT"
        assert (final["sent"], final["failed"], final["skipped"]) == (37, 2, 1)
        assert final["pending"] == final["claimed"] == final["in_flight"] == 0
        row = plunk.campaign_row(campaign)
        assert (row["sentCount"], row["totalRecipients"]) == (37, 40)
        dupes = conn.execute(
            'SELECT count(*) FROM (SELECT "contactId" FROM public.emails WHERE "campaignId" = %s'
            " GROUP BY 1 HAVING count(*) > 1) AS d",
            (campaign,),
        ).fetchone()[0]
        assert dupes == 0
        recount = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'sent'), count(*) FROM plunk_sql.recipients"
            " WHERE campaign_id = %s",
            (campaign,),
        ).fetchone()
        assert recount == (37, 40)

        # Re-running the migration afterwards is a no-op for the data.
        migrate(empty_db)
        assert plunk.progress(campaign) == final
