-- plunk_sql 0009: CHECK constraints tying a recipient's state to its columns
-- (issue 14; the moves themselves: sql/12_recipient_states.sql).
-- depends: 0007_guard_mode
-- transactional: false
--
--   settled_at  is set exactly when the state is settled (sent, failed, skipped);
--   email_id    is NULL while pending or claimed, set once in flight, sent or failed
--               (a skipped row keeps the email it had, if any: 'email deleted');
--   reason      is set exactly when the state is failed or skipped;
--   lease       a claimed row has lease_expires_at; a pending row has none.
--
-- Safe on a big snapshot: outside a transaction, each constraint is added NOT
-- VALID (a brief ACCESS EXCLUSIVE lock, no scan; new writes are checked from
-- then on), then validated in its own statement under SHARE UPDATE EXCLUSIVE,
-- which lets workers keep claiming and settling during the scan. Safe to
-- re-run: a constraint is added only when missing, and validating a valid one
-- is a no-op. A row that breaks one (written by hand) fails the VALIDATE with
-- 23514 naming the constraint; the NOT VALID constraint stays and a re-run
-- after fixing the row finishes.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conrelid = 'plunk_sql.recipients'::regclass
                     AND conname = 'recipients_settled_at_iff_settled') THEN
        ALTER TABLE plunk_sql.recipients ADD CONSTRAINT recipients_settled_at_iff_settled
            CHECK ((state IN ('sent', 'failed', 'skipped')) = (settled_at IS NOT NULL)) NOT VALID;
    END IF;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conrelid = 'plunk_sql.recipients'::regclass
                     AND conname = 'recipients_email_id_when_linked') THEN
        ALTER TABLE plunk_sql.recipients ADD CONSTRAINT recipients_email_id_when_linked
            CHECK (CASE WHEN state IN ('pending', 'claimed') THEN email_id IS NULL
                        WHEN state IN ('in_flight', 'sent', 'failed') THEN email_id IS NOT NULL
                        ELSE true END) NOT VALID;
    END IF;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conrelid = 'plunk_sql.recipients'::regclass
                     AND conname = 'recipients_reason_iff_failed_or_skipped') THEN
        ALTER TABLE plunk_sql.recipients ADD CONSTRAINT recipients_reason_iff_failed_or_skipped
            CHECK ((state IN ('failed', 'skipped')) = (reason IS NOT NULL)) NOT VALID;
    END IF;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conrelid = 'plunk_sql.recipients'::regclass
                     AND conname = 'recipients_lease_when_claimed') THEN
        ALTER TABLE plunk_sql.recipients ADD CONSTRAINT recipients_lease_when_claimed
            CHECK (CASE WHEN state = 'claimed' THEN lease_expires_at IS NOT NULL
                        WHEN state = 'pending' THEN lease_expires_at IS NULL
                        ELSE true END) NOT VALID;
    END IF;
END
$$;

ALTER TABLE plunk_sql.recipients VALIDATE CONSTRAINT recipients_settled_at_iff_settled;
ALTER TABLE plunk_sql.recipients VALIDATE CONSTRAINT recipients_email_id_when_linked;
ALTER TABLE plunk_sql.recipients VALIDATE CONSTRAINT recipients_reason_iff_failed_or_skipped;
ALTER TABLE plunk_sql.recipients VALIDATE CONSTRAINT recipients_lease_when_claimed;
