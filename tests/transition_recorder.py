"""Records every recipient state move a workload makes, so a test can check each one against
the one definition (plunk_sql.recipient_transitions(), sql/12_recipient_states.sql).

Test-only: a row trigger on plunk_sql.recipients (never installed by migrate, it would tax the
settle path) logs each (old, new) pair, and one on retired_recipients logs a retirement of an
open row ('retired while <state>' -> skipped)."""

from __future__ import annotations

import psycopg

# (from, to) -> count, summed over a session's test databases (tests/conftest.py).
SEEN: dict[tuple[str, str], int] = {}

INSTALL = """
CREATE SCHEMA IF NOT EXISTS plunk_sql_test;
CREATE UNLOGGED TABLE IF NOT EXISTS plunk_sql_test.moves (
    from_state plunk_sql.recipient_state NOT NULL,
    to_state plunk_sql.recipient_state NOT NULL,
    n bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (from_state, to_state)
);
CREATE OR REPLACE FUNCTION plunk_sql_test.record_move() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'retired_recipients' THEN
        INSERT INTO plunk_sql_test.moves (from_state, to_state)
        VALUES (substr(NEW.reason, length('retired while ') + 1)::plunk_sql.recipient_state, NEW.state)
        ON CONFLICT (from_state, to_state) DO UPDATE SET n = plunk_sql_test.moves.n + 1;
    ELSE
        INSERT INTO plunk_sql_test.moves (from_state, to_state) VALUES (OLD.state, NEW.state)
        ON CONFLICT (from_state, to_state) DO UPDATE SET n = plunk_sql_test.moves.n + 1;
    END IF;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER plunk_sql_test_record_move
    AFTER UPDATE OF state ON plunk_sql.recipients
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION plunk_sql_test.record_move();
CREATE OR REPLACE TRIGGER plunk_sql_test_record_retired
    AFTER INSERT ON plunk_sql.retired_recipients
    FOR EACH ROW WHEN (NEW.reason LIKE 'retired while %')
    EXECUTE FUNCTION plunk_sql_test.record_move();
"""

UNINSTALL = """
DROP TRIGGER IF EXISTS plunk_sql_test_record_move ON plunk_sql.recipients;
DROP TRIGGER IF EXISTS plunk_sql_test_record_retired ON plunk_sql.retired_recipients;
DROP SCHEMA IF EXISTS plunk_sql_test CASCADE;
"""


def by_hand(conn: psycopg.Connection, sql: str, params: tuple[object, ...]) -> None:
    """A test's own write of recipients (setting up a state no writer makes): not recorded
    (no trigger fires; superuser only). The CHECK constraints still apply."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(sql, params)


def install(conn: psycopg.Connection) -> None:
    conn.execute(INSTALL)


def uninstall(conn: psycopg.Connection) -> None:
    conn.execute(UNINSTALL)


def recorded(conn: psycopg.Connection) -> dict[tuple[str, str], int]:
    """Every (from, to) pair the workload made since install, with how often."""
    rows = conn.execute(
        "SELECT from_state::text, to_state::text, n FROM plunk_sql_test.moves"
    ).fetchall()
    return {(str(f), str(t)): int(n) for f, t, n in rows}


def allowed(conn: psycopg.Connection) -> set[tuple[str, str]]:
    rows = conn.execute(
        "SELECT DISTINCT from_state::text, to_state::text FROM plunk_sql.recipient_transitions()"
    ).fetchall()
    return {(str(f), str(t)) for f, t in rows}


def disallowed(conn: psycopg.Connection) -> dict[tuple[str, str], int]:
    """Recorded moves that plunk_sql.recipient_transitions() does not allow."""
    ok = allowed(conn)
    return {pair: n for pair, n in recorded(conn).items() if pair not in ok}
