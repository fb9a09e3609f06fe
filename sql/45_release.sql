-- Handing work back: a worker that stops (a failed thread, a lost SMTP server,
-- a shutdown it can catch) returns what it never gave to SMTP, so another
-- worker sends it now instead of after the lease or abandon_timeout. This is
-- the second edge back to pending of invariant 6 (docs: design.md): only the
-- worker that holds the work hands it back, through this function.

-- plunk_sql.release_claims(campaign_id, contact_ids, email_ids): hand back
--
--   * contact_ids: recipients this worker claimed and made no email for: each
--     one still 'claimed' under a lease that has not expired goes back to
--     'pending' (lease cleared). A lease that expired may already belong to
--     another worker (the sweep made it pending, a claim took it), so it is
--     left alone; the caller should only pass claims whose lease it knows to be
--     in force.
--   * email_ids: emails this worker inserted and never handed to SMTP: each
--     one of this campaign still PENDING or SENDING without "sentAt" is
--     deleted, and its recipient (in_flight, linked to that email) goes back
--     to 'pending' with no email. The recipient is reset BEFORE the DELETE, so
--     the emails DELETE trigger (sql/50_settle.sql), which settles a linked
--     in-flight recipient as skipped ('email deleted'), finds nothing to do.
--
-- Returns (released, deleted): recipients made pending, emails deleted. Ids
-- that match nothing (already settled, sent, reclaimed, another campaign's)
-- are ignored, so a retry is harmless. Works whatever the campaign's status;
-- a campaign that is no longer SENDING simply has nothing left to release.
-- Nothing is settled, so no counter moves (open counts are recounts).
--   22004 null campaign id; P0002 unknown campaign.
-- Locks: the emails rows it deletes (FOR UPDATE, taken first, as every
-- settling statement locks its emails row before its recipient), then the
-- recipients rows it resets, in (campaign, contact) order. No campaign_runs or
-- campaigns row lock: nothing settles.
CREATE OR REPLACE FUNCTION plunk_sql.release_claims(
    p_campaign_id text,
    p_contact_ids text[],
    p_email_ids text[]
)
RETURNS TABLE (released integer, deleted integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_emails text[];
    v_contacts text[];
    v_reset integer;
    v_claims integer;
BEGIN
    PERFORM plunk_sql.require_campaign(p_campaign_id);

    -- 1. Unsent emails of this campaign: lock them so no status change slips in.
    SELECT coalesce(pg_catalog.array_agg(e.id ORDER BY e.id), '{}'),
           coalesce(pg_catalog.array_agg(e."contactId" ORDER BY e.id), '{}')
    INTO v_emails, v_contacts
    FROM (
        SELECT e.id, e."contactId"
        FROM public.emails AS e
        WHERE e.id = ANY (coalesce(p_email_ids, '{}'))
          AND e."campaignId" = p_campaign_id
          AND e.status::text IN ('PENDING', 'SENDING')
          AND e."sentAt" IS NULL
        ORDER BY e.id
        FOR UPDATE
    ) AS e;

    -- 2. Their recipients back to pending first, unlinked, so the DELETE below
    --    is a no-op for them in the emails DELETE trigger.
    WITH reset AS (
        UPDATE plunk_sql.recipients AS r
        SET state = 'pending',
            email_id = NULL,
            in_flight_at = NULL,
            lease_expires_at = NULL
        WHERE r.campaign_id = p_campaign_id
          AND r.contact_id = ANY (v_contacts)  -- probes of the open-recipients key
          AND r.state = 'in_flight'
          AND r.email_id = ANY (v_emails)
        RETURNING 1
    )
    SELECT pg_catalog.count(*)::integer INTO v_reset FROM reset;

    DELETE FROM public.emails AS e WHERE e.id = ANY (v_emails);
    deleted := pg_catalog.cardinality(v_emails);

    -- 3. Claims under a lease still in force, with no email.
    WITH back AS (
        UPDATE plunk_sql.recipients AS r
        SET state = 'pending',
            lease_expires_at = NULL
        WHERE r.campaign_id = p_campaign_id
          AND r.contact_id = ANY (coalesce(p_contact_ids, '{}'))
          AND r.state = 'claimed'
          AND r.lease_expires_at > pg_catalog.now()
        RETURNING 1
    )
    SELECT pg_catalog.count(*)::integer INTO v_claims FROM back;

    released := v_reset + v_claims;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION plunk_sql.release_claims(text, text[], text[]) IS
    'A stopping worker hands back what it never gave to SMTP: its claims in force (to pending) and its '
    'unsent emails (deleted, recipients pending again). Returns (released, deleted). '
    'Errors: 22004 null id, P0002 unknown campaign.';
