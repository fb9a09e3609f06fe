-- plunk_sql 0012: the counter slots without per-row constraints (issue 14).
-- depends: 0010_counter_slots 0011_scheduled_starts
--
-- Every settle updates one plunk_sql.run_slots row. Its seven CHECK
-- constraints cost that UPDATE about 10 us each time it ran (PostgreSQL
-- prepares a table's CHECK expressions again for every statement that writes
-- it: 16-20 us with them, 8.5 us without, 20,000 single-row UPDATEs each
-- committed). Its foreign key to campaign_runs cost a batched settle one
-- referential check per email: a row already updated by the same transaction
-- is re-checked on each further UPDATE, even with its key unchanged.
--
-- The rules stay: plunk_sql.check_invariants reports a slot with a negative
-- counter or more unsynced than sent (counters_differ_from_recount), and a
-- trigger on campaign_runs deletes a run's slots with it
-- (sql/48_counters.sql), as ON DELETE CASCADE did.
--
-- Safe to re-run: IF EXISTS throughout.

ALTER TABLE plunk_sql.run_slots DROP CONSTRAINT IF EXISTS run_slots_slot_check;
ALTER TABLE plunk_sql.run_slots DROP CONSTRAINT IF EXISTS run_slots_open_check;
ALTER TABLE plunk_sql.run_slots DROP CONSTRAINT IF EXISTS run_slots_sent_check;
ALTER TABLE plunk_sql.run_slots DROP CONSTRAINT IF EXISTS run_slots_failed_check;
ALTER TABLE plunk_sql.run_slots DROP CONSTRAINT IF EXISTS run_slots_skipped_check;
ALTER TABLE plunk_sql.run_slots DROP CONSTRAINT IF EXISTS run_slots_taken_check;
ALTER TABLE plunk_sql.run_slots DROP CONSTRAINT IF EXISTS run_slots_check;
ALTER TABLE plunk_sql.run_slots DROP CONSTRAINT IF EXISTS run_slots_campaign_id_fkey;

-- Slots of runs already gone (none unless someone deleted them by hand while the
-- cascade was being replaced; the trigger in sql/48_counters.sql takes over).
DELETE FROM plunk_sql.run_slots AS s
WHERE NOT EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = s.campaign_id);
