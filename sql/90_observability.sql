-- Observability: settings reader and validation, the progress clock, the
-- stuck_campaigns view.

-- plunk_sql.setting(key): the value of one row of plunk_sql.settings.
--   22004 null key; P0002 unknown key.
-- Locks: none.
CREATE OR REPLACE FUNCTION plunk_sql.setting(p_key text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_value text;
BEGIN
    IF p_key IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'null_value_not_allowed',
            SCHEMA = 'plunk_sql',
            MESSAGE = 'setting key must not be null';
    END IF;
    SELECT s.value INTO v_value FROM plunk_sql.settings AS s WHERE s.key = p_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'no_data_found',
            SCHEMA = 'plunk_sql', TABLE = 'settings',
            MESSAGE = pg_catalog.format('plunk_sql setting %s does not exist', p_key),
            HINT = 'Run plunk-sql migrate: migration 0002_settings inserts the defaults.';
    END IF;
    RETURN v_value;
END
$$;

COMMENT ON FUNCTION plunk_sql.setting(text) IS
    'Value of a plunk_sql.settings row. Errors: 22004 null key, P0002 unknown key.';

-- Trigger: settings are validated on write, so a typo never reaches the sweep.
-- Interval keys must be positive intervals, sweep_batch_size an integer in
-- 1..100000, starts_per_run in 1..100, schedules non-empty (pg_cron validates their syntax when
-- migrate schedules them). Unknown keys are accepted (later versions add keys
-- in migrations that run before this function is replaced).
--   22023 invalid value.
-- Locks: none beyond the row being written.
CREATE OR REPLACE FUNCTION plunk_sql._settings_validate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_interval interval;
    v_integer integer;
    v_max integer;
BEGIN
    IF NEW.key IN ('abandon_timeout', 'stuck_after', 'job_run_details_retention', 'guard_quiet_period',
                   'start_timeout') THEN
        BEGIN
            v_interval := NEW.value::interval;
        EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
            v_interval := NULL;
        END;
        IF v_interval IS NULL OR v_interval <= interval '0' THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                SCHEMA = 'plunk_sql', TABLE = 'settings', COLUMN = 'value',
                MESSAGE = pg_catalog.format('setting %s must be a positive interval, got %L', NEW.key, NEW.value);
        END IF;
    ELSIF NEW.key IN ('sweep_batch_size', 'starts_per_run') THEN
        BEGIN
            v_integer := NEW.value::integer;
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            v_integer := NULL;
        END;
        -- starts_per_run repeats a statement in the pg_cron command: kept short.
        v_max := CASE NEW.key WHEN 'starts_per_run' THEN 100 ELSE 100000 END;
        IF v_integer IS NULL OR v_integer NOT BETWEEN 1 AND v_max THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                SCHEMA = 'plunk_sql', TABLE = 'settings', COLUMN = 'value',
                MESSAGE = pg_catalog.format('setting %s must be an integer between 1 and %s, got %L',
                                            NEW.key, v_max, NEW.value);
        END IF;
    ELSIF NEW.key = 'guard_mode' AND NEW.value NOT IN ('on', 'off') THEN  -- guard mode (issue 15)
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            SCHEMA = 'plunk_sql', TABLE = 'settings', COLUMN = 'value',
            MESSAGE = pg_catalog.format('setting guard_mode must be on or off, got %L', NEW.value);
    ELSIF NEW.key IN ('sweep_schedule', 'prune_schedule') AND pg_catalog.btrim(NEW.value) = '' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            SCHEMA = 'plunk_sql', TABLE = 'settings', COLUMN = 'value',
            MESSAGE = pg_catalog.format('setting %s must be a cron schedule, got an empty string', NEW.key);
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION plunk_sql._settings_validate() IS
    'Row trigger on plunk_sql.settings: validates known keys. Errors: 22023 invalid value.';

CREATE OR REPLACE TRIGGER settings_validate
    BEFORE INSERT OR UPDATE ON plunk_sql.settings
    FOR EACH ROW
    EXECUTE FUNCTION plunk_sql._settings_validate();

-- The progress clock of 0.2 (a trigger on campaign_runs' counters) is gone
-- with those counters: each counter slot keeps its own progressed_at
-- (sql/48_counters.sql), and a run's progress is the latest of them, of its
-- start and of its resume (campaign_runs.progressed_at).
DROP TRIGGER IF EXISTS campaign_runs_progressed ON plunk_sql.campaign_runs;
DROP FUNCTION IF EXISTS plunk_sql._campaign_runs_progressed();

DROP VIEW IF EXISTS plunk_sql.stuck_campaigns;

-- Campaigns that need an operator (or are about to get the sweep's help):
--   'no progress'              a run (toolkit or guard) SENDING, not paused, whose counters
--                              have not moved for stuck_after (open > 0: waiting on workers or
--                              emails; open = 0: the sweep's finalize backstop is due; a guarded
--                              run's hint says whether guard mode is on and that the sweep
--                              finishes it after guard_quiet_period);
--   'scheduled start overdue'  SCHEDULED, "scheduledFor" passed more than stuck_after ago
--                              (no sweep running, or the start fails: see the server log);
--   'sending without snapshot' SENDING from before plunk_sql was installed, untouched for
--                              stuck_after: plunk_sql.repair_campaign(id) when open_emails = 0.
--   'cancelled with open recipients'  a toolkit campaign CANCELLED (by the toolkit or by
--                              Plunk) whose recipients are not all settled, without progress for
--                              stuck_after: pending/claimed ones are settled by the sweep; in-flight
--                              ones wait for their email (the sweep fails it after abandon_timeout);
--   'run not retired'          a toolkit run whose campaign is back in DRAFT or SCHEDULED (Plunk's
--                              cancel) for stuck_after: the sweep retires it (workers held its rows
--                              when the status changed); until then a start returns the old count.
-- Paused campaigns are never listed. Cost: the SENDING and SCHEDULED campaigns
-- plus their open recipients / open emails, never the settled history.
CREATE VIEW plunk_sql.stuck_campaigns AS
WITH cfg AS (
    SELECT plunk_sql.setting('stuck_after')::interval AS stuck_after,
           -- Read here rather than through guard_mode_on(): a view's functions run with
           -- the caller's EXECUTE rights, its tables with the owner's.
           coalesce((SELECT s.value = 'on' FROM plunk_sql.settings AS s WHERE s.key = 'guard_mode'),
                    false) AS guard_mode
)
SELECT run.campaign_id,
       run.project_id,
       c.status::text AS status,
       'no progress'::text AS reason,
       GREATEST(run.started_at, run.progressed_at, slots.progressed_at) AS since,
       run.total,
       open.n AS open_recipients,
       NULL::integer AS open_emails,
       false AS repairable,
       CASE WHEN run.kind = 'guard'
            THEN pg_catalog.format('guarded send (guard mode %s): Plunk sends it; the sweep finishes it once '
                                   'nothing is PENDING/SENDING for guard_quiet_period (plunk_sql.guard_status)',
                                   CASE WHEN cfg.guard_mode THEN 'on' ELSE 'off' END)
            WHEN open.n = 0
            THEN 'nothing open: SELECT * FROM plunk_sql.sweep() sets it SENT'
            ELSE 'open recipients are waiting: are workers claiming? SELECT * FROM plunk_sql.campaign_progress'
       END AS hint
FROM plunk_sql.campaign_runs AS run
JOIN public.campaigns AS c ON c.id = run.campaign_id
CROSS JOIN cfg
CROSS JOIN LATERAL (
    SELECT pg_catalog.count(*)::integer AS n
    FROM plunk_sql.recipients AS r
    WHERE r.campaign_id = run.campaign_id
      AND r.state IN ('pending', 'claimed', 'in_flight')
) AS open
CROSS JOIN LATERAL (
    SELECT pg_catalog.max(s.progressed_at) AS progressed_at
    FROM plunk_sql.run_slots AS s
    WHERE s.campaign_id = run.campaign_id
) AS slots
WHERE c.status::text = 'SENDING'
  AND run.paused_at IS NULL
  AND GREATEST(run.started_at, run.progressed_at, slots.progressed_at) < pg_catalog.now() - cfg.stuck_after
UNION ALL
SELECT c.id,
       c."projectId",
       c.status::text,
       'scheduled start overdue',
       c."scheduledFor" AT TIME ZONE 'UTC',
       NULL::integer,
       NULL::integer,
       NULL::integer,
       false,
       'is the sweep running (plunk-sql doctor)? a start that fails is logged as a WARNING'
FROM public.campaigns AS c
CROSS JOIN cfg
WHERE c.status::text = 'SCHEDULED'
  AND c."scheduledFor" < plunk_sql.utc_now() - cfg.stuck_after
  AND NOT EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS run WHERE run.campaign_id = c.id)
UNION ALL
SELECT c.id,
       c."projectId",
       c.status::text,
       'sending without snapshot',
       c."updatedAt" AT TIME ZONE 'UTC',
       c."totalRecipients",
       NULL::integer,
       e.open_emails,
       e.open_emails = 0,
       CASE WHEN e.open_emails = 0
            THEN pg_catalog.format('SELECT plunk_sql.repair_campaign(%L)', c.id)
            ELSE pg_catalog.format('%s emails still PENDING/SENDING: wait for them, or set them FAILED', e.open_emails)
       END
       || CASE WHEN cfg.guard_mode
               THEN ' (guard mode is on but does not follow this send: plunk_sql.guard_status says why)'
               ELSE '' END
FROM public.campaigns AS c
CROSS JOIN cfg
CROSS JOIN LATERAL (
    SELECT pg_catalog.count(*)::integer AS open_emails
    FROM public.emails AS m
    WHERE m."campaignId" = c.id
      AND m.status::text IN ('PENDING', 'SENDING')
) AS e
WHERE c.status::text = 'SENDING'
  AND c."updatedAt" < plunk_sql.utc_now() - cfg.stuck_after
  AND NOT EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS run WHERE run.campaign_id = c.id)
UNION ALL
SELECT run.campaign_id,
       run.project_id,
       c.status::text,
       CASE WHEN c.status::text = 'CANCELLED' THEN 'cancelled with open recipients' ELSE 'run not retired' END,
       GREATEST(run.started_at, run.progressed_at, slots.progressed_at, c."updatedAt" AT TIME ZONE 'UTC'),
       run.total,
       open.n,
       NULL::integer,
       false,
       CASE
           WHEN c.status::text <> 'CANCELLED'
               THEN 'SELECT * FROM plunk_sql.sweep() retires the run (workers held its rows)'
           WHEN open.waiting = 0
               THEN pg_catalog.format('%s recipients in flight: their emails settle them; the sweep fails emails '
                                      'still PENDING/SENDING after abandon_timeout', open.n)
           ELSE 'SELECT * FROM plunk_sql.sweep() settles the pending/claimed ones (cancel_settled)'
       END
FROM plunk_sql.campaign_runs AS run
JOIN public.campaigns AS c ON c.id = run.campaign_id
CROSS JOIN cfg
CROSS JOIN LATERAL (
    SELECT pg_catalog.count(*)::integer AS n,
           pg_catalog.count(*) FILTER (WHERE r.state IN ('pending', 'claimed'))::integer AS waiting
    FROM plunk_sql.recipients AS r
    WHERE r.campaign_id = run.campaign_id
      AND r.state IN ('pending', 'claimed', 'in_flight')
) AS open
CROSS JOIN LATERAL (
    SELECT pg_catalog.max(s.progressed_at) AS progressed_at
    FROM plunk_sql.run_slots AS s
    WHERE s.campaign_id = run.campaign_id
) AS slots
WHERE run.kind = 'toolkit'
  AND ((c.status::text = 'CANCELLED' AND open.n > 0) OR c.status::text IN ('DRAFT', 'SCHEDULED'))
  AND GREATEST(run.started_at, run.progressed_at, slots.progressed_at, c."updatedAt" AT TIME ZONE 'UTC')
      < pg_catalog.now() - cfg.stuck_after;

COMMENT ON VIEW plunk_sql.stuck_campaigns IS
    'Campaigns needing attention: reason no progress / scheduled start overdue / sending without snapshot / '
    'cancelled with open recipients / run not retired, '
    'since when, open recipients or emails, whether repair_campaign applies, and a hint.';
