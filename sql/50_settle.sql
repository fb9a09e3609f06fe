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
    v_kind text;  -- guard mode
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
    RETURNING r.sent, r.total - r.sent - r.failed - r.skipped, r.kind
    INTO v_sent, v_open, v_kind;

    -- guard mode: Plunk's own code drives a guarded send and owns its campaigns
    -- row meanwhile ("sentCount", the end); plunk_sql.sweep_guarded() ends it.
    IF NOT FOUND OR (p_sent = 0 AND v_open > 0) OR v_kind = 'guard' THEN
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

-- Settlement tallies. The triggers walk their rows ordered by campaign id and
-- keep one tally per campaign in three parallel integer arrays (campaign ids in
-- v_campaigns); after the walk, apply_settlement runs once per campaign in that
-- order: one counter update per campaign per statement, one lock order. Plain
-- plpgsql variables: the common statement (one email, one campaign) pays no
-- per-row function call and no jsonb.

-- Trigger: a new emails row of a toolkit campaign links to its recipient.
-- One index probe per campaign email of the statement. A second email for a recipient is
-- refused (23505), as is an email whose "projectId" is not the campaign's or
-- whose contact is outside the snapshot (23503)
-- or for a recipient settled without mail (55000: unsubscribed, deleted,
-- cancelled). Rows of campaigns the toolkit did not start are left alone.
-- Locks: the recipient rows it links (a concurrent second email for the same
-- recipient waits, then finds it linked and is refused).
CREATE OR REPLACE FUNCTION plunk_sql.emails_after_insert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Each email's recipient is one parameterised UPDATE on the unique key of
-- recipients_open_key. Set-based joins were tried: with recipients' statistics
-- always stale (a fresh snapshot is not analysed yet), the planner put the
-- recipients on the outer side and walked every open recipient once per email
-- (2,000 links: 2.6 s instead of 0.1 s); joins by ctid stayed fast but skipped
-- rows another session changed meanwhile (a TID scan re-checks the TID). A
-- plain UPDATE by key keeps PostgreSQL's re-check of the newest row version.
-- Counters still change once per campaign per statement (apply_settlement).
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    v_expected integer;
    v_linked integer;
    v_bad record;
    v_email record;
    v_state plunk_sql.recipient_state;
    v_campaigns text[] := '{}';
    v_sent integer[] := '{}';
    v_failed integer[] := '{}';
    v_n integer := 0;
BEGIN
    -- Transactional and workflow mail: one probe of the transition table, no join.
    IF NOT EXISTS (SELECT 1 FROM new_emails AS e WHERE e."campaignId" IS NOT NULL) THEN
        RETURN NULL;
    END IF;

    v_expected := 0;
    v_linked := 0;
    FOR v_email IN
        SELECT e.id, e."campaignId" AS campaign_id, e."contactId" AS contact_id,
               CASE
                   WHEN e.status::text IN ('PENDING', 'SENDING') THEN NULL
                   WHEN e.status::text IN ('FAILED', 'SUPPRESSED') THEN 'failed'::plunk_sql.recipient_state
                   ELSE 'sent'::plunk_sql.recipient_state
               END AS outcome,
               e.status::text AS status,
               e.error,
               e."projectId" AS project_id,
               run.project_id AS campaign_project_id,
               run.kind  -- guard mode
        FROM new_emails AS e
        JOIN plunk_sql.campaign_runs AS run ON run.campaign_id = e."campaignId"
        ORDER BY e."campaignId", e."contactId"  -- one lock order for every statement
    LOOP
        IF v_email.project_id IS DISTINCT FROM v_email.campaign_project_id AND v_email.kind <> 'guard' THEN
            -- Plunk shows an email in its project's log: it must be the campaign's.
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                MESSAGE = pg_catalog.format('email %s is in project %s but campaign %s belongs to project %s',
                                            v_email.id, v_email.project_id, v_email.campaign_id,
                                            v_email.campaign_project_id);
        END IF;
        v_expected := v_expected + 1;
        UPDATE plunk_sql.recipients AS r
        SET state = coalesce(v_email.outcome, 'in_flight'),
            email_id = v_email.id,
            lease_expires_at = NULL,
            in_flight_at = pg_catalog.now(),
            settled_at = CASE WHEN v_email.outcome IS NOT NULL THEN pg_catalog.now() END,
            reason = CASE WHEN v_email.outcome = 'failed'
                          THEN coalesce(v_email.error, 'email ' || v_email.status) END
        WHERE r.campaign_id = v_email.campaign_id
          AND r.contact_id = v_email.contact_id
          AND r.state IN ('pending', 'claimed')
        RETURNING r.state INTO v_state;
        IF NOT FOUND AND v_email.kind = 'guard' THEN
            -- guard mode: never refuse Plunk's email; one outside the snapshot is
            -- recorded beside it (late joiner), a second one is accepted as is.
            v_expected := v_expected - 1;
            PERFORM plunk_sql.guard_unlinked_email(v_email.campaign_id, v_email.contact_id, v_email.id);
        ELSIF FOUND THEN
            v_linked := v_linked + 1;
            IF v_state IN ('sent', 'failed') THEN  -- inserted already final: tally it
                IF v_n = 0 OR v_campaigns[v_n] <> v_email.campaign_id THEN
                    v_n := v_n + 1;
                    v_campaigns[v_n] := v_email.campaign_id;
                    v_sent[v_n] := 0;
                    v_failed[v_n] := 0;
                END IF;
                IF v_state = 'sent' THEN
                    v_sent[v_n] := v_sent[v_n] + 1;
                ELSE
                    v_failed[v_n] := v_failed[v_n] + 1;
                END IF;
            END IF;
        END IF;
    END LOOP;

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
    FOR v_i IN 1 .. v_n LOOP
        PERFORM plunk_sql.apply_settlement(v_campaigns[v_i], v_sent[v_i], v_failed[v_i], 0);
    END LOOP;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql.emails_after_insert() IS
    'Statement trigger on public.emails INSERT: links campaign emails to recipients; '
    '23505 second email, 23503 contact not in snapshot or email of another project, '
    '55000 recipient was skipped.';

-- Trigger: an email's first final status settles its recipient: one index
-- probe per email, and one counter update per campaign per statement, however
-- many rows the statement changed. Later status moves (DELIVERED, OPENED, a late
-- BOUNCED) find the recipient settled and change nothing.
-- Locks: the recipient rows it settles, then the counter rows (apply_settlement).
CREATE OR REPLACE FUNCTION plunk_sql.emails_after_update()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Each email's recipient is one parameterised UPDATE on the unique key of
-- recipients_open_key. Set-based joins were tried: with recipients' statistics
-- always stale (a fresh snapshot is not analysed yet), the planner put the
-- recipients on the outer side and walked every open recipient once per email
-- (2,000 links: 2.6 s instead of 0.1 s); joins by ctid stayed fast but skipped
-- rows another session changed meanwhile (a TID scan re-checks the TID). A
-- plain UPDATE by key keeps PostgreSQL's re-check of the newest row version.
-- Counters still change once per campaign per statement (apply_settlement).
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    v_email record;
    v_state plunk_sql.recipient_state;
    v_campaigns text[] := '{}';
    v_sent integer[] := '{}';
    v_failed integer[] := '{}';
    v_n integer := 0;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM new_emails AS e
        WHERE e."campaignId" IS NOT NULL AND e.status::text NOT IN ('PENDING', 'SENDING')
    ) THEN
        RETURN NULL;
    END IF;

    FOR v_email IN
        SELECT e.id, e."campaignId" AS campaign_id, e."contactId" AS contact_id,
               e.status::text AS status, e.error
        FROM new_emails AS e
        WHERE e."campaignId" IS NOT NULL
          AND e.status::text NOT IN ('PENDING', 'SENDING')
        ORDER BY e."campaignId", e."contactId"  -- one lock order for every statement
    LOOP
        UPDATE plunk_sql.recipients AS r
        SET state = CASE WHEN v_email.status IN ('FAILED', 'SUPPRESSED')
                         THEN 'failed'::plunk_sql.recipient_state
                         ELSE 'sent'::plunk_sql.recipient_state END,
            settled_at = pg_catalog.now(),
            reason = CASE WHEN v_email.status IN ('FAILED', 'SUPPRESSED')
                          THEN coalesce(v_email.error, 'email ' || v_email.status) END
        WHERE r.campaign_id = v_email.campaign_id
          AND r.contact_id = v_email.contact_id
          AND r.state = 'in_flight'
          AND r.email_id = v_email.id
        RETURNING r.state INTO v_state;
        IF FOUND THEN
            IF v_n = 0 OR v_campaigns[v_n] <> v_email.campaign_id THEN
                v_n := v_n + 1;
                v_campaigns[v_n] := v_email.campaign_id;
                v_sent[v_n] := 0;
                v_failed[v_n] := 0;
            END IF;
            IF v_state = 'sent' THEN
                v_sent[v_n] := v_sent[v_n] + 1;
            ELSE
                v_failed[v_n] := v_failed[v_n] + 1;
            END IF;
        END IF;
    END LOOP;
    FOR v_i IN 1 .. v_n LOOP  -- most statements settle nothing: no call
        PERFORM plunk_sql.apply_settlement(v_campaigns[v_i], v_sent[v_i], v_failed[v_i], 0);
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
-- Each email's recipient is one parameterised UPDATE on the unique key of
-- recipients_open_key. Set-based joins were tried: with recipients' statistics
-- always stale (a fresh snapshot is not analysed yet), the planner put the
-- recipients on the outer side and walked every open recipient once per email
-- (2,000 links: 2.6 s instead of 0.1 s); joins by ctid stayed fast but skipped
-- rows another session changed meanwhile (a TID scan re-checks the TID). A
-- plain UPDATE by key keeps PostgreSQL's re-check of the newest row version.
-- Counters still change once per campaign per statement (apply_settlement).
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    v_email record;
    v_campaigns text[] := '{}';
    v_skipped integer[] := '{}';
    v_n integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM old_emails AS e WHERE e."campaignId" IS NOT NULL) THEN
        RETURN NULL;
    END IF;

    FOR v_email IN
        SELECT e.id, e."campaignId" AS campaign_id, e."contactId" AS contact_id
        FROM old_emails AS e
        WHERE e."campaignId" IS NOT NULL
        ORDER BY e."campaignId", e."contactId"  -- one lock order for every statement
    LOOP
        UPDATE plunk_sql.recipients AS r
        SET state = 'skipped',
            settled_at = pg_catalog.now(),
            reason = 'email deleted'
        WHERE r.campaign_id = v_email.campaign_id
          AND r.contact_id = v_email.contact_id
          AND r.state = 'in_flight'
          AND r.email_id = v_email.id;
        IF FOUND THEN
            IF v_n = 0 OR v_campaigns[v_n] <> v_email.campaign_id THEN
                v_n := v_n + 1;
                v_campaigns[v_n] := v_email.campaign_id;
                v_skipped[v_n] := 0;
            END IF;
            v_skipped[v_n] := v_skipped[v_n] + 1;
        END IF;
    END LOOP;
    FOR v_i IN 1 .. v_n LOOP
        PERFORM plunk_sql.apply_settlement(v_campaigns[v_i], 0, 0, v_skipped[v_i]);
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

-- Helpers of earlier versions (the jsonb tally), gone since the triggers above
-- keep their tallies in variables. Dropped after the triggers stop calling them.
DROP FUNCTION IF EXISTS plunk_sql.apply_outcomes(jsonb);
DROP FUNCTION IF EXISTS plunk_sql.count_outcome(jsonb, text, plunk_sql.recipient_state);
