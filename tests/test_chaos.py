"""The short chaos run (make stress runs the long one) and a check that its verifier finds
violations when there are some."""

from __future__ import annotations

import psycopg

from plunk_sql.testing import chaos


def test_chaos__short_run_ends_sent_without_violations(capsys):
    report = chaos.run(recipients=3000, workers=4, lease="10 seconds", timeout=240, fault_rate=3)
    print(report.text())
    assert report.status == "SENT", report.text()
    assert report.ok, report.text()
    assert sum(report.outcomes.values()) == 3000
    assert report.outcomes.get("sent", 0) + report.outcomes.get("failed", 0) == report.emails
    assert report.faults.restarts == 1
    assert report.faults.worker_kills >= 1
    assert report.faults.unsubscribes + report.faults.deletes >= 1
    assert report.faults.worker_crashes == 0
    # Plunk-style cancels of the side campaigns, one per shape (issue 13).
    assert report.faults.plunk_cancels == len(chaos.PLUNK_CANCEL_SHAPES)


def test_chaos__verify_detects_violations(db_url, conn, plunk):
    """Fabricated faults in the rows: each kind is counted by its check."""
    conn.execute(chaos.CHAOS_DDL)
    project = plunk.project()
    contacts = plunk.contacts(project, 4)
    campaign = plunk.campaign(project)
    plunk.start(campaign)
    # A contact opts out (committed), and a claim that could see it hands it out anyway.
    conn.execute(
        "INSERT INTO chaos.opt_out (contact_id, kind) VALUES (%s, 'unsubscribed')", (contacts[0],)
    )
    conn.execute(
        "INSERT INTO chaos.claim_log (contact_id, worker, snap)"
        " VALUES (%s, 't', pg_current_snapshot())",
        (contacts[0],),
    )
    [email] = plunk.create_emails(campaign, project, [contacts[0]])
    plunk.set_email_status([email], "SENT")
    conn.execute(
        "INSERT INTO chaos.outbox (email_id, contact_id, worker) VALUES (%s, %s, 't'), (%s, %s, 't')",
        (email, contacts[0], email, contacts[0]),
    )
    # Counters tampered with.
    conn.execute(
        "UPDATE plunk_sql.run_slots SET failed = failed + 1 WHERE campaign_id = %s AND slot = 0",
        (campaign,),
    )
    report = chaos.verify(conn, campaign, chaos.Report(recipients=4, workers=0))
    v = report.violations
    assert v["campaign_not_sent"] == 1
    assert v["recipients_open"] == 3
    assert v["duplicate_messages"] == 1
    assert v["mailed_after_opt_out"] == 1
    assert v["claimed_after_opt_out"] == 1
    assert v["counters_differ_from_recount"] == 1
    assert v["duplicate_emails"] == 0
    assert not report.ok
    # A claim whose snapshot predates the opt-out is not a violation.
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("TRUNCATE chaos.claim_log, chaos.opt_out")
        other.execute(
            "INSERT INTO chaos.claim_log (contact_id, worker, snap)"
            " VALUES (%s, 't', pg_current_snapshot())",
            (contacts[0],),
        )
        other.execute(
            "INSERT INTO chaos.opt_out (contact_id, kind) VALUES (%s, 'unsubscribed')",
            (contacts[0],),
        )
    report = chaos.verify(conn, campaign, chaos.Report(recipients=4, workers=0))
    assert report.violations["mailed_after_opt_out"] == 0
