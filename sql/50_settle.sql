-- Linking and completion: triggers on Plunk's `emails` table.
--
-- Lock order everywhere a send changes state: recipients rows, then the
-- campaign_runs row, then the campaigns row. Keeping one order means a settling
-- statement and a claim that skips contacts can never deadlock.

-- An email status settles its recipient as 'failed' for FAILED/SUPPRESSED, as
-- 'sent' for every other status but PENDING/SENDING (the only open ones).
-- Written inline below (not as a function): a per-row call of a function with a
-- pinned search_path cannot be inlined and costs a GUC save/restore per email.
-- Statuses are compared as text so every EmailStatus enum version works.

-- plunk_sql.notify_finished(campaign_id): NOTIFY channel plunk_sql_campaign_finished
-- with a JSON payload {"campaign_id", "status", "total", "sent", "failed", "skipped"}.
-- Delivered when the finishing transaction commits.
CREATE OR REPLACE FUNCTION plunk_sql.notify_finished(p_campaign_id text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify(
        'plunk_sql_campaign_finished',
        (SELECT pg_catalog.json_build_object(
                    'campaign_id', r.campaign_id, 'status', c.status::text, 'total', r.total,
                    'sent', r.sent, 'failed', r.failed, 'skipped', r.skipped)::text
         FROM plunk_sql.campaign_runs AS r
         JOIN public.campaigns AS c ON c.id = r.campaign_id
         WHERE r.campaign_id = p_campaign_id));
END
$$;

COMMENT ON FUNCTION plunk_sql.notify_finished(text) IS
    'NOTIFY plunk_sql_campaign_finished with the campaign''s final counts as JSON.';

-- plunk_sql.apply_settlement(campaign_id, sent, failed, skipped): add newly
-- settled recipients to the campaign's counters, keep "sentCount" equal to the
-- recipients settled as sent, and set the campaign SENT when nothing is open.
-- Called once per campaign per settling statement, never per row.
-- Locks: the campaign_runs row (one UPDATE), then the campaigns row when
-- "sentCount" changes or the campaign finishes.
CREATE OR REPLACE FUNCTION plunk_sql.apply_settlement(
    p_campaign_id text,
    p_sent integer,
    p_failed integer,
    p_skipped integer
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sent integer;
    v_open integer;
    v_finished boolean;
BEGIN
    UPDATE plunk_sql.campaign_runs AS r
    SET sent = r.sent + p_sent,
        failed = r.failed + p_failed,
        skipped = r.skipped + p_skipped,
        finished_at = CASE
            WHEN r.total = r.sent + r.failed + r.skipped + p_sent + p_failed + p_skipped
                THEN coalesce(r.finished_at, pg_catalog.now())
            ELSE r.finished_at
        END
    WHERE r.campaign_id = p_campaign_id
    RETURNING r.sent, r.total - r.sent - r.failed - r.skipped
    INTO v_sent, v_open;

    IF NOT FOUND OR (p_sent = 0 AND v_open > 0) THEN
        RETURN;
    END IF;

    UPDATE public.campaigns AS c
    SET "sentCount" = v_sent,
        status = CASE
            WHEN v_open = 0 AND c.status::text = 'SENDING'
                 -- cancel_campaign settles what is open without declaring it SENT.
                 AND pg_catalog.current_setting('plunk_sql.cancelling', true) IS DISTINCT FROM p_campaign_id
                THEN 'SENT'::public."CampaignStatus"
            ELSE c.status
        END,
        "updatedAt" = plunk_sql.utc_now()
    WHERE c.id = p_campaign_id
    RETURNING v_open = 0 AND c.status::text = 'SENT' INTO v_finished;

    IF v_finished AND v_open = 0 THEN
        PERFORM plunk_sql.notify_finished(p_campaign_id);
    END IF;
END
$$;

COMMENT ON FUNCTION plunk_sql.apply_settlement(text, integer, integer, integer) IS
    'Add settled recipients to a campaign''s counters; sets SENT (and NOTIFY) when none is open. Internal.';

-- Trigger: a new emails row of a toolkit campaign links to its recipient.
-- One set-based UPDATE per INSERT statement. A second email for a recipient is
-- refused (23505), as is an email for a contact outside the snapshot (23503)
-- or for a recipient settled without mail (55000: unsubscribed, deleted,
-- cancelled). Rows of campaigns the toolkit did not start are left alone.
-- Locks: the recipient rows it links (a concurrent second email for the same
-- recipient waits, then finds it linked and is refused).
CREATE OR REPLACE FUNCTION plunk_sql.emails_after_insert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Plans of trigger/claim queries are cached per session, planned once with
-- whatever batch size came first; nested loops over index probes stay linear
-- in the batch for every later size, a cached hash join would not.
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    v_expected integer;
    v_linked integer;
    v_settled jsonb;
    v_bad record;
    v_item jsonb;
BEGIN
    -- Transactional and workflow mail: one probe of the transition table, no join.
    IF NOT EXISTS (SELECT 1 FROM new_emails AS e WHERE e."campaignId" IS NOT NULL) THEN
        RETURN NULL;
    END IF;

    WITH mine AS (
        SELECT e.id, e."campaignId" AS campaign_id, e."contactId" AS contact_id,
               CASE
                   WHEN e.status::text IN ('PENDING', 'SENDING') THEN NULL
                   WHEN e.status::text IN ('FAILED', 'SUPPRESSED') THEN 'failed'::plunk_sql.recipient_state
                   ELSE 'sent'::plunk_sql.recipient_state
               END AS outcome,
               e.status::text AS status,
               e.error
        FROM new_emails AS e
        JOIN plunk_sql.campaign_runs AS run ON run.campaign_id = e."campaignId"
    ),
    linked AS (
        UPDATE plunk_sql.recipients AS r
        SET state = coalesce(m.outcome, 'in_flight'),
            email_id = m.id,
            lease_expires_at = NULL,
            in_flight_at = pg_catalog.now(),
            settled_at = CASE WHEN m.outcome IS NOT NULL THEN pg_catalog.now() END,
            reason = CASE WHEN m.outcome = 'failed' THEN coalesce(m.error, 'email ' || m.status) END
        FROM mine AS m
        WHERE r.campaign_id = m.campaign_id
          AND r.contact_id = m.contact_id
          AND r.state IN ('pending', 'claimed')
        RETURNING r.campaign_id, r.state
    )
    SELECT (SELECT pg_catalog.count(*) FROM mine),
           (SELECT pg_catalog.count(*) FROM linked),
           (SELECT pg_catalog.jsonb_agg(x ORDER BY x.campaign_id)
            FROM (SELECT l.campaign_id,
                         pg_catalog.count(*) FILTER (WHERE l.state = 'sent') AS sent,
                         pg_catalog.count(*) FILTER (WHERE l.state = 'failed') AS failed
                  FROM linked AS l
                  WHERE l.state IN ('sent', 'failed')
                  GROUP BY l.campaign_id) AS x)
    INTO v_expected, v_linked, v_settled;

    IF v_linked < v_expected THEN
        -- Error path only: the first row that did not link, and why.
        SELECT e."campaignId" AS campaign_id, e."contactId" AS contact_id, r.state, r.reason,
               pg_catalog.count(*) OVER (PARTITION BY e."campaignId", e."contactId") AS in_statement
        INTO v_bad
        FROM new_emails AS e
        JOIN plunk_sql.campaign_runs AS run ON run.campaign_id = e."campaignId"
        LEFT JOIN plunk_sql.recipients AS r
               ON r.campaign_id = e."campaignId" AND r.contact_id = e."contactId"
        WHERE r.email_id IS DISTINCT FROM e.id
        ORDER BY e."campaignId", e."contactId"
        LIMIT 1;
        IF NOT FOUND THEN
            -- The snapshot was removed while this statement waited for its rows
            -- (cancel_campaign going back to DRAFT): nothing may be mailed.
            RAISE EXCEPTION USING
                ERRCODE = 'object_not_in_prerequisite_state',
                MESSAGE = 'the campaign was cancelled while its emails were inserted: no email may be created';
        ELSIF v_bad.state IS NULL THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = pg_catalog.format('contact %s is not a recipient of campaign %s (not in its snapshot)',
                                            v_bad.contact_id, v_bad.campaign_id);
        ELSIF v_bad.state = 'skipped' AND v_bad.in_statement = 1 THEN
            RAISE EXCEPTION USING
                ERRCODE = 'object_not_in_prerequisite_state',
                MESSAGE = pg_catalog.format('recipient %s of campaign %s was skipped (%s): no email may be created',
                                            v_bad.contact_id, v_bad.campaign_id, coalesce(v_bad.reason, 'no reason')),
                HINT = 'Claim recipients with plunk_sql.claim_batch and mail only the rows it returns.';
        END IF;
        RAISE EXCEPTION USING
            ERRCODE = 'unique_violation',
            MESSAGE = pg_catalog.format('campaign %s already has an email for contact %s',
                                        v_bad.campaign_id, v_bad.contact_id),
            DETAIL = 'plunk_sql allows one email per recipient of a campaign it started.';
    END IF;

    -- Rows inserted already final (rare: imports, tests) settle at once.
    FOR v_item IN SELECT x FROM pg_catalog.jsonb_array_elements(coalesce(v_settled, '[]')) AS x LOOP
        PERFORM plunk_sql.apply_settlement(
            v_item ->> 'campaign_id', (v_item ->> 'sent')::integer, (v_item ->> 'failed')::integer, 0);
    END LOOP;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql.emails_after_insert() IS
    'Statement trigger on public.emails INSERT: links campaign emails to recipients; '
    '23505 second email, 23503 contact not in snapshot, 55000 recipient was skipped.';

-- Trigger: an email's first final status settles its recipient. One UPDATE of
-- the recipients and one counter update per campaign per statement, however
-- many rows the statement changed. Later status moves (DELIVERED, OPENED, a late
-- BOUNCED) find the recipient settled and change nothing.
-- Locks: the recipient rows it settles, then the counter rows (apply_settlement).
CREATE OR REPLACE FUNCTION plunk_sql.emails_after_update()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Plans of trigger/claim queries are cached per session, planned once with
-- whatever batch size came first; nested loops over index probes stay linear
-- in the batch for every later size, a cached hash join would not.
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    v_settled record;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM new_emails AS e
        WHERE e."campaignId" IS NOT NULL AND e.status::text NOT IN ('PENDING', 'SENDING')
    ) THEN
        RETURN NULL;
    END IF;

    FOR v_settled IN
        WITH settled AS (
            UPDATE plunk_sql.recipients AS r
            SET state = CASE WHEN e.status::text IN ('FAILED', 'SUPPRESSED')
                             THEN 'failed'::plunk_sql.recipient_state
                             ELSE 'sent'::plunk_sql.recipient_state END,
                settled_at = pg_catalog.now(),
                reason = CASE WHEN e.status::text IN ('FAILED', 'SUPPRESSED')
                              THEN coalesce(e.error, 'email ' || e.status::text) END
            FROM new_emails AS e
            WHERE e."campaignId" IS NOT NULL
              AND e.status::text NOT IN ('PENDING', 'SENDING')
              AND r.campaign_id = e."campaignId"
              AND r.contact_id = e."contactId"
              AND r.state = 'in_flight'
              AND r.email_id = e.id
            RETURNING r.campaign_id, r.state
        )
        SELECT s.campaign_id,
               pg_catalog.count(*) FILTER (WHERE s.state = 'sent')::integer AS sent,
               pg_catalog.count(*) FILTER (WHERE s.state = 'failed')::integer AS failed
        FROM settled AS s
        GROUP BY s.campaign_id
        ORDER BY s.campaign_id
    LOOP
        PERFORM plunk_sql.apply_settlement(v_settled.campaign_id, v_settled.sent, v_settled.failed, 0);
    END LOOP;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql.emails_after_update() IS
    'Statement trigger on public.emails UPDATE: settles recipients on their email''s first final status, '
    'updates counters once per campaign, sets SENT when the last one settles.';

-- Trigger: deleting an in-flight email (Plunk's cancel, a contact's cascade
-- delete) settles its recipient as skipped, so the campaign can still finish.
CREATE OR REPLACE FUNCTION plunk_sql.emails_after_delete()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Plans of trigger/claim queries are cached per session, planned once with
-- whatever batch size came first; nested loops over index probes stay linear
-- in the batch for every later size, a cached hash join would not.
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    v_settled record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM old_emails AS e WHERE e."campaignId" IS NOT NULL) THEN
        RETURN NULL;
    END IF;

    FOR v_settled IN
        WITH settled AS (
            UPDATE plunk_sql.recipients AS r
            SET state = 'skipped',
                settled_at = pg_catalog.now(),
                reason = 'email deleted'
            FROM old_emails AS e
            WHERE e."campaignId" IS NOT NULL
              AND r.campaign_id = e."campaignId"
              AND r.contact_id = e."contactId"
              AND r.state = 'in_flight'
              AND r.email_id = e.id
            RETURNING r.campaign_id
        )
        SELECT s.campaign_id, pg_catalog.count(*)::integer AS skipped
        FROM settled AS s
        GROUP BY s.campaign_id
        ORDER BY s.campaign_id
    LOOP
        PERFORM plunk_sql.apply_settlement(v_settled.campaign_id, 0, 0, v_settled.skipped);
    END LOOP;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql.emails_after_delete() IS
    'Statement trigger on public.emails DELETE: in-flight recipients of deleted emails settle as skipped.';

CREATE OR REPLACE TRIGGER plunk_sql_emails_after_insert
    AFTER INSERT ON public.emails
    REFERENCING NEW TABLE AS new_emails
    FOR EACH STATEMENT
    EXECUTE FUNCTION plunk_sql.emails_after_insert();

CREATE OR REPLACE TRIGGER plunk_sql_emails_after_update
    AFTER UPDATE ON public.emails
    REFERENCING NEW TABLE AS new_emails
    FOR EACH STATEMENT
    EXECUTE FUNCTION plunk_sql.emails_after_update();

CREATE OR REPLACE TRIGGER plunk_sql_emails_after_delete
    AFTER DELETE ON public.emails
    REFERENCING OLD TABLE AS old_emails
    FOR EACH STATEMENT
    EXECUTE FUNCTION plunk_sql.emails_after_delete();
