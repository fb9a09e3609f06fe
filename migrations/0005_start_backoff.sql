-- plunk_sql 0005: backoff state for scheduled starts that fail.
-- depends: 0003_run_kind
--
-- One row per SCHEDULED campaign whose start by the sweep failed: how often,
-- the last error, and when it may be tried again. A failing start is retried
-- with an exponential backoff and only after the due campaigns that never
-- failed, so broken schedules cannot starve valid ones. A successful start
-- (or a campaign no longer SCHEDULED) removes its row.
--
-- Safe to re-run: created only when missing.
CREATE TABLE IF NOT EXISTS plunk_sql.start_attempts (
    campaign_id text PRIMARY KEY REFERENCES public.campaigns (id) ON DELETE CASCADE,
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_attempt_at timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_sqlstate text,
    last_error text
);

COMMENT ON TABLE plunk_sql.start_attempts IS
    'Failed scheduled starts: attempts, last error and the backoff (next_attempt_at) before the sweep retries.';
