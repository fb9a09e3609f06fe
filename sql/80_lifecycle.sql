-- Campaign lifecycle for operators: pause, resume, cancel, repair.
--
-- Every function here first takes a transaction-level advisory lock on the
-- campaign (key: hashtext('plunk_sql.lifecycle'), hashtext(campaign_id)).
-- Only these functions take it, so it serialises lifecycle calls on one
-- campaign among themselves and never makes a worker wait. Row locks are then
-- taken in the global order: recipients -> counter slots -> campaigns -> campaign_runs.

-- plunk_sql._lifecycle_lock(campaign_id): the advisory lock described above.
CREATE OR REPLACE FUNCTION plunk_sql._lifecycle_lock(p_campaign_id text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('plunk_sql.lifecycle'),
                                            pg_catalog.hashtext(p_campaign_id));
$$;

COMMENT ON FUNCTION plunk_sql._lifecycle_lock(text) IS
    'Transaction advisory lock serialising pause/resume/cancel/repair of one campaign. Internal.';

-- plunk_sql.pause_campaign(campaign_id): record a pause. Plunk has no PAUSED
-- status: the campaign stays SENDING, claim_batch returns nothing, the sweep
-- neither abandons its emails nor finalizes it. Emails already created still
-- settle by their own outcome.
--   22004 null id; P0002 unknown campaign; 55000 not a SENDING campaign started
--   by plunk_sql, or already paused.
-- Locks: the lifecycle advisory lock, then the campaign_runs row (one UPDATE;
-- a settling worker holding it is waited for, briefly). The campaigns row is
-- only read, after the runs row is held, so a campaign that finished
-- meanwhile is seen and refused.
CREATE OR REPLACE FUNCTION plunk_sql.pause_campaign(p_campaign_id text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_campaign public.campaigns := plunk_sql.require_campaign(p_campaign_id);
    v_status text;
BEGIN
    PERFORM plunk_sql._lifecycle_lock(p_campaign_id);
    IF NOT EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            SCHEMA = 'plunk_sql',
            MESSAGE = pg_catalog.format('campaign %s is %s and was not started by plunk_sql: it cannot be paused',
                                        p_campaign_id, v_campaign.status),
            HINT = 'Only SENDING campaigns started with plunk_sql.start_campaign can be paused.';
    END IF;

    UPDATE plunk_sql.campaign_runs AS r
    SET paused_at = pg_catalog.now()
    WHERE r.campaign_id = p_campaign_id
      AND r.paused_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            SCHEMA = 'plunk_sql',
            MESSAGE = pg_catalog.format('campaign %s is already paused', p_campaign_id),
            HINT = pg_catalog.format('SELECT plunk_sql.resume_campaign(%L);', p_campaign_id);
    END IF;

    SELECT c.status::text INTO v_status FROM public.campaigns AS c WHERE c.id = p_campaign_id;
    IF v_status <> 'SENDING' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            SCHEMA = 'plunk_sql',
            MESSAGE = pg_catalog.format('campaign %s is %s: only SENDING campaigns can be paused',
                                        p_campaign_id, v_status);
    END IF;
END
$$;

COMMENT ON FUNCTION plunk_sql.pause_campaign(text) IS
    'Pause a SENDING toolkit campaign (claims return nothing; the sweep leaves it alone). '
    'Errors: 22004 null id, P0002 unknown campaign, 55000 not SENDING / not started by plunk_sql / already paused.';

-- plunk_sql.resume_campaign(campaign_id): clear the pause; claims return
-- recipients again and the stuck clock restarts (progressed_at = now()).
--   22004 null id; P0002 unknown campaign; 55000 not paused, or not SENDING.
-- Locks: the lifecycle advisory lock, then the campaign_runs row.
CREATE OR REPLACE FUNCTION plunk_sql.resume_campaign(p_campaign_id text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_campaign public.campaigns := plunk_sql.require_campaign(p_campaign_id);
    v_status text;
BEGIN
    PERFORM plunk_sql._lifecycle_lock(p_campaign_id);
    UPDATE plunk_sql.campaign_runs AS r
    SET paused_at = NULL,
        progressed_at = pg_catalog.now()
    WHERE r.campaign_id = p_campaign_id
      AND r.paused_at IS NOT NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            SCHEMA = 'plunk_sql',
            MESSAGE = pg_catalog.format('campaign %s (%s) is not paused', p_campaign_id, v_campaign.status);
    END IF;

    SELECT c.status::text INTO v_status FROM public.campaigns AS c WHERE c.id = p_campaign_id;
    IF v_status <> 'SENDING' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            SCHEMA = 'plunk_sql',
            MESSAGE = pg_catalog.format('campaign %s is %s: only SENDING campaigns can be resumed',
                                        p_campaign_id, v_status);
    END IF;
END
$$;

COMMENT ON FUNCTION plunk_sql.resume_campaign(text) IS
    'Resume a paused SENDING toolkit campaign. '
    'Errors: 22004 null id, P0002 unknown campaign, 55000 not paused / not SENDING.';

-- plunk_sql.cancel_campaign(campaign_id): stop a send, as Plunk's cancel does.
--
-- SCHEDULED (not started): back to DRAFT, nothing else to do.
-- SENDING (started by plunk_sql), paused or not:
--   1. pending and claimed recipients are settled skipped, reason 'cancelled'
--      (a worker still holding a claim is refused when it inserts the email:
--      55000 from the emails INSERT trigger);
--   2. in-flight recipients whose email is still PENDING (never handed to
--      SMTP) settle skipped, reason 'email deleted', and those emails are
--      deleted, as Plunk deletes unsent rows;
--   3. counters: on their slots, never declaring the campaign SENT
--      meanwhile (sql/48_counters.sql);
--   4. emails already SENDING (handed to the provider) stay in flight and
--      settle by their own outcome later; the campaign stays CANCELLED;
--   5. status: DRAFT when nothing was sent or failed and nothing is still in
--      flight, else CANCELLED. DRAFT retires the run (moved to
--      plunk_sql.retired_runs / retired_recipients, kept for the record, never
--      reused): until a new start_campaign every email of the campaign is
--      refused (55000), a late insert of a worker that still held a claim
--      included; the next start takes a fresh snapshot. "totalRecipients",
--      "sentCount" reset, "sentAt" cleared.
-- The same semantics hold when Plunk cancels a toolkit campaign itself
-- (sql/82_plunk_writes.sql).
-- NOTIFY plunk_sql_campaign_finished with status CANCELLED or DRAFT.
-- Returns the resulting status, 'CANCELLED' or 'DRAFT'.
--   22004 null id; P0002 unknown campaign; 55000 DRAFT, SENT, CANCELLED, a
--   SENDING campaign not started by plunk_sql (see repair_campaign), or a
--   campaign that finished while being cancelled (nothing changed); 55P03
--   workers kept its recipient rows locked for 200 attempts (retry).
-- Locks: the lifecycle advisory lock; then, for SCHEDULED, the campaigns row
-- FOR UPDATE (no snapshot exists, so nothing precedes it in the order; if a
-- start won the race, that lock is released by rolling back its
-- subtransaction before the SENDING path). SENDING: the open recipient rows
-- (steps 1-2, under a 100ms lock_timeout, retried: see below), the PENDING
-- emails rows (SKIP LOCKED), then the counter slots, then the campaigns row,
-- then the campaign_runs row: the same order as every worker, and no wait while holding rows a
-- worker waits for, so cancelling under load cannot deadlock.
CREATE OR REPLACE FUNCTION plunk_sql.cancel_campaign(p_campaign_id text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_campaign public.campaigns := plunk_sql.require_campaign(p_campaign_id);
    v_status text;
    v_cancelled integer;
    v_deleted integer;
    v_unsent text[];
    v_in_flight integer;
    v_run plunk_sql.campaign_runs;
    v_counts record;
    v_slots smallint[];
    v_result text;
    v_payload text;
    v_now timestamp := plunk_sql.utc_now();
    v_lock_timeout text := pg_catalog.current_setting('lock_timeout');
    v_attempts integer := 0;
    v_signal text;
BEGIN
    PERFORM plunk_sql._lifecycle_lock(p_campaign_id);

    IF NOT EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id) THEN
        BEGIN
            SELECT c.status::text INTO v_status
            FROM public.campaigns AS c
            WHERE c.id = p_campaign_id
            FOR UPDATE;
            IF NOT EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id) THEN
                IF v_status = 'SCHEDULED' THEN
                    UPDATE public.campaigns AS c
                    SET status = 'DRAFT',
                        "updatedAt" = v_now
                    WHERE c.id = p_campaign_id;
                    RETURN 'DRAFT';
                END IF;
                IF v_status = 'SENDING' THEN
                    RAISE EXCEPTION USING
                        ERRCODE = 'object_not_in_prerequisite_state',
                        SCHEMA = 'plunk_sql',
                        MESSAGE = pg_catalog.format(
                            'campaign %s is SENDING but was not started by plunk_sql: it cannot be cancelled here',
                            p_campaign_id),
                        HINT = 'A campaign stuck in SENDING from before plunk_sql: see plunk_sql.repair_campaign.';
                END IF;
                RAISE EXCEPTION USING
                    ERRCODE = 'object_not_in_prerequisite_state',
                    SCHEMA = 'plunk_sql',
                    MESSAGE = pg_catalog.format('campaign %s is %s: only SCHEDULED or SENDING campaigns can be cancelled',
                                                p_campaign_id, v_status);
            END IF;
            -- Started while we waited for the row: release it, cancel the send.
            -- Internal signal, caught just below and recognised by its constraint
            -- name (never by message text); it never reaches a caller.
            RAISE EXCEPTION USING
                ERRCODE = 'raise_exception',
                SCHEMA = 'plunk_sql', CONSTRAINT = 'started_concurrently',
                MESSAGE = 'plunk_sql: started concurrently';
        EXCEPTION WHEN raise_exception THEN
            GET STACKED DIAGNOSTICS v_signal = CONSTRAINT_NAME;
            IF v_signal IS DISTINCT FROM 'started_concurrently' THEN
                RAISE;
            END IF;
        END;
    END IF;

    SELECT c.status::text INTO v_status FROM public.campaigns AS c WHERE c.id = p_campaign_id;
    IF v_status <> 'SENDING' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            SCHEMA = 'plunk_sql',
            MESSAGE = pg_catalog.format('campaign %s is %s: only SCHEDULED or SENDING campaigns can be cancelled',
                                        p_campaign_id, v_status);
    END IF;

    -- Steps 1 to 3 never wait while holding recipient rows a worker may need:
    -- a worker inserting emails locks its claimed recipients in its own order,
    -- so waiting for one of them while holding others could close a cycle.
    -- Instead each attempt runs under a short lock_timeout in a subtransaction;
    -- on timeout the subtransaction rolls back (releasing every row it took),
    -- the worker finishes, and the attempt is repeated.
    LOOP
        BEGIN
            PERFORM pg_catalog.set_config('lock_timeout', '100ms', true);

            WITH cancelled AS (
                UPDATE plunk_sql.recipients AS r
                SET state = 'skipped',
                    settled_at = pg_catalog.now(),
                    reason = 'cancelled'
                WHERE r.campaign_id = p_campaign_id
                  AND r.state IN ('pending', 'claimed')
                RETURNING r.slot
            )
            SELECT pg_catalog.count(*)::integer, coalesce(pg_catalog.array_agg(x.slot), '{}')
            INTO v_cancelled, v_slots
            FROM cancelled AS x;

            -- Emails a worker holds right now are being moved on (SENDING):
            -- skip them, they settle by their own outcome.
            v_unsent := ARRAY(
                SELECT m.id
                FROM plunk_sql.recipients AS r
                JOIN public.emails AS m ON m.id = r.email_id
                WHERE r.campaign_id = p_campaign_id
                  AND r.state = 'in_flight'
                  AND m.status::text = 'PENDING'
                FOR UPDATE OF m SKIP LOCKED);
            WITH unsent AS (
                UPDATE plunk_sql.recipients AS r
                SET state = 'skipped',
                    settled_at = pg_catalog.now(),
                    reason = 'email deleted'
                WHERE r.campaign_id = p_campaign_id
                  AND r.state = 'in_flight'
                  AND r.email_id = ANY (v_unsent)
                RETURNING r.slot
            )
            SELECT pg_catalog.count(*)::integer, v_slots || coalesce(pg_catalog.array_agg(x.slot), '{}')
            INTO v_deleted, v_slots
            FROM unsent AS x;
            -- Their recipients are settled already: the DELETE trigger finds none in flight.
            DELETE FROM public.emails AS e
            WHERE e.id = ANY (v_unsent)
              AND e.status::text = 'PENDING';

            -- Counted on their slots; the end-game runs at commit, when the
            -- campaign is no longer SENDING, so it is never declared SENT.
            PERFORM plunk_sql.count_settled(
                p_campaign_id, v_slots,
                pg_catalog.array_fill('skipped'::plunk_sql.recipient_state,
                                      ARRAY[pg_catalog.cardinality(v_slots)]));
            -- "sentCount" exact from here on (the recount, below): with every slot
            -- row held (locked in the global order), nothing is unsynced.
            PERFORM 1 FROM plunk_sql.run_slots AS s
            WHERE s.campaign_id = p_campaign_id
            ORDER BY s.slot DESC
            FOR UPDATE;
            UPDATE plunk_sql.run_slots AS s
            SET unsynced = 0
            WHERE s.campaign_id = p_campaign_id
              AND s.unsynced > 0;
            -- Not locked here: the campaigns row comes before the run row
            -- (the end-game's order), and paused_at is cleared after it.
            SELECT * INTO v_run FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id;
            SELECT * INTO v_counts FROM plunk_sql.run_counts(p_campaign_id);

            PERFORM pg_catalog.set_config('lock_timeout', v_lock_timeout, true);
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            v_attempts := v_attempts + 1;
            IF v_attempts >= 200 THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'lock_not_available',
                    SCHEMA = 'plunk_sql',
                    MESSAGE = pg_catalog.format('could not cancel campaign %s: workers kept its recipients locked',
                                                p_campaign_id),
                    HINT = 'Retry, or pause the campaign first.';
            END IF;
            PERFORM pg_catalog.pg_sleep(0.01 * pg_catalog.random());
        END;
    END LOOP;

    SELECT pg_catalog.count(*)::integer INTO v_in_flight
    FROM plunk_sql.recipients AS r
    WHERE r.campaign_id = p_campaign_id
      AND r.state = 'in_flight';

    v_result := CASE WHEN v_counts.sent = 0 AND v_counts.failed = 0 AND v_in_flight = 0
                     THEN 'DRAFT' ELSE 'CANCELLED' END;
    v_payload := pg_catalog.json_build_object(
        'campaign_id', p_campaign_id, 'status', v_result, 'total', v_run.total,
        'sent', v_counts.sent, 'failed', v_counts.failed, 'skipped', v_counts.skipped)::text;

    IF v_result = 'DRAFT' THEN
        -- Kept for the record, never reused; late emails are refused from now on.
        PERFORM plunk_sql._retire_run(p_campaign_id, 'cancel_campaign');
    END IF;

    UPDATE public.campaigns AS c
    SET status = v_result::public."CampaignStatus",
        "totalRecipients" = CASE WHEN v_result = 'DRAFT' THEN 0 ELSE c."totalRecipients" END,
        "sentCount" = CASE WHEN v_result = 'DRAFT' THEN 0 ELSE v_counts.sent END,
        "sentAt" = CASE WHEN v_result = 'DRAFT' THEN NULL ELSE c."sentAt" END,
        "updatedAt" = v_now
    WHERE c.id = p_campaign_id
      AND c.status::text = 'SENDING';
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            SCHEMA = 'plunk_sql',
            MESSAGE = pg_catalog.format('campaign %s finished while it was being cancelled: nothing changed',
                                        p_campaign_id);
    END IF;

    UPDATE plunk_sql.campaign_runs AS r
    SET paused_at = NULL
    WHERE r.campaign_id = p_campaign_id
      AND r.paused_at IS NOT NULL;

    PERFORM pg_catalog.pg_notify('plunk_sql_campaign_finished', v_payload);
    RETURN v_result;
END
$$;

COMMENT ON FUNCTION plunk_sql.cancel_campaign(text) IS
    'Cancel a SCHEDULED or SENDING campaign: open recipients skipped (cancelled), PENDING emails deleted, '
    'SENDING emails settle later; returns CANCELLED, or DRAFT when nothing was sent (run retired, emails '
    'refused until a new start). Errors: 22004 null id, P0002 unknown campaign, 55000 any other status, '
    '55P03 rows kept locked.';

-- plunk_sql.repair_campaign(campaign_id): the seed bug's manual workaround,
-- done safely, for a campaign stuck SENDING from before plunk_sql was
-- installed (no snapshot). When none of its emails is PENDING or SENDING: SENT,
-- "totalRecipients" = emails the campaign created, "sentCount" = those with
-- "sentAt" set, "updatedAt" now; NOTIFY plunk_sql_campaign_finished (payload
-- with "repaired": true). Returns 'SENT'.
--   22004 null id; P0002 unknown campaign; 55000 started by plunk_sql (it
--   completes by itself: see plunk_sql.stuck_campaigns), not SENDING, or
--   emails still open (the message says how many; nothing changed).
-- Locks: the lifecycle advisory lock, then the campaigns row FOR UPDATE. A
-- legacy campaign has no recipients or campaign_runs rows, so nothing
-- precedes it in the lock order; its emails are only counted.
CREATE OR REPLACE FUNCTION plunk_sql.repair_campaign(p_campaign_id text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_campaign public.campaigns := plunk_sql.require_campaign(p_campaign_id);
    v_status text;
    v_open integer;
    v_created integer;
    v_sent integer;
    v_now timestamp := plunk_sql.utc_now();
BEGIN
    PERFORM plunk_sql._lifecycle_lock(p_campaign_id);
    IF EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            SCHEMA = 'plunk_sql',
            MESSAGE = pg_catalog.format('campaign %s was started by plunk_sql: it is not repaired by hand',
                                        p_campaign_id),
            HINT = 'It finishes when its recipients settle; see plunk_sql.campaign_progress, '
                   'plunk_sql.stuck_campaigns and SELECT * FROM plunk_sql.sweep().';
    END IF;

    SELECT c.status::text INTO v_status FROM public.campaigns AS c WHERE c.id = p_campaign_id FOR UPDATE;
    IF v_status <> 'SENDING' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            SCHEMA = 'plunk_sql',
            MESSAGE = pg_catalog.format('campaign %s is %s: only a SENDING campaign can be repaired',
                                        p_campaign_id, v_status);
    END IF;

    SELECT pg_catalog.count(*) FILTER (WHERE e.status::text IN ('PENDING', 'SENDING'))::integer,
           pg_catalog.count(*)::integer,
           pg_catalog.count(e."sentAt")::integer
    INTO v_open, v_created, v_sent
    FROM public.emails AS e
    WHERE e."campaignId" = p_campaign_id;

    IF v_open > 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            SCHEMA = 'plunk_sql',
            MESSAGE = pg_catalog.format('campaign %s still has %s open emails (PENDING or SENDING): not repaired',
                                        p_campaign_id, v_open),
            DETAIL = pg_catalog.format('%s emails created, %s sent.', v_created, v_sent),
            HINT = 'Wait for the send jobs to finish, or set the lost ones FAILED, then repair again.';
    END IF;

    UPDATE public.campaigns AS c
    SET status = 'SENT',
        "totalRecipients" = v_created,
        "sentCount" = v_sent,
        "updatedAt" = v_now
    WHERE c.id = p_campaign_id;

    PERFORM pg_catalog.pg_notify(
        'plunk_sql_campaign_finished',
        pg_catalog.json_build_object(
            'campaign_id', p_campaign_id, 'status', 'SENT', 'total', v_created,
            'sent', v_sent, 'failed', v_created - v_sent, 'skipped', 0, 'repaired', true)::text);
    RETURN 'SENT';
END
$$;

COMMENT ON FUNCTION plunk_sql.repair_campaign(text) IS
    'Finish a legacy campaign stuck SENDING without a snapshot: SENT, totalRecipients = emails created, '
    'sentCount = emails with sentAt. Errors: 22004, P0002, 55000 toolkit campaign / not SENDING / N emails open.';
