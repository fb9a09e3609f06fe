-- A send's counters, sharded so that workers settling different claims never
-- queue behind one row (issue 14; table: migration 0010_counter_slots).
--
-- plunk_sql.run_slots holds a run's counters in 33 rows, made by the start:
-- slot 0, the pool, counts the recipients no claim has taken yet; slots 1..32
-- count the recipients of the claims handed that slot (claim_batch takes an
-- unlocked one, the least loaded). recipients.slot is the slot a recipient
-- counts in: 0 until a claim first takes it, then fixed for good. Per slot:
-- open (unsettled recipients), sent, failed, skipped, and unsynced (sent
-- recipients not yet added to Plunk's "sentCount"). A run's counters are the
-- sums over its slots and equal a recount after every commit.
--
-- Completion. A transaction that brings a slot's open to 0 takes its run's
-- campaign_runs row FOR UPDATE (the one lock of the end-game) and then, in a
-- new statement (a new snapshot), sums open over all 33 slots. The last
-- transaction to take that lock sees every other one committed, so the one
-- that settles the last recipient sees 0 and sets SENT, in its own
-- transaction, exactly once. Rows a settle takes that no other settle wants:
-- its recipient, its slot (another worker's claims use other slots), and the
-- run row only when its slot drains (once per claim batch).
--
-- "sentCount". A settle adds to its slot's unsynced; the one that brings it to
-- 32 adds the 32 to "sentCount" (an increment on the campaigns row). So during
-- a send "sentCount" = sent - sum(unsynced): it trails the recount by at most
-- 31 per slot, 33 x 31 = 1,023 at worst, and equals it once nothing is open
-- (the end-game writes the recount).
--
-- Lock order, everywhere: recipients rows, then run_slots rows in descending
-- slot order (the pool, slot 0, last), then the campaign_runs row, then the
-- campaigns row.

-- How many claim slots a run has (1..32; slot 0 is the pool).
CREATE OR REPLACE FUNCTION plunk_sql.claim_slots()
RETURNS smallint
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$ SELECT 32::smallint $$;

COMMENT ON FUNCTION plunk_sql.claim_slots() IS
    'The number of claim slots of a run (32); slot 0 is the pool. See sql/48_counters.sql.';

-- plunk_sql._make_slots(campaign_id, open): the 33 slot rows of a new run, the
-- pool holding open recipients. Called by the start (and guard mode's).
--   No errors of its own. Locks: the rows it inserts.
CREATE OR REPLACE FUNCTION plunk_sql._make_slots(p_campaign_id text, p_open integer)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO plunk_sql.run_slots (campaign_id, slot, open)
    SELECT p_campaign_id, s.slot::smallint, CASE WHEN s.slot = 0 THEN p_open ELSE 0 END
    FROM pg_catalog.generate_series(0, plunk_sql.claim_slots()) AS s (slot)
    ON CONFLICT (campaign_id, slot) DO UPDATE
        SET open = excluded.open, sent = 0, failed = 0, skipped = 0, unsynced = 0, progressed_at = NULL
$$;

COMMENT ON FUNCTION plunk_sql._make_slots(text, integer) IS
    'Create the 33 counter slots of a new run (pool = open recipients). Internal.';

-- plunk_sql.run_counts(campaign_id): the run's counters (sums over its
-- slots) and the "sentCount" Plunk's row must show: sent - unsynced while
-- something is open, sent once nothing is. No row without a run.
--   No errors. Locks: none (reads 33 rows).
CREATE OR REPLACE FUNCTION plunk_sql.run_counts(p_campaign_id text)
RETURNS TABLE (open integer, sent integer, failed integer, skipped integer, unsynced integer,
               shown_sent integer, progressed_at timestamptz)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.open, t.sent, t.failed, t.skipped, t.unsynced,
           CASE WHEN t.open = 0 THEN t.sent ELSE t.sent - t.unsynced END,
           t.progressed_at
    FROM (SELECT pg_catalog.sum(s.open)::integer AS open,
                 pg_catalog.sum(s.sent)::integer AS sent,
                 pg_catalog.sum(s.failed)::integer AS failed,
                 pg_catalog.sum(s.skipped)::integer AS skipped,
                 pg_catalog.sum(s.unsynced)::integer AS unsynced,
                 pg_catalog.max(s.progressed_at) AS progressed_at
          FROM plunk_sql.run_slots AS s
          WHERE s.campaign_id = p_campaign_id
          HAVING pg_catalog.count(*) > 0) AS t
$$;

COMMENT ON FUNCTION plunk_sql.run_counts(text) IS
    'A run''s counters summed over its slots: open, sent, failed, skipped, unsynced, the "sentCount" '
    'Plunk''s row shows (sent - unsynced while open, sent once settled), progressed_at.';

-- plunk_sql._finish_if_settled(campaign_id, may_finish): the end-game. Under
-- the run row's lock, if no recipient is open: finished_at, "sentCount" =
-- the recount, and (may_finish, toolkit runs) SENDING -> SENT with its
-- NOTIFY. A cancelled campaign keeps its status. Guard runs: finished_at
-- only (Plunk owns its campaigns row during a guarded send). Returns whether
-- nothing is open.
--   No errors of its own. Locks: the campaign_runs row FOR UPDATE, then the
--   campaigns row when nothing is open.
CREATE OR REPLACE FUNCTION plunk_sql._finish_if_settled(p_campaign_id text, p_may_finish boolean)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_kind text;
    v_open bigint;
    v_sent bigint;
    v_status text;
BEGIN
    SELECT r.kind INTO v_kind FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- A new statement, so a new snapshot: every earlier holder of the lock has committed.
    SELECT pg_catalog.sum(s.open), pg_catalog.sum(s.sent) INTO v_open, v_sent
    FROM plunk_sql.run_slots AS s
    WHERE s.campaign_id = p_campaign_id;
    IF v_open IS DISTINCT FROM 0 THEN
        RETURN false;
    END IF;
    UPDATE plunk_sql.campaign_runs AS r
    SET finished_at = coalesce(r.finished_at, pg_catalog.now())
    WHERE r.campaign_id = p_campaign_id;
    IF v_kind = 'guard' THEN
        RETURN true;  -- guard mode: plunk_sql.sweep_guarded() ends Plunk's send
    END IF;
    SELECT c.status::text INTO v_status FROM public.campaigns AS c WHERE c.id = p_campaign_id FOR UPDATE;
    UPDATE public.campaigns AS c
    SET "sentCount" = v_sent,
        -- Only a SENDING campaign becomes SENT: a cancelled one keeps its status.
        status = CASE WHEN p_may_finish AND v_status = 'SENDING'
                      THEN 'SENT'::public."CampaignStatus" ELSE c.status END,
        "updatedAt" = plunk_sql.utc_now()
    WHERE c.id = p_campaign_id
      AND (c."sentCount" IS DISTINCT FROM v_sent OR (p_may_finish AND v_status = 'SENDING'));
    IF p_may_finish AND v_status = 'SENDING' THEN
        PERFORM plunk_sql.notify_finished(p_campaign_id);
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION plunk_sql._finish_if_settled(text, boolean) IS
    'End-game: under the run row lock, when nothing is open set finished_at, "sentCount" = recount and '
    '(may_finish) SENDING -> SENT with NOTIFY. Internal.';

-- plunk_sql._count(campaign_id, slot, open, sent, failed, skipped, may_finish):
-- add to one slot's counters (open may be negative: settled or moved out).
-- When the slot's open drops to 0, the end-game (_finish_if_settled); then,
-- unless nothing is open, when its unsynced reach 32 they are added to
-- "sentCount" (toolkit runs), so every slot keeps at most 31 unsynced.
--   No errors of its own (a CHECK violation, 23514, would be a toolkit bug).
-- Locks: the slot row; when it drains, the run row (and campaigns row); when
-- unsynced reaches 32, the campaigns row.
CREATE OR REPLACE FUNCTION plunk_sql._count(
    p_campaign_id text,
    p_slot smallint,
    p_open integer,
    p_sent integer,
    p_failed integer,
    p_skipped integer,
    p_may_finish boolean
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_open integer;
    v_unsynced integer;
BEGIN
    UPDATE plunk_sql.run_slots AS s
    SET open = s.open + p_open,
        sent = s.sent + p_sent,
        failed = s.failed + p_failed,
        skipped = s.skipped + p_skipped,
        unsynced = s.unsynced + p_sent,
        progressed_at = CASE WHEN p_sent + p_failed + p_skipped > 0 THEN pg_catalog.now() ELSE s.progressed_at END
    WHERE s.campaign_id = p_campaign_id
      AND s.slot = p_slot
    RETURNING s.open, s.unsynced INTO v_open, v_unsynced;
    IF NOT FOUND THEN
        RETURN;  -- no run (retired meanwhile)
    END IF;
    IF v_open = 0 AND p_open < 0 THEN
        IF plunk_sql._finish_if_settled(p_campaign_id, p_may_finish) THEN
            RETURN;  -- nothing open: "sentCount" is the recount now
        END IF;
    END IF;
    IF v_unsynced >= 32
       AND EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r
                      WHERE r.campaign_id = p_campaign_id AND r.kind = 'toolkit') THEN
        UPDATE plunk_sql.run_slots AS s
        SET unsynced = s.unsynced - v_unsynced
        WHERE s.campaign_id = p_campaign_id
          AND s.slot = p_slot;
        UPDATE public.campaigns AS c
        SET "sentCount" = c."sentCount" + v_unsynced,
            "updatedAt" = plunk_sql.utc_now()
        WHERE c.id = p_campaign_id;
    END IF;
END
$$;

COMMENT ON FUNCTION plunk_sql._count(text, smallint, integer, integer, integer, integer, boolean) IS
    'Add to one counter slot; end-game when it drains, "sentCount" += 32 when its unsynced reach 32. Internal.';

-- plunk_sql.count_moves(campaign_id, from_slots, to_slots, outcomes,
-- may_finish): count a set of recipient moves, element i being one recipient
-- that was in slot from_slots[i]: outcomes[i] NULL means it stayed open and now
-- counts in to_slots[i] (a claim); sent/failed/skipped means it settled (in
-- its slot). One _count per slot touched, in descending slot order.
--   No errors of its own. Locks: as _count, per slot, in the global order.
CREATE OR REPLACE FUNCTION plunk_sql.count_moves(
    p_campaign_id text,
    p_from smallint[],
    p_to smallint[],
    p_outcomes plunk_sql.recipient_state[],
    p_may_finish boolean DEFAULT true
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT d.slot,
               pg_catalog.sum(d.open)::integer AS open,
               pg_catalog.sum(d.sent)::integer AS sent,
               pg_catalog.sum(d.failed)::integer AS failed,
               pg_catalog.sum(d.skipped)::integer AS skipped
        FROM unnest(p_from, p_to, p_outcomes) AS m (from_slot, to_slot, outcome)
        CROSS JOIN LATERAL (VALUES
            (m.from_slot, -1, (m.outcome IS NOT DISTINCT FROM 'sent')::integer,
             (m.outcome IS NOT DISTINCT FROM 'failed')::integer, (m.outcome IS NOT DISTINCT FROM 'skipped')::integer),
            (m.to_slot, 1, 0, 0, 0)
        ) AS d (slot, open, sent, failed, skipped)
        WHERE (m.outcome IS NOT NULL AND d.open = -1)                      -- settled in its slot
           OR (m.outcome IS NULL AND m.to_slot IS DISTINCT FROM m.from_slot)  -- moved: out of one, into the other
        GROUP BY d.slot
        ORDER BY d.slot DESC
    LOOP
        IF v.open <> 0 OR v.sent + v.failed + v.skipped <> 0 THEN
            PERFORM plunk_sql._count(p_campaign_id, v.slot, v.open, v.sent, v.failed, v.skipped, p_may_finish);
        END IF;
    END LOOP;
END
$$;

COMMENT ON FUNCTION plunk_sql.count_moves(text, smallint[], smallint[], plunk_sql.recipient_state[], boolean) IS
    'Count recipient moves (claimed into a slot, or settled) on the run''s counter slots, in lock order. Internal.';

-- plunk_sql.count_settled(campaign_id, slots, outcomes, may_finish): recipients
-- that settled, each in its own slot (count_moves without moves).
CREATE OR REPLACE FUNCTION plunk_sql.count_settled(
    p_campaign_id text,
    p_slots smallint[],
    p_outcomes plunk_sql.recipient_state[],
    p_may_finish boolean DEFAULT true
)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT plunk_sql.count_moves(p_campaign_id, p_slots, p_slots, p_outcomes, p_may_finish)
$$;

COMMENT ON FUNCTION plunk_sql.count_settled(text, smallint[], plunk_sql.recipient_state[], boolean) IS
    'Count settled recipients on their counter slots (see count_moves). Internal.';

-- Upgrade from one counter row per run (before 0.3.0): each run without slots
-- gets them, its counts copied into the pool. The SHARE lock waits for every
-- statement of the previous version still writing campaign_runs counters and
-- holds new ones until this migrate commits (with the new triggers), so
-- nothing is counted twice or lost.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r
               WHERE NOT EXISTS (SELECT 1 FROM plunk_sql.run_slots AS s WHERE s.campaign_id = r.campaign_id)) THEN
        LOCK TABLE plunk_sql.campaign_runs IN SHARE MODE;
        INSERT INTO plunk_sql.run_slots (campaign_id, slot, open, sent, failed, skipped, progressed_at)
        SELECT r.campaign_id, s.slot::smallint,
               CASE WHEN s.slot = 0 THEN r.total - r.sent - r.failed - r.skipped ELSE 0 END,
               CASE WHEN s.slot = 0 THEN r.sent ELSE 0 END,
               CASE WHEN s.slot = 0 THEN r.failed ELSE 0 END,
               CASE WHEN s.slot = 0 THEN r.skipped ELSE 0 END,
               CASE WHEN s.slot = 0 THEN r.progressed_at END
        FROM plunk_sql.campaign_runs AS r
        CROSS JOIN pg_catalog.generate_series(0, plunk_sql.claim_slots()) AS s (slot)
        WHERE NOT EXISTS (SELECT 1 FROM plunk_sql.run_slots AS x WHERE x.campaign_id = r.campaign_id);
    END IF;
END
$$;

DROP FUNCTION IF EXISTS plunk_sql.apply_settlement(text, integer, integer, integer);
