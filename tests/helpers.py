"""Small assertions and set-ups shared by the tests."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest


def raises_sqlstate(sqlstate: str, match: str | None = None):
    """pytest.raises for a psycopg error with the given SQLSTATE (and message regex)."""

    class _Ctx:
        def __enter__(self):
            self._raises = pytest.raises(psycopg.Error, match=match)
            self.excinfo = self._raises.__enter__()
            return self.excinfo

        def __exit__(self, *exc):
            suppressed = self._raises.__exit__(*exc)
            got = self.excinfo.value.sqlstate
            assert got == sqlstate, f"expected SQLSTATE {sqlstate}, got {got}: {self.excinfo.value}"
            return suppressed

    return _Ctx()


def check_invariants(conn: psycopg.Connection, campaign_id: str) -> dict[str, object]:
    """Every invariant of plunk_sql.check_invariants (sql/97_invariants.sql) holds for the
    campaign; returns its total, sent, failed, skipped and status."""
    violated = {
        name: n
        for name, n in conn.execute(
            "SELECT invariant, violations FROM plunk_sql.check_invariants(%s)", (campaign_id,)
        ).fetchall()
        if n
    }
    assert violated == {}, f"campaign {campaign_id} breaks invariants: {violated}"
    row = conn.execute(
        "SELECT total, sent, failed, skipped, status FROM plunk_sql.campaign_progress"
        " WHERE campaign_id = %s",
        (campaign_id,),
    ).fetchone()
    assert row is not None, f"campaign {campaign_id} has no snapshot"
    total, sent, failed, skipped, status = row
    return {"total": total, "sent": sent, "failed": failed, "skipped": skipped, "status": status}


def server_has_icu(conn: psycopg.Connection) -> bool:
    """Whether the server has ICU's root collation (the email compiler uses it when present)."""
    return bool(
        conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_collation WHERE collname = 'und-x-icu')"
        ).fetchone()[0]
    )


def recipient_states(
    conn: psycopg.Connection, campaign_id: str
) -> dict[tuple[str, str | None], int]:
    """The campaign's snapshot rows counted by (state, reason)."""
    rows = conn.execute(
        "SELECT state::text, reason, count(*) FROM plunk_sql.recipients WHERE campaign_id = %s"
        " GROUP BY 1, 2",
        (campaign_id,),
    ).fetchall()
    return {(s, r): n for s, r, n in rows}


def started_campaign(plunk, n: int, **campaign_kwargs: Any) -> tuple[str, str, list[str]]:
    """A project with n contacts and a started campaign whose snapshot holds all n:
    (project, campaign, contact ids). campaign_kwargs go to the factory's campaign()."""
    project = plunk.project()
    contacts = plunk.contacts(project, n)
    campaign = plunk.campaign(project, **campaign_kwargs)
    assert plunk.start(campaign) == n
    return project, campaign, contacts
