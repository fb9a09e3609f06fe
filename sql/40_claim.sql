-- Claiming: workers take pending recipients in batches under a lease.

-- plunk_sql.claim_batch(campaign_id, batch_size, lease): up to batch_size
-- pending recipients of a sending campaign, claimed under a lease.
--
-- Each picked recipient is re-checked against the contact as it is now: a
-- contact deleted since the snapshot, unsubscribed (unless the campaign is
-- TRANSACTIONAL), or whose address an enabled rule of the project in Plunk's
-- public.recipient_suppression_rules matches (where that table exists; reason
-- 'suppressed by rule <name> (<kind>, <id>)') is settled as skipped with its
-- reason and not returned. The
-- claim is a committed row once the caller commits: a crash loses nothing, and
-- only an expired lease (the sweep) makes a claimed recipient pending again.
-- Returns nothing for a campaign that is not SENDING, not started by the
-- toolkit, or paused.
--   22004 null argument; P0002 unknown campaign; 22023 batch_size outside
--   1..10000 or lease outside (0, 1 day].
-- Locks: row locks on the pending recipients it takes (FOR UPDATE SKIP LOCKED
-- in a materialised CTE, so LIMIT is honoured and concurrent callers never
-- wait for or receive each other's rows); one unlocked counter slot row (SKIP
-- LOCKED), then the pool's (slot 0): the counters of what it took and skipped
-- (sql/48_counters.sql). A skipped recipient a lease expiry gave back counts
-- in its first claim's slot, locked after this claim's: a statement holding
-- both in the other order can deadlock with it (40P01, rare: retry).
CREATE OR REPLACE FUNCTION plunk_sql.claim_batch(
    p_campaign_id text,
    p_batch_size integer DEFAULT 500,
    p_lease interval DEFAULT '5 minutes'
)
RETURNS TABLE (contact_id text, email text, data jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Plans of trigger/claim queries are cached per session, planned once with
-- whatever batch size came first; nested loops over index probes stay linear
-- in the batch for every later size, a cached hash join would not.
SET enable_hashjoin = off
SET enable_mergejoin = off
-- The pick must be an ordered scan of recipients_open_key that stops after
-- batch_size rows, never a bitmap of every pending row followed by a sort.
SET enable_bitmapscan = off
SET enable_sort = off
-- A disabled plan node costs 1e10, far above jit_above_cost: without this the
-- slot pick and the counters (a sort of 33 rows) were JIT-compiled, 35-70 ms
-- per claim.
SET jit = off
AS $$
DECLARE
    v_campaign public.campaigns := plunk_sql.require_campaign(p_campaign_id);
    v_run plunk_sql.campaign_runs;
    v_ids text[];
    v_emails text[];
    v_data jsonb[];
    v_from smallint[];
    v_to smallint[];
    v_outcomes plunk_sql.recipient_state[];
    v_slot smallint;
BEGIN
    IF p_batch_size IS NULL OR p_lease IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'null_value_not_allowed',
            SCHEMA = 'plunk_sql',
            MESSAGE = 'batch_size and lease must not be null';
    END IF;
    IF p_batch_size NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            SCHEMA = 'plunk_sql', COLUMN = 'batch_size',
            MESSAGE = pg_catalog.format('batch_size must be between 1 and 10000, got %s', p_batch_size);
    END IF;
    IF p_lease <= interval '0' OR p_lease > interval '1 day' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            SCHEMA = 'plunk_sql', COLUMN = 'lease',
            MESSAGE = pg_catalog.format('lease must be positive and at most 1 day, got %s', p_lease);
    END IF;

    SELECT * INTO v_run FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id;
    IF NOT FOUND OR v_campaign.status::text <> 'SENDING' OR v_run.paused_at IS NOT NULL
        OR v_run.kind = 'guard'  -- guard mode: Plunk's own code mails a guarded run
    THEN
        RETURN;
    END IF;

    -- This claim's counter slot: an unlocked claim slot, the least loaded
    -- first, so that workers settling different claims update different rows
    -- (sql/48_counters.sql). Every slot busy: the batch stays in the pool.
    SELECT s.slot INTO v_slot
    FROM plunk_sql.run_slots AS s
    WHERE s.campaign_id = p_campaign_id
      AND s.slot > 0
    ORDER BY s.open, s.slot
    LIMIT 1
    FOR UPDATE SKIP LOCKED;
    v_slot := coalesce(v_slot, 0);

    -- Plunk's suppression rules exist only in its newest versions: without the
    -- table the claim is the plain statement (no lookup at all on the hot path).
    IF pg_catalog.to_regclass('public.recipient_suppression_rules') IS NULL THEN
        WITH picked AS MATERIALIZED (
            SELECT r.ctid AS row_id, r.contact_id, r.slot AS old_slot
            FROM plunk_sql.recipients AS r
            WHERE r.campaign_id = p_campaign_id
              AND r.state = 'pending'
            ORDER BY r.contact_id
            LIMIT p_batch_size
            FOR UPDATE SKIP LOCKED
        ),
        checked AS (
            SELECT p.row_id,
                   p.contact_id,
                   p.old_slot,
                   k.email,
                   k.data,
                   CASE
                       WHEN k.id IS NULL THEN 'contact deleted'
                       WHEN NOT v_run.transactional AND NOT k.subscribed THEN 'unsubscribed'
                   END AS skip_reason
            FROM picked AS p
            LEFT JOIN public.contacts AS k
                   ON k.id = p.contact_id
                  AND k."projectId" = v_run.project_id
        ),
        claimed AS (
            UPDATE plunk_sql.recipients AS r
            SET state = (CASE WHEN ch.skip_reason IS NULL THEN 'claimed' ELSE 'skipped' END)::plunk_sql.recipient_state,
                claims = r.claims + 1,
                lease_expires_at = CASE WHEN ch.skip_reason IS NULL THEN pg_catalog.now() + p_lease END,
                settled_at = CASE WHEN ch.skip_reason IS NOT NULL THEN pg_catalog.now() END,
                reason = ch.skip_reason,
                -- A recipient counts in the slot of the claim that first takes it.
                slot = CASE WHEN ch.skip_reason IS NULL AND ch.old_slot = 0 THEN v_slot ELSE ch.old_slot END
            FROM checked AS ch
            -- The picked rows are locked by this statement, so their ctid is stable;
            -- addressing them by ctid keeps the plan a TID lookup per row, never a
            -- scan of the campaign's pending rows per picked row (what the planner
            -- chose for a fresh, unanalysed snapshot). A row another session
            -- changed after this statement's snapshot (the lock re-check returned
            -- its newer version) is not visible to the TID lookup: it is left
            -- pending for a later claim, never lost.
            WHERE r.ctid = ch.row_id
            RETURNING r.contact_id, ch.email, ch.data, ch.skip_reason, ch.old_slot, r.slot AS new_slot
        )
        SELECT pg_catalog.array_agg(cl.contact_id ORDER BY cl.contact_id) FILTER (WHERE cl.skip_reason IS NULL),
               pg_catalog.array_agg(cl.email ORDER BY cl.contact_id) FILTER (WHERE cl.skip_reason IS NULL),
               pg_catalog.array_agg(cl.data ORDER BY cl.contact_id) FILTER (WHERE cl.skip_reason IS NULL),
               pg_catalog.array_agg(cl.old_slot) FILTER (WHERE cl.skip_reason IS NOT NULL OR cl.old_slot <> cl.new_slot),
               pg_catalog.array_agg(cl.new_slot) FILTER (WHERE cl.skip_reason IS NOT NULL OR cl.old_slot <> cl.new_slot),
               pg_catalog.array_agg(CASE WHEN cl.skip_reason IS NOT NULL THEN 'skipped'::plunk_sql.recipient_state END)
                   FILTER (WHERE cl.skip_reason IS NOT NULL OR cl.old_slot <> cl.new_slot)
        INTO v_ids, v_emails, v_data, v_from, v_to, v_outcomes
        FROM claimed AS cl;
    ELSE
        WITH picked AS MATERIALIZED (
            SELECT r.ctid AS row_id, r.contact_id, r.slot AS old_slot
            FROM plunk_sql.recipients AS r
            WHERE r.campaign_id = p_campaign_id
              AND r.state = 'pending'
            ORDER BY r.contact_id
            LIMIT p_batch_size
            FOR UPDATE SKIP LOCKED
        ),
        joined AS MATERIALIZED (
            SELECT p.row_id, p.contact_id, p.old_slot, k.id AS found_id, k.email, k.data, k.subscribed
            FROM picked AS p
            LEFT JOIN public.contacts AS k
                   ON k.id = p.contact_id
                  AND k."projectId" = v_run.project_id
        ),
        -- Plunk's suppression rules, where its version has them (one call per
        -- batch; nothing when public.recipient_suppression_rules does not exist).
        suppressed AS (
            SELECT s.address, s.rule_id, s.rule_name, s.rule_kind
            FROM plunk_sql.suppression_rules_matching(
                     v_run.project_id,
                     ARRAY(SELECT j.email FROM joined AS j WHERE j.found_id IS NOT NULL)) AS s
        ),
        checked AS (
            SELECT j.row_id,
                   j.contact_id,
                   j.old_slot,
                   j.email,
                   j.data,
                   CASE
                       WHEN j.found_id IS NULL THEN 'contact deleted'
                       WHEN NOT v_run.transactional AND NOT j.subscribed THEN 'unsubscribed'
                       WHEN s.rule_id IS NOT NULL
                           THEN pg_catalog.format('suppressed by rule %s (%s, %s)', s.rule_name, s.rule_kind, s.rule_id)
                   END AS skip_reason
            FROM joined AS j
            LEFT JOIN suppressed AS s ON s.address = j.email
        ),
        claimed AS (
            UPDATE plunk_sql.recipients AS r
            SET state = (CASE WHEN ch.skip_reason IS NULL THEN 'claimed' ELSE 'skipped' END)::plunk_sql.recipient_state,
                claims = r.claims + 1,
                lease_expires_at = CASE WHEN ch.skip_reason IS NULL THEN pg_catalog.now() + p_lease END,
                settled_at = CASE WHEN ch.skip_reason IS NOT NULL THEN pg_catalog.now() END,
                reason = ch.skip_reason,
                -- A recipient counts in the slot of the claim that first takes it.
                slot = CASE WHEN ch.skip_reason IS NULL AND ch.old_slot = 0 THEN v_slot ELSE ch.old_slot END
            FROM checked AS ch
            -- The picked rows are locked by this statement, so their ctid is stable;
            -- addressing them by ctid keeps the plan a TID lookup per row, never a
            -- scan of the campaign's pending rows per picked row (what the planner
            -- chose for a fresh, unanalysed snapshot). A row another session
            -- changed after this statement's snapshot (the lock re-check returned
            -- its newer version) is not visible to the TID lookup: it is left
            -- pending for a later claim, never lost.
            WHERE r.ctid = ch.row_id
            RETURNING r.contact_id, ch.email, ch.data, ch.skip_reason, ch.old_slot, r.slot AS new_slot
        )
        SELECT pg_catalog.array_agg(cl.contact_id ORDER BY cl.contact_id) FILTER (WHERE cl.skip_reason IS NULL),
               pg_catalog.array_agg(cl.email ORDER BY cl.contact_id) FILTER (WHERE cl.skip_reason IS NULL),
               pg_catalog.array_agg(cl.data ORDER BY cl.contact_id) FILTER (WHERE cl.skip_reason IS NULL),
               pg_catalog.array_agg(cl.old_slot) FILTER (WHERE cl.skip_reason IS NOT NULL OR cl.old_slot <> cl.new_slot),
               pg_catalog.array_agg(cl.new_slot) FILTER (WHERE cl.skip_reason IS NOT NULL OR cl.old_slot <> cl.new_slot),
               pg_catalog.array_agg(CASE WHEN cl.skip_reason IS NOT NULL THEN 'skipped'::plunk_sql.recipient_state END)
                   FILTER (WHERE cl.skip_reason IS NOT NULL OR cl.old_slot <> cl.new_slot)
        INTO v_ids, v_emails, v_data, v_from, v_to, v_outcomes
        FROM claimed AS cl;
    END IF;

    IF v_from IS NOT NULL THEN
        -- Counters: taken from the pool into this claim's slot, skipped in their slot.
        PERFORM plunk_sql.count_moves(p_campaign_id, v_from, v_to, v_outcomes);
    END IF;

    RETURN QUERY SELECT u.contact_id, u.email, u.data FROM unnest(v_ids, v_emails, v_data) AS u (contact_id, email, data);
END
$$;

COMMENT ON FUNCTION plunk_sql.claim_batch(text, integer, interval) IS
    'Claim up to batch_size pending recipients of a SENDING campaign under a lease (FOR UPDATE SKIP LOCKED); '
    'unsubscribed/deleted/suppressed contacts are settled as skipped, not returned. '
    'Errors: 22004 null argument, P0002 unknown campaign, 22023 batch_size/lease out of range.';
