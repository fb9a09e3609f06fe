-- plunk_sql 0001: the toolkit's own tables. Functions, triggers and views live
-- in sql/ and are reapplied on every migrate; this file holds only state.
-- Safe to re-run (yoyo records a migration after it commits).

CREATE SCHEMA IF NOT EXISTS plunk_sql;

DO $$
BEGIN
    IF to_regtype('plunk_sql.recipient_state') IS NULL THEN
        -- Declaration order is the life order; sent/failed/skipped are settled.
        CREATE TYPE plunk_sql.recipient_state AS ENUM (
            'pending', 'claimed', 'in_flight', 'sent', 'failed', 'skipped'
        );
    END IF;
END
$$;

-- One row per campaign the toolkit started: the snapshot header and the
-- settled counters (one short UPDATE per settling statement).
CREATE TABLE IF NOT EXISTS plunk_sql.campaign_runs (
    campaign_id text PRIMARY KEY
        REFERENCES public.campaigns (id) ON DELETE CASCADE,
    project_id text NOT NULL,
    -- TRANSACTIONAL campaigns skip the consent re-check, as Plunk's audience does.
    transactional boolean NOT NULL,
    total integer NOT NULL DEFAULT 0 CHECK (total >= 0),
    sent integer NOT NULL DEFAULT 0 CHECK (sent >= 0),
    failed integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
    skipped integer NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    started_at timestamptz NOT NULL DEFAULT now(),
    paused_at timestamptz,
    finished_at timestamptz,
    CONSTRAINT campaign_runs_settled_le_total CHECK (sent + failed + skipped <= total)
);

-- The snapshot: one row per (campaign, contact), written once by start_campaign.
-- Deliberately no foreign key and no primary key: a per-row RI check and a
-- second index would double the cost of a million-row snapshot. The snapshot
-- cannot produce duplicates (contacts.id is unique) and is the only writer of
-- new rows; campaign_runs deletes its rows by trigger.
CREATE TABLE IF NOT EXISTS plunk_sql.recipients (
    campaign_id text NOT NULL,
    contact_id text NOT NULL,
    state plunk_sql.recipient_state NOT NULL DEFAULT 'pending',
    -- The emails row linked to this recipient (at most one: invariant 2).
    email_id text,
    claims integer NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    in_flight_at timestamptz,
    settled_at timestamptz,
    -- Why a recipient was skipped or failed (unsubscribed, contact deleted, ...).
    reason text
);

-- No statistics on state: they are always stale (a snapshot is analysed while
-- everything is pending, then most rows move on), and an estimate of "no row is
-- in_flight" made the planner scan the whole table once per settling statement
-- instead of probing recipients_open_key per email. Without them the planner
-- uses its default selectivity and probes the unique index.
ALTER TABLE plunk_sql.recipients ALTER COLUMN state SET STATISTICS 0;

-- Claim, link, settle and progress paths: only unsettled rows are indexed, so
-- nothing wades through the settled part of a big snapshot. Link and settle
-- are exact probes on (campaign, contact); a claim reads the campaign's range
-- in contact order, filters 'pending' and stops after batch_size rows (the
-- open-but-not-pending rows it passes are the few in flight). A late status
-- change of a settled recipient finds nothing here: exactly the no-op it
-- should be. Unique: a recipient is open at most once (the snapshot's INSERT
-- ... SELECT from contacts, with unique ids, is the only writer of new rows).
-- (state is deliberately not a middle key column: PostgreSQL 15 cannot skip
-- it, so a probe for state IN ('pending', 'claimed') would walk every open
-- row of the campaign.)
CREATE UNIQUE INDEX IF NOT EXISTS recipients_open_key
    ON plunk_sql.recipients (campaign_id, contact_id)
    WHERE state IN ('pending', 'claimed', 'in_flight');

-- Sweep path: expired leases, proportional to the claimed rows only.
-- The extra IS NOT NULL is deliberate: queries that merely say state = 'claimed'
-- (link, settle) cannot prove it, so the planner never picks this index over
-- recipients_open_key for them; the sweep's `lease_expires_at < x` implies it.
CREATE INDEX IF NOT EXISTS recipients_lease_idx
    ON plunk_sql.recipients (lease_expires_at)
    WHERE state = 'claimed' AND lease_expires_at IS NOT NULL;

-- Sweep path: abandoned in-flight emails (same IS NOT NULL reasoning).
CREATE INDEX IF NOT EXISTS recipients_in_flight_idx
    ON plunk_sql.recipients (in_flight_at)
    WHERE state = 'in_flight' AND in_flight_at IS NOT NULL;

-- Deleting a campaign (Plunk cascades to campaign_runs) removes its snapshot.
CREATE OR REPLACE FUNCTION plunk_sql._campaign_runs_after_delete()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM plunk_sql.recipients AS r
    USING old_runs AS o
    WHERE r.campaign_id = o.campaign_id;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS campaign_runs_after_delete ON plunk_sql.campaign_runs;
CREATE TRIGGER campaign_runs_after_delete
    AFTER DELETE ON plunk_sql.campaign_runs
    REFERENCING OLD TABLE AS old_runs
    FOR EACH STATEMENT
    EXECUTE FUNCTION plunk_sql._campaign_runs_after_delete();
