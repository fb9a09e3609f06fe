-- plunk_sql 0006: retired runs, the record of a send that went back to DRAFT.
-- depends: 0003_run_kind
--
-- plunk_sql.campaign_runs / plunk_sql.recipients stay "the current run of a
-- campaign" (primary key campaign_id). When a toolkit campaign is cancelled
-- back to DRAFT (by plunk_sql.cancel_campaign or by Plunk's own cancel), its
-- run is moved here: kept for the record, never reused. While a campaign has
-- a retired toolkit run and no current run, the emails INSERT trigger refuses
-- its emails (55000) until a new start (sql/50_settle.sql).
--
-- Safe to re-run: everything is created only when missing.

CREATE TABLE IF NOT EXISTS plunk_sql.retired_runs (
    retired_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id text NOT NULL
        REFERENCES public.campaigns (id) ON DELETE CASCADE,
    project_id text NOT NULL,
    transactional boolean NOT NULL,
    kind text NOT NULL,
    total integer NOT NULL,
    sent integer NOT NULL,
    failed integer NOT NULL,
    skipped integer NOT NULL,
    started_at timestamptz NOT NULL,
    paused_at timestamptz,
    finished_at timestamptz,
    progressed_at timestamptz,
    retired_at timestamptz NOT NULL DEFAULT now(),
    -- Who sent the campaign back to DRAFT: 'cancel_campaign', 'plunk' (Plunk's
    -- own status write, seen by the campaigns trigger) or 'sweep' (backstop).
    retired_by text NOT NULL
);

-- The emails INSERT trigger probes this per campaign email without a current
-- run (Plunk's own sends, legacy campaigns): one index probe.
CREATE INDEX IF NOT EXISTS retired_runs_campaign_idx ON plunk_sql.retired_runs (campaign_id);

-- The retired snapshot, row for row. Recipients still open at retirement are
-- recorded skipped (reason 'retired while <state>'), so a retired run is
-- always fully settled.
CREATE TABLE IF NOT EXISTS plunk_sql.retired_recipients (
    retired_id bigint NOT NULL
        REFERENCES plunk_sql.retired_runs (retired_id) ON DELETE CASCADE,
    campaign_id text NOT NULL,
    contact_id text NOT NULL,
    state plunk_sql.recipient_state NOT NULL,
    email_id text,
    claims integer NOT NULL,
    lease_expires_at timestamptz,
    in_flight_at timestamptz,
    settled_at timestamptz,
    reason text
);

CREATE INDEX IF NOT EXISTS retired_recipients_run_idx ON plunk_sql.retired_recipients (retired_id);
