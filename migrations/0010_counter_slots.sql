-- plunk_sql 0010: a run's counters in slot rows (issue 14).
-- depends: 0009_recipient_checks
--
-- Before: one counter row per run (campaign_runs.sent/failed/skipped), updated
-- by every settling statement and held to its commit, so the settles of one
-- campaign queued behind one row. Now a run's counters live in 33 rows of
-- plunk_sql.run_slots: slot 0 (the pool) counts the recipients no claim has
-- taken yet, slots 1..32 the recipients of the claims handed that slot.
-- recipients.slot is the slot a recipient counts in; 0 until a claim first
-- takes it, then fixed. The rules: sql/48_counters.sql.
--
-- The counts of existing runs are copied into their pool rows by
-- sql/48_counters.sql, in the same transaction that replaces the triggers,
-- so no settle can be counted twice or lost while upgrading. From then on
-- campaign_runs.sent/failed/skipped are no longer written; they stay (with
-- their last values) so that a version running during the upgrade never
-- meets a missing column.
--
-- The CHECK constraints of 0009 are dropped: each single-row UPDATE of a
-- recipient paid 13-25 us to prepare them (measured on the settle path, issue
-- 14). Their rules are checked instead, by plunk_sql.check_invariants (one
-- invariant per former constraint, same names), like the state machine's moves.
--
-- Safe to re-run: everything is created only when missing. Adding a column
-- with a constant default rewrites nothing (a brief ACCESS EXCLUSIVE lock).

ALTER TABLE plunk_sql.recipients ADD COLUMN IF NOT EXISTS slot smallint NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS plunk_sql.run_slots (
    campaign_id text NOT NULL
        REFERENCES plunk_sql.campaign_runs (campaign_id) ON DELETE CASCADE,
    slot smallint NOT NULL CHECK (slot BETWEEN 0 AND 32),
    open integer NOT NULL DEFAULT 0 CHECK (open >= 0),
    sent integer NOT NULL DEFAULT 0 CHECK (sent >= 0),
    failed integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
    skipped integer NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    -- Recipients this slot's claims took from the pool (slot 0 still counts
    -- them in its open: a claim never writes the pool row, so claims never
    -- wait for each other). A run's open = sum(open - taken).
    taken integer NOT NULL DEFAULT 0 CHECK (taken >= 0),
    -- Sent recipients not yet added to Plunk's campaigns."sentCount".
    unsynced integer NOT NULL DEFAULT 0 CHECK (unsynced >= 0 AND unsynced <= sent),
    -- When a recipient of this slot last settled or was claimed into it.
    progressed_at timestamptz,
    PRIMARY KEY (campaign_id, slot)
)
-- Small rows updated in place all the time: room on the page for HOT updates.
WITH (fillfactor = 40);

COMMENT ON TABLE plunk_sql.run_slots IS
    'A run''s counters, sharded: slot 0 = recipients no claim took yet, 1..32 = claims. Sums = the run''s '
    'counters (sql/48_counters.sql).';

-- A settle that drains its slot (or reaches 32 unsynced, or settles in the
-- pool) writes one row here; a deferred trigger on it runs the end-game at
-- commit (sql/48_counters.sql) and deletes the row. Unlogged: a row lives only
-- inside its transaction, so a crash loses nothing the transaction kept.
CREATE UNLOGGED TABLE IF NOT EXISTS plunk_sql.slot_events (
    campaign_id text NOT NULL,
    slot smallint NOT NULL
);

COMMENT ON TABLE plunk_sql.slot_events IS
    'Transient: slots whose end-game / "sentCount" step runs at commit (sql/48_counters.sql).';

ALTER TABLE plunk_sql.recipients DROP CONSTRAINT IF EXISTS recipients_settled_at_iff_settled;
ALTER TABLE plunk_sql.recipients DROP CONSTRAINT IF EXISTS recipients_email_id_when_linked;
ALTER TABLE plunk_sql.recipients DROP CONSTRAINT IF EXISTS recipients_reason_iff_failed_or_skipped;
ALTER TABLE plunk_sql.recipients DROP CONSTRAINT IF EXISTS recipients_lease_when_claimed;
