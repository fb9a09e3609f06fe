-- The invariants of a send, checked from the rows, in one place: the tests, the chaos run and
-- the demo's reconciliation all call plunk_sql.check_invariants (they used to carry three
-- copies). Applied after 95_roles.sql, so this file revokes its own function from PUBLIC.

-- plunk_sql.check_invariants(campaign_id): one row per invariant, `violations` 0 when it
-- holds. The invariants (design notes, docs/design.md):
--   total_mismatch                  totalRecipients = the run's total = its snapshot rows
--   states_differ_from_total        pending + claimed + in_flight + sent + failed + skipped = total
--   recipient_rows_duplicated       one snapshot row per contact
--   duplicate_emails                at most one emails row per recipient
--   counters_differ_from_recount    the run's counters (sums of its slots, and each slot's
--                                   open: the pool's minus what claims took) equal a recount
--                                   of the snapshot rows; no slot holds
--                                   more than 31 unsynced, a counter below 0 or
--                                   more unsynced than sent; "sentCount" = sent - unsynced while
--                                   something is open, = sent once nothing is (toolkit runs)
--   settled_but_sending             a campaign whose every recipient settled is not SENDING
--   sent_with_open_recipients       a SENT campaign has no open recipient
--   recipients_settled_at_iff_settled, recipients_email_id_when_linked,
--   recipients_reason_iff_failed_or_skipped, recipients_lease_when_claimed
--                                   each recipient's columns as its state says (settled_at iff
--                                   settled; email_id NULL while pending/claimed, set once in
--                                   flight, sent or failed; reason iff failed/skipped; a lease
--                                   iff claimed)
--   emails_unlinked                 every email of the campaign is linked to its recipient
-- (Emails may still change status after a campaign is SENT: Plunk's late delivery events.)
-- Errors: 22004 null id; P0002 unknown campaign. A campaign plunk_sql did not start has no
-- snapshot: every row then reports total_mismatch 1.
-- Locks: none (reads, in the caller's snapshot). Cost: scans the campaign's snapshot and
-- emails (a check, not a hot path).
CREATE OR REPLACE FUNCTION plunk_sql.check_invariants(p_campaign_id text)
RETURNS TABLE (invariant text, violations bigint)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_campaign public.campaigns := plunk_sql.require_campaign(p_campaign_id);
    v_run plunk_sql.campaign_runs;
    v_rows bigint;
    v_open bigint;
    v_sent bigint;
    v_failed bigint;
    v_skipped bigint;
    v_bad_settled_at bigint;
    v_bad_email_id bigint;
    v_bad_reason bigint;
    v_bad_lease bigint;
    v_n record;
    v_n_taken bigint;
BEGIN
    SELECT * INTO v_run FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id;
    SELECT pg_catalog.count(*),
           pg_catalog.count(*) FILTER (WHERE r.state IN ('pending', 'claimed', 'in_flight')),
           pg_catalog.count(*) FILTER (WHERE r.state = 'sent'),
           pg_catalog.count(*) FILTER (WHERE r.state = 'failed'),
           pg_catalog.count(*) FILTER (WHERE r.state = 'skipped'),
           -- A recipient's columns as its state says (the CHECK constraints of
           -- migration 0009, checked here since 0010: enforcing them cost every
           -- settle 13-25 us); reported below under the constraints' names.
           pg_catalog.count(*) FILTER (
               WHERE (r.state IN ('sent', 'failed', 'skipped')) <> (r.settled_at IS NOT NULL)),
           pg_catalog.count(*) FILTER (
               WHERE NOT CASE WHEN r.state IN ('pending', 'claimed') THEN r.email_id IS NULL
                              WHEN r.state IN ('in_flight', 'sent', 'failed') THEN r.email_id IS NOT NULL
                              ELSE true END),
           pg_catalog.count(*) FILTER (
               WHERE (r.state IN ('failed', 'skipped')) <> (r.reason IS NOT NULL)),
           pg_catalog.count(*) FILTER (
               WHERE NOT CASE WHEN r.state = 'claimed' THEN r.lease_expires_at IS NOT NULL
                              WHEN r.state = 'pending' THEN r.lease_expires_at IS NULL
                              ELSE true END)
    INTO v_rows, v_open, v_sent, v_failed, v_skipped,
         v_bad_settled_at, v_bad_email_id, v_bad_reason, v_bad_lease
    FROM plunk_sql.recipients AS r
    WHERE r.campaign_id = p_campaign_id;

    invariant := 'total_mismatch';
    violations := (v_run.campaign_id IS NULL
                   OR v_campaign."totalRecipients" IS DISTINCT FROM v_run.total
                   OR v_run.total <> v_rows)::integer;
    RETURN NEXT;

    SELECT * INTO v_n FROM plunk_sql.run_counts(p_campaign_id);
    SELECT pg_catalog.sum(s.taken) INTO v_n_taken FROM plunk_sql.run_slots AS s WHERE s.campaign_id = p_campaign_id;

    invariant := 'states_differ_from_total';
    violations := (v_run.campaign_id IS NOT NULL
                   AND v_open + v_n.sent + v_n.failed + v_n.skipped <> v_run.total)::integer;
    RETURN NEXT;

    invariant := 'recipient_rows_duplicated';
    SELECT pg_catalog.count(*) INTO violations
    FROM (SELECT 1 FROM plunk_sql.recipients AS r
          WHERE r.campaign_id = p_campaign_id
          GROUP BY r.contact_id HAVING pg_catalog.count(*) > 1) AS d;
    RETURN NEXT;

    invariant := 'duplicate_emails';
    SELECT pg_catalog.count(*) INTO violations
    FROM (SELECT 1 FROM public.emails AS e
          WHERE e."campaignId" = p_campaign_id
          GROUP BY e."contactId" HAVING pg_catalog.count(*) > 1) AS d;
    RETURN NEXT;

    invariant := 'counters_differ_from_recount';
    violations := (v_run.campaign_id IS NOT NULL
                   AND (v_n.sent <> v_sent OR v_n.failed <> v_failed
                        OR v_n.skipped <> v_skipped OR v_n.open <> v_open
                        -- per slot: open = its unsettled recipients, at most 31 unsynced
                        OR EXISTS (
                            SELECT 1
                            FROM plunk_sql.run_slots AS s
                            LEFT JOIN (SELECT r.slot, pg_catalog.count(*) AS n
                                       FROM plunk_sql.recipients AS r
                                       WHERE r.campaign_id = p_campaign_id
                                         AND r.state IN ('pending', 'claimed', 'in_flight')
                                       GROUP BY r.slot) AS o ON o.slot = s.slot
                            WHERE s.campaign_id = p_campaign_id
                              AND (s.open - CASE WHEN s.slot = 0 THEN v_n_taken ELSE 0 END <> coalesce(o.n, 0)
                                   OR (v_run.kind = 'toolkit' AND v_n.open > 0 AND s.unsynced > 31)
                                   -- no counter below 0, no more unsynced than sent (checked
                                   -- here, not by constraints: migration 0012)
                                   OR LEAST(s.open, s.sent, s.failed, s.skipped, s.taken, s.unsynced) < 0
                                   OR s.unsynced > s.sent
                                   OR s.slot NOT BETWEEN 0 AND plunk_sql.claim_slots()))
                        -- "sentCount": sent - unsynced while open, sent once settled (guard: Plunk's)
                        OR (v_run.kind = 'toolkit'
                            AND v_campaign.status::text NOT IN ('DRAFT', 'SCHEDULED')
                            AND v_campaign."sentCount" IS DISTINCT FROM v_n.shown_sent)))::integer;
    RETURN NEXT;

    invariant := 'settled_but_sending';
    violations := (v_run.total > 0 AND v_open = 0 AND v_rows > 0
                   AND v_campaign.status::text = 'SENDING')::integer;
    RETURN NEXT;

    invariant := 'sent_with_open_recipients';
    violations := CASE WHEN v_campaign.status::text = 'SENT' THEN v_open ELSE 0 END;
    RETURN NEXT;

    invariant := 'recipients_settled_at_iff_settled';
    violations := v_bad_settled_at;
    RETURN NEXT;

    invariant := 'recipients_email_id_when_linked';
    violations := v_bad_email_id;
    RETURN NEXT;

    invariant := 'recipients_reason_iff_failed_or_skipped';
    violations := v_bad_reason;
    RETURN NEXT;

    invariant := 'recipients_lease_when_claimed';
    violations := v_bad_lease;
    RETURN NEXT;

    invariant := 'emails_unlinked';
    SELECT pg_catalog.count(*) INTO violations
    FROM public.emails AS e
    WHERE e."campaignId" = p_campaign_id
      AND v_run.campaign_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM plunk_sql.recipients AS r
                      WHERE r.campaign_id = p_campaign_id AND r.email_id = e.id);
    RETURN NEXT;

END
$$;

COMMENT ON FUNCTION plunk_sql.check_invariants(text) IS
    'One row per invariant of a send (total_mismatch, states_differ_from_total, '
    'recipient_rows_duplicated, duplicate_emails, counters_differ_from_recount, '
    'settled_but_sending, sent_with_open_recipients, the four recipients_* column rules, emails_unlinked) '
    'with its violation count, 0 when it holds. Errors: 22004 null id, P0002 unknown campaign. '
    'Locks: none (reads).';

-- Defined by migration 0001 (released, not edited): its contract comment lives here.
COMMENT ON FUNCTION plunk_sql._campaign_runs_after_delete() IS
    'Statement trigger on plunk_sql.campaign_runs: deleting a run (Plunk cascades a deleted '
    'campaign to it) deletes its snapshot rows. Locks: the deleted runs'' recipient rows.';

-- 95_roles.sql revoked PUBLIC from the functions that existed when it ran; this one comes after.
REVOKE ALL ON FUNCTION plunk_sql.check_invariants(text) FROM PUBLIC;
DO $$
DECLARE
    -- The operator role's name follows the role_prefix setting (migrate --role-prefix).
    v_operator text := plunk_sql.role_name('operator');
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_operator) THEN
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION plunk_sql.check_invariants(text) TO %I',
                                  v_operator);
    END IF;
END
$$;
