-- plunk_sql 0002: operator settings, sweep bookkeeping, campaign progress time.
-- depends: 0001_initial
--
-- Safe to re-run: every object is created only when missing, and default
-- settings are inserted without overwriting values an operator changed.

-- One row per setting. Values are text, validated per key by a trigger
-- (sql/90_observability.sql); read them with plunk_sql.setting(key).
CREATE TABLE IF NOT EXISTS plunk_sql.settings (
    key text PRIMARY KEY,
    value text NOT NULL,
    description text NOT NULL
);

INSERT INTO plunk_sql.settings (key, value, description) VALUES
    ('abandon_timeout', '1 hour',
     'An email of a toolkit campaign still PENDING or SENDING this long after it was created and '
     'last updated is set FAILED by the sweep ("abandoned by plunk_sql.sweep"). Interval.'),
    ('stuck_after', '15 minutes',
     'A SENDING campaign without progress for this long (or a SCHEDULED one this overdue, or a '
     'legacy SENDING campaign untouched this long) is listed in plunk_sql.stuck_campaigns. Interval.'),
    ('sweep_batch_size', '1000',
     'Most rows one sweep call handles per action (leases, abandoned emails, scheduled '
     'starts, finalizations); the rest waits for the next tick. Integer 1..100000.'),
    ('sweep_schedule', '* * * * *',
     'pg_cron schedule of the sweep job (cron syntax; ''N seconds'' needs pg_cron >= 1.5). '
     'Applied by plunk-sql migrate.'),
    ('job_run_details_retention', '7 days',
     'cron.job_run_details rows older than this are deleted by the prune job. Interval.'),
    ('prune_schedule', '17 * * * *',
     'pg_cron schedule of the job that prunes cron.job_run_details. Applied by plunk-sql migrate.')
ON CONFLICT (key) DO NOTHING;

-- When the last sweep ran and how many action rows it returned: one row, for
-- `plunk-sql doctor` (works the same under pg_cron and the --every loop).
CREATE TABLE IF NOT EXISTS plunk_sql.sweep_state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_run_at timestamptz,
    last_actions integer
);
INSERT INTO plunk_sql.sweep_state (id) VALUES (true) ON CONFLICT (id) DO NOTHING;

-- When a campaign's counters last moved (maintained by a trigger on
-- campaign_runs, sql/90_observability.sql): the "no progress since" clock of
-- plunk_sql.stuck_campaigns.
ALTER TABLE plunk_sql.campaign_runs ADD COLUMN IF NOT EXISTS progressed_at timestamptz;
