"""Plunk issue #348: contacts leave a dynamic segment mid-send.

With Plunk's per-batch re-evaluation, the campaign stayed SENDING forever
(39,883 of 39,884). With the snapshot, it ends SENT, and nobody who opted out is
mailed.
"""

from __future__ import annotations

from tests.helpers import check_invariants


def test_seed_incident__audience_changes_mid_send_and_campaign_ends_sent(plunk, conn):
    p = plunk.project()
    ids = plunk.contacts(p, 400, data={"plan": "pro"})
    plunk.contacts(p, 100, data={"plan": "free"}, prefix="free")
    segment = plunk.segment(
        p,
        condition={
            "logic": "AND",
            "groups": [{"filters": [{"field": "data.plan", "operator": "equals", "value": "pro"}]}],
        },
    )
    c = plunk.campaign(p, audience="SEGMENT", segment_id=segment)
    assert plunk.start(c) == 400

    sent_contacts: list[str] = []

    def send_batch(n):
        rows = plunk.claim(c, n)
        emails = plunk.create_emails(c, p, [r[0] for r in rows])
        plunk.set_email_status(emails, "SENDING")
        plunk.set_email_status(emails, "SENT")
        sent_contacts.extend(r[0] for r in rows)

    send_batch(100)
    # Between batches, not-yet-claimed contacts change:
    unsubscribed, moved, deleted = ids[150:160], ids[200:230], ids[300:305]
    conn.execute(
        "UPDATE public.contacts SET subscribed = false, \"updatedAt\" = timezone('UTC', now()) WHERE id = ANY(%s)",
        (unsubscribed,),
    )
    conn.execute(
        'UPDATE public.contacts SET data = \'{"plan": "free"}\', "updatedAt" = timezone(\'UTC\', now())'
        " WHERE id = ANY(%s)",
        (moved,),
    )
    conn.execute("DELETE FROM public.contacts WHERE id = ANY(%s)", (deleted,))
    late_joiners = plunk.contacts(p, 20, data={"plan": "pro"}, prefix="late")
    while plunk.progress(c)["pending"]:
        send_batch(100)

    result = check_invariants(conn, c)
    assert result == {"total": 400, "sent": 385, "failed": 0, "skipped": 15, "status": "SENT"}
    row = plunk.campaign_row(c)
    assert (row["totalRecipients"], row["sentCount"]) == (400, 385)
    # nobody who opted out or was deleted was mailed; moved contacts were (snapshot semantics)
    assert not set(sent_contacts) & set(unsubscribed + deleted)
    assert set(moved) <= set(sent_contacts)
    assert not set(sent_contacts) & set(late_joiners)
    reasons = dict(
        conn.execute(
            "SELECT reason, recipients FROM plunk_sql.recipient_outcomes WHERE campaign_id = %s AND state = 'skipped'",
            (c,),
        ).fetchall()
    )
    assert reasons == {"unsubscribed": 10, "contact deleted": 5}
