"""Small assertions shared by the tests."""

from __future__ import annotations

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


def check_invariants(conn: psycopg.Connection, campaign_id: str) -> dict:
    """design.md invariants 1-4 for one campaign, checked from the rows."""
    row = conn.execute(
        """
        SELECT p.total, p.pending, p.claimed, p.in_flight, p.sent, p.failed, p.skipped, p.status,
               c."totalRecipients", c."sentCount",
               (SELECT count(*) FROM plunk_sql.recipients r WHERE r.campaign_id = p.campaign_id),
               (SELECT count(*) FROM plunk_sql.recipients r
                 WHERE r.campaign_id = p.campaign_id AND r.state = 'sent'),
               (SELECT count(*) FROM plunk_sql.recipients r
                 WHERE r.campaign_id = p.campaign_id AND r.state = 'failed'),
               (SELECT count(*) FROM plunk_sql.recipients r
                 WHERE r.campaign_id = p.campaign_id AND r.state = 'skipped'),
               (SELECT count(*) FROM (SELECT 1 FROM public.emails e WHERE e."campaignId" = p.campaign_id
                 GROUP BY e."contactId" HAVING count(*) > 1) d)
        FROM plunk_sql.campaign_progress p
        JOIN public.campaigns c ON c.id = p.campaign_id
        WHERE p.campaign_id = %s
        """,
        (campaign_id,),
    ).fetchone()
    assert row is not None, f"campaign {campaign_id} has no snapshot"
    (
        total,
        pending,
        claimed,
        in_flight,
        sent,
        failed,
        skipped,
        status,
        total_recipients,
        sent_count,
        snapshot,
        recount_sent,
        recount_failed,
        recount_skipped,
        duplicates,
    ) = row
    assert (
        pending + claimed + in_flight + sent + failed + skipped
        == total
        == total_recipients
        == snapshot
    )
    assert (sent, failed, skipped) == (recount_sent, recount_failed, recount_skipped)
    assert sent_count == sent
    assert duplicates == 0
    settled_all = pending + claimed + in_flight == 0
    if status == "SENDING":
        assert not settled_all or total == 0, "every recipient settled but campaign still SENDING"
    if status == "SENT":
        assert settled_all
    return {"total": total, "sent": sent, "failed": failed, "skipped": skipped, "status": status}


def server_has_icu(conn: psycopg.Connection) -> bool:
    """Whether the server has ICU's root collation (the email compiler uses it when present)."""
    return bool(
        conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_collation WHERE collname = 'und-x-icu')"
        ).fetchone()[0]
    )
