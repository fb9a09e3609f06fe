-- A send's counters, sharded so that workers settling different claims never
-- queue behind one row (issue 14; table: migration 0010_counter_slots).
--
-- plunk_sql.run_slots holds a run's counters in 33 rows, made by the start:
-- slot 0, the pool, counts the recipients of the snapshot; slots 1..32 count
-- the recipients of the claims handed that slot (claim_batch takes an
-- unlocked one, the least loaded). recipients.slot is the slot a recipient
-- counts in: 0 until a claim first takes it, then fixed for good. Per slot:
-- open (unsettled recipients counted there), taken (recipients its claims
-- took from the pool: the pool's open still includes them, so that a claim
-- writes only its own slot row and claims never wait for each other; a claim
-- that skips someone still in the pool settles them there, on the pool row,
-- so every settle of a pool recipient is serialised on that row), sent,
-- failed, skipped, and unsynced (sent recipients not yet added to Plunk's
-- "sentCount"). A run's counters are the sums over its slots (open =
-- sum(open - taken)) and equal a recount after every commit.
--
-- Completion. Each slot 1..32 knows exactly when it holds no open recipient
-- (open = 0: every change to it is an UPDATE of its one row); the pool holds
-- none when open - sum(taken) = 0. A settle only updates its slot row. When
-- that drains the slot, it writes a plunk_sql.slot_events row, whose deferred
-- constraint trigger runs the end-game as the transaction commits, after
-- every row lock the transaction takes: it locks the campaigns row FOR NO KEY
-- UPDATE (the end-game's one lock) and then, in a new statement (a new
-- snapshot), sums the open of all 33 slots.
-- The last transaction to take that lock sees every other one committed, so
-- the one that settles the last recipient sees 0 and sets SENT, at its own
-- commit, exactly once. Claims only move open recipients (their skips settle
-- in the pool), so they never finish a campaign. Rows a settle takes that no
-- other settle wants: its recipient and its slot (other workers' claims have
-- other slots); the campaigns row only when its slot drains (about once per
-- claim) or its unsynced reach 32, and only while committing.
--
-- "sentCount". A settle adds to its slot's unsynced; the one that brings it to
-- 32 adds the 32 to "sentCount" (an increment on the campaigns row). So during
-- a send "sentCount" = sent - sum(unsynced): it trails the recount by at most
-- 31 per slot, 33 x 31 = 1,023 at worst, and equals it once nothing is open
-- (the end-game writes the recount) and after cancel_campaign.
--
-- Lock order, everywhere: recipients rows, then run_slots rows in descending
-- slot order (the pool, slot 0, last), then the campaigns row, then the
-- campaign_runs row. (A statement that settles emails of several claims locks
-- their slots in the order of its rows; two such statements can deadlock,
-- 40P01 for one of them.) Guard runs take the campaign_runs row instead of the
-- campaigns row, which Plunk owns during a guarded send.

-- How many claim slots a run has (1..32; slot 0 is the pool).
CREATE OR REPLACE FUNCTION plunk_sql.claim_slots()
RETURNS smallint
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
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
        SET open = excluded.open, taken = 0, sent = 0, failed = 0, skipped = 0, unsynced = 0, progressed_at = NULL
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
    FROM (SELECT pg_catalog.sum(s.open - s.taken)::integer AS open,
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

-- plunk_sql._finish_if_settled(campaign_id): the end-game. Under the
-- campaigns row's lock (guard runs: the campaign_runs row's), if no recipient
-- is open: finished_at, "sentCount" = the recount, and SENDING -> SENT with
-- its NOTIFY (a cancelled campaign keeps its status). Guard runs: finished_at
-- only (Plunk owns its campaigns row during a guarded send). Returns whether
-- nothing is open.
--   No errors of its own. Locks: the campaigns row FOR NO KEY UPDATE (guard
--   runs: the campaign_runs row), then the campaign_runs row when nothing is open.
CREATE OR REPLACE FUNCTION plunk_sql._finish_if_settled(p_campaign_id text)
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
    SELECT r.kind INTO v_kind FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- NO KEY UPDATE, not UPDATE: an emails INSERT holds KEY SHARE on its
    -- campaign (the foreign key's check) while it links recipients; FOR UPDATE
    -- would wait for it while holding what it waits for.
    IF v_kind = 'toolkit' THEN
        SELECT c.status::text INTO v_status FROM public.campaigns AS c WHERE c.id = p_campaign_id
        FOR NO KEY UPDATE;
    ELSE
        PERFORM 1 FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id FOR NO KEY UPDATE;
    END IF;
    -- A new statement, so a new snapshot: every earlier holder of the lock has committed.
    SELECT pg_catalog.sum(s.open - s.taken), pg_catalog.sum(s.sent) INTO v_open, v_sent
    FROM plunk_sql.run_slots AS s
    WHERE s.campaign_id = p_campaign_id;
    IF v_open IS DISTINCT FROM 0 THEN
        RETURN false;
    END IF;
    UPDATE plunk_sql.campaign_runs AS r
    SET finished_at = coalesce(r.finished_at, pg_catalog.now())
    WHERE r.campaign_id = p_campaign_id
      AND r.finished_at IS NULL;
    IF v_kind <> 'toolkit' THEN
        RETURN true;  -- guard mode: plunk_sql.sweep_guarded() ends Plunk's send
    END IF;
    UPDATE public.campaigns AS c
    SET "sentCount" = v_sent,
        -- Only a SENDING campaign becomes SENT: a cancelled one keeps its status.
        status = CASE WHEN v_status = 'SENDING' THEN 'SENT'::public."CampaignStatus" ELSE c.status END,
        "updatedAt" = plunk_sql.utc_now()
    WHERE c.id = p_campaign_id
      AND (c."sentCount" IS DISTINCT FROM v_sent OR v_status = 'SENDING');
    IF v_status = 'SENDING' THEN
        PERFORM plunk_sql.notify_finished(p_campaign_id);
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION plunk_sql._finish_if_settled(text) IS
    'End-game: under the campaigns row lock, when nothing is open set finished_at, "sentCount" = recount '
    'and SENDING -> SENT with NOTIFY. Internal.';

-- plunk_sql._count(campaign_id, slot, open, taken, sent, failed, skipped):
-- add to one slot's counters (open negative: settled). Only the slot row;
-- when a settle drains it (slots 1..32: open 0), settles in the pool, or
-- brings its unsynced to 32, one plunk_sql.slot_events row, whose deferred
-- trigger runs what follows (the end-game, "sentCount") as the transaction
-- commits. The emails UPDATE trigger inlines the same statements (its hot
-- path).
--   No errors of its own.
-- Locks: the slot row.
CREATE OR REPLACE FUNCTION plunk_sql._count(
    p_campaign_id text,
    p_slot smallint,
    p_open integer,
    p_taken integer,
    p_sent integer,
    p_failed integer,
    p_skipped integer
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
        taken = s.taken + p_taken,
        sent = s.sent + p_sent,
        failed = s.failed + p_failed,
        skipped = s.skipped + p_skipped,
        unsynced = s.unsynced + p_sent,
        progressed_at = CASE WHEN p_sent + p_failed + p_skipped > 0 THEN pg_catalog.now() ELSE s.progressed_at END
    WHERE s.campaign_id = p_campaign_id
      AND s.slot = p_slot
    RETURNING s.open, s.unsynced INTO v_open, v_unsynced;
    -- Once per transaction and cause: unsynced crossing 32 here, not each time above it.
    IF (p_sent + p_failed + p_skipped > 0 AND (p_slot = 0 OR v_open = 0))
       OR (v_unsynced >= 32 AND v_unsynced - p_sent < 32) THEN
        INSERT INTO plunk_sql.slot_events (campaign_id, slot) VALUES (p_campaign_id, p_slot);
    END IF;
END
$$;

COMMENT ON FUNCTION plunk_sql._count(text, smallint, integer, integer, integer, integer, integer) IS
    'Add to one counter slot; queue its end-game / "sentCount" step for commit when due. Internal.';

-- Trigger (deferred, at commit), on plunk_sql.slot_events: a slot a settle
-- drained, a settle in the pool, or a slot whose unsynced reached 32.
-- Re-reads the slot as it is now: drained (slots 1..32: open = 0; the pool:
-- open - sum(taken) = 0) -> the end-game; then, unless nothing is open,
-- unsynced >= 32 -> added to "sentCount" (toolkit runs) and zeroed. Deletes the
-- event row. Deferred so that it runs after every row lock the transaction
-- takes: the campaigns row is then never held while a slot row is waited for.
-- (A trigger on run_slots itself would cost every settle 15-20 us, even with a
-- WHEN clause that is false.)
--   No errors of its own.
-- Locks: as _finish_if_settled; the campaigns row for "sentCount".
CREATE OR REPLACE FUNCTION plunk_sql._run_slots_settled()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_open integer;
    v_unsynced integer;
BEGIN
    SELECT CASE WHEN NEW.slot = 0
                THEN pg_catalog.sum(s.open) FILTER (WHERE s.slot = 0) - pg_catalog.sum(s.taken)
                ELSE pg_catalog.sum(s.open) FILTER (WHERE s.slot = NEW.slot) END,
           pg_catalog.sum(s.unsynced) FILTER (WHERE s.slot = NEW.slot)
    INTO v_open, v_unsynced
    FROM plunk_sql.run_slots AS s
    WHERE s.campaign_id = NEW.campaign_id;
    DELETE FROM plunk_sql.slot_events AS e
    WHERE e.campaign_id = NEW.campaign_id
      AND e.slot = NEW.slot;
    IF v_open IS NULL THEN
        RETURN NULL;  -- the run is gone (retired)
    END IF;
    IF v_open = 0 THEN
        IF plunk_sql._finish_if_settled(NEW.campaign_id) THEN
            RETURN NULL;  -- nothing open: "sentCount" is the recount now
        END IF;
    END IF;
    IF v_unsynced >= 32
       AND EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r
                   WHERE r.campaign_id = NEW.campaign_id AND r.kind = 'toolkit') THEN
        UPDATE plunk_sql.run_slots AS s
        SET unsynced = s.unsynced - v_unsynced
        WHERE s.campaign_id = NEW.campaign_id
          AND s.slot = NEW.slot;
        UPDATE public.campaigns AS c
        SET "sentCount" = c."sentCount" + v_unsynced,
            "updatedAt" = plunk_sql.utc_now()
        WHERE c.id = NEW.campaign_id;
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql._run_slots_settled() IS
    'Deferred row trigger on plunk_sql.slot_events: the end-game of a drained slot, "sentCount" += unsynced '
    'once they reach 32. Internal.';

DROP TRIGGER IF EXISTS run_slots_settled ON plunk_sql.run_slots;
DROP TRIGGER IF EXISTS slot_events_settled ON plunk_sql.slot_events;
CREATE CONSTRAINT TRIGGER slot_events_settled
    AFTER INSERT ON plunk_sql.slot_events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    EXECUTE FUNCTION plunk_sql._run_slots_settled();

-- Trigger: a run's slots go with its campaign_runs row (retired, Plunk's
-- campaign deleted, guard mode ending). A trigger, not a foreign key: the key
-- cost every batched settle one referential check per email (migration 0012).
--   No errors. Locks: the run's slot rows.
CREATE OR REPLACE FUNCTION plunk_sql._run_deleted()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM plunk_sql.run_slots AS s WHERE s.campaign_id = OLD.campaign_id;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql._run_deleted() IS
    'Row trigger on plunk_sql.campaign_runs DELETE: deletes the run''s counter slots. Internal.';

CREATE OR REPLACE TRIGGER campaign_runs_deleted
    AFTER DELETE ON plunk_sql.campaign_runs
    FOR EACH ROW
    EXECUTE FUNCTION plunk_sql._run_deleted();

-- plunk_sql.count_moves(campaign_id, from_slots, to_slots, outcomes): count a set of recipient moves, element i being one recipient
-- that counted in slot from_slots[i] and now counts in to_slots[i] (a claim
-- taking it from the pool: from 0, to the claim's slot), outcomes[i] NULL when
-- it is still open, else sent/failed/skipped (settled, in to_slots[i]). One
-- _count per slot touched, in descending slot order.
--   No errors of its own. Locks: the slot rows, in the global order.
CREATE OR REPLACE FUNCTION plunk_sql.count_moves(
    p_campaign_id text,
    p_from smallint[],
    p_to smallint[],
    p_outcomes plunk_sql.recipient_state[]
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Callers may run with plan nodes disabled (claim_batch: enable_sort off);
-- their 1e10 cost would get this 33-row sort JIT-compiled.
SET jit = off
AS $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT m.to_slot AS slot,
               -- taken from the pool: the pool keeps counting it (minus taken)
               pg_catalog.count(*) FILTER (WHERE m.from_slot <> m.to_slot AND m.outcome IS NULL)::integer
                   - pg_catalog.count(*) FILTER (WHERE m.from_slot = m.to_slot AND m.outcome IS NOT NULL)::integer
                   AS open,
               -- (a recipient taken and settled at once would lower the pool's open
               -- without writing the pool row: callers settle those in the pool)
               pg_catalog.count(*) FILTER (WHERE m.from_slot <> m.to_slot)::integer AS taken,
               pg_catalog.count(*) FILTER (WHERE m.outcome = 'sent')::integer AS sent,
               pg_catalog.count(*) FILTER (WHERE m.outcome = 'failed')::integer AS failed,
               pg_catalog.count(*) FILTER (WHERE m.outcome = 'skipped')::integer AS skipped
        FROM unnest(p_from, p_to, p_outcomes) AS m (from_slot, to_slot, outcome)
        GROUP BY m.to_slot
        ORDER BY m.to_slot DESC
    LOOP
        PERFORM plunk_sql._count(p_campaign_id, v.slot, v.open, v.taken, v.sent, v.failed, v.skipped);
    END LOOP;
END
$$;

COMMENT ON FUNCTION plunk_sql.count_moves(text, smallint[], smallint[], plunk_sql.recipient_state[]) IS
    'Count recipient moves (taken from the pool by a claim, or settled) on the run''s counter slots, in lock '
    'order. Internal.';

-- plunk_sql.count_settled(campaign_id, slots, outcomes): recipients
-- that settled, each in its own slot (count_moves without moves).
CREATE OR REPLACE FUNCTION plunk_sql.count_settled(
    p_campaign_id text,
    p_slots smallint[],
    p_outcomes plunk_sql.recipient_state[]
)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT plunk_sql.count_moves(p_campaign_id, p_slots, p_slots, p_outcomes)
$$;

COMMENT ON FUNCTION plunk_sql.count_settled(text, smallint[], plunk_sql.recipient_state[]) IS
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
