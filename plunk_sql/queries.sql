-- Named queries used by the Python wrappers. Each block starts with
-- `-- name: <name>` and ends where the next one starts. Placeholders are
-- psycopg's %(name)s. Keep SQL here, not in Python strings.

-- name: start_campaign
SELECT plunk_sql.start_campaign(%(campaign_id)s) AS total;

-- name: preview_audience
SELECT plunk_sql.preview_audience(%(campaign_id)s) AS recipients;

-- name: claim_batch
SELECT contact_id, email, data
FROM plunk_sql.claim_batch(%(campaign_id)s, %(batch_size)s, %(lease)s::interval);

-- name: campaign_progress
-- Through the function, not the view: a worker role may call it, not read the view.
SELECT campaign_id, status, paused, total, pending, claimed, in_flight, sent, failed, skipped,
       started_at, finished_at
FROM plunk_sql.campaign_progress_of(%(campaign_id)s);

-- name: all_campaign_progress
SELECT campaign_id, status, paused, total, pending, claimed, in_flight, sent, failed, skipped,
       started_at, finished_at
FROM plunk_sql.campaign_progress
ORDER BY started_at DESC;

-- name: recipient_outcomes
SELECT state, reason, recipients
FROM plunk_sql.recipient_outcomes
WHERE campaign_id = %(campaign_id)s
ORDER BY state, reason NULLS FIRST;

-- name: sweep
SELECT action, campaign_id, affected FROM plunk_sql.sweep();

-- name: start_next_scheduled
SELECT action, campaign_id, affected FROM plunk_sql.start_next_scheduled();

-- name: start_settings
SELECT (SELECT LEAST(ceil(extract(epoch FROM plunk_sql.setting('start_timeout')::interval) * 1000),
                     2147483647)::integer) AS start_timeout_ms,
       plunk_sql.setting('starts_per_run')::integer AS starts_per_run;

-- name: set_start_timeout
-- Only for the transaction of the next start (PgBouncer-safe: SET LOCAL).
SELECT set_config('statement_timeout', %(ms)s::text, true);

-- name: pause_campaign
SELECT plunk_sql.pause_campaign(%(campaign_id)s);

-- name: resume_campaign
SELECT plunk_sql.resume_campaign(%(campaign_id)s);

-- name: cancel_campaign
SELECT plunk_sql.cancel_campaign(%(campaign_id)s) AS status;

-- name: repair_campaign
SELECT plunk_sql.repair_campaign(%(campaign_id)s) AS status;

-- Reference worker (plunk_sql.worker) ------------------------------------

-- name: campaign_message
-- The worker role has no right on public.campaigns: this door hands out the
-- message of a SENDING toolkit campaign only (55000 otherwise).
SELECT m.campaign_id AS id, m.subject, m.body, m.from_address, m.from_name, m.reply_to,
       m.project_id
FROM plunk_sql.campaign_message(%(campaign_id)s) AS m;

-- name: insert_emails
-- One statement per claimed batch: the emails trigger links each row to its
-- recipient (claimed -> in_flight) in one set-based step.
INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType", "campaignId",
                           status, "projectId", "updatedAt")
SELECT u.id, u.contact_id, u.subject, u.body, %(from_address)s, 'CAMPAIGN', %(campaign_id)s,
       'PENDING', %(project_id)s, plunk_sql.utc_now()
FROM unnest(%(ids)s::text[], %(contact_ids)s::text[], %(subjects)s::text[], %(bodies)s::text[])
     AS u (id, contact_id, subject, body);

-- name: emails_sending
UPDATE public.emails AS e
SET status = 'SENDING', "updatedAt" = plunk_sql.utc_now()
WHERE e.id = ANY(%(ids)s::text[]) AND e.status::text = 'PENDING';

-- name: emails_sent
-- As Plunk's email worker: only the first delivery report sets "sentAt".
UPDATE public.emails AS e
SET status = 'SENT', "sentAt" = plunk_sql.utc_now(), "messageId" = u.message_id,
    "updatedAt" = plunk_sql.utc_now()
FROM unnest(%(ids)s::text[], %(message_ids)s::text[]) AS u (id, message_id)
WHERE e.id = u.id AND e."sentAt" IS NULL;

-- name: emails_failed
UPDATE public.emails AS e
SET status = 'FAILED', error = u.error, "updatedAt" = plunk_sql.utc_now()
FROM unnest(%(ids)s::text[], %(errors)s::text[]) AS u (id, error)
WHERE e.id = u.id AND e.status::text IN ('PENDING', 'SENDING');
-- name: repair_preview
-- What repair_campaign would do (dry run): no lock, no write.
SELECT c.id AS campaign_id,
       c.status::text AS status,
       EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = c.id) AS toolkit,
       c."totalRecipients" AS total_recipients,
       c."sentCount" AS sent_count,
       e.created,
       e.sent,
       e.open
FROM public.campaigns AS c
CROSS JOIN LATERAL (
    SELECT count(*)::integer AS created,
           count(m."sentAt")::integer AS sent,
           count(*) FILTER (WHERE m.status::text IN ('PENDING', 'SENDING'))::integer AS open
    FROM public.emails AS m
    WHERE m."campaignId" = c.id
) AS e
WHERE c.id = %(campaign_id)s;

-- name: stuck_campaigns
SELECT campaign_id, project_id, status, reason, since, total, open_recipients, open_emails,
       repairable, hint
FROM plunk_sql.stuck_campaigns
ORDER BY since, campaign_id;

-- name: legacy_stuck_campaigns
SELECT campaign_id
FROM plunk_sql.stuck_campaigns
WHERE reason = 'sending without snapshot'
ORDER BY since, campaign_id;

-- name: guard_summary
-- Guard mode (docs/guard-mode.md): what it follows, what it finalized, what it left to Plunk.
SELECT count(*) FILTER (WHERE state = 'following') AS following,
       count(*) FILTER (WHERE state = 'finalized') AS finalized,
       count(*) FILTER (WHERE state = 'finalized' AND ended_by = 'sweep') AS ended_by_sweep,
       coalesce(sum(settled_at_end) FILTER (WHERE state = 'finalized'), 0) AS settled_at_end,
       coalesce(array_agg(format('campaign %s is SENDING but guard mode could not follow it: %s',
                                 campaign_id, error))
                FILTER (WHERE state = 'left to Plunk' AND status = 'SENDING'), '{}') AS left_sending
FROM plunk_sql.guard_status;

-- name: settings
SELECT key, value, description FROM plunk_sql.settings ORDER BY key;

-- name: cron_database
SELECT current_setting('cron.database_name', true) AS cron_database;

-- name: cron_settings
SELECT current_database() AS dbname,
       (SELECT pg_catalog.pg_get_userbyid(n.nspowner) FROM pg_catalog.pg_namespace AS n
        WHERE n.nspname = 'plunk_sql') AS owner,
       plunk_sql.setting('sweep_schedule') AS sweep_schedule,
       plunk_sql.setting('prune_schedule') AS prune_schedule,
       plunk_sql.setting('job_run_details_retention') AS retention,
       (SELECT LEAST(ceil(extract(epoch FROM plunk_sql.setting('start_timeout')::interval) * 1000),
                     2147483647)::integer) AS start_timeout_ms,
       plunk_sql.setting('starts_per_run')::integer AS starts_per_run;

-- name: cron_available
SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'pg_cron';

-- name: cron_extension_version
SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_cron';

-- name: cron_job
SELECT jobid, jobname, schedule, command, database, username, active
FROM cron.job
WHERE jobname = %(jobname)s
ORDER BY jobid DESC
LIMIT 1;

-- name: cron_last_run
SELECT status, start_time, end_time, return_message
FROM cron.job_run_details
WHERE jobid = %(jobid)s
ORDER BY runid DESC
LIMIT 1;

-- name: cron_unschedule
SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %(jobname)s;

-- name: sweep_loop_sessions
SELECT count(*)::integer AS sessions
FROM pg_catalog.pg_stat_activity
WHERE datname = current_database()
  AND application_name = 'plunk-sql sweep --every';

-- name: has_sweep_state
SELECT to_regclass('plunk_sql.sweep_state') IS NOT NULL AS present;

-- name: sweep_state
SELECT last_run_at, last_actions FROM plunk_sql.sweep_state;

-- name: doctor_triggers
-- The toolkit's triggers on Plunk's tables (every one is named plunk_sql_*).
SELECT t.tgname AS name, t.tgenabled <> 'D' AS enabled
FROM pg_catalog.pg_trigger AS t
WHERE t.tgrelid IN (to_regclass('public.emails'), to_regclass('public.campaigns'))
  AND t.tgname LIKE 'plunk\_sql\_%'
ORDER BY t.tgname;

-- name: doctor_versions
SELECT current_setting('server_version') AS server_version,
       (SELECT string_agg(migration_id, ',' ORDER BY migration_id)
        FROM plunk_sql._yoyo_migration) AS migrations;

-- Plunk schema check (plunk_sql.plunk_schema) --------------------------------

-- name: plunk_columns
-- One row per column of the given public tables; a table without columns still
-- appears once (column NULL), a missing table not at all.
SELECT c.relname AS table_name, a.attname AS column_name
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace AND n.nspname = 'public'
LEFT JOIN pg_catalog.pg_attribute AS a
       ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relname = ANY(%(tables)s::text[]) AND c.relkind IN ('r', 'p');

-- Roles (sql/95_roles.sql, migration 0004) ------------------------------------

-- name: set_role_prefix
UPDATE plunk_sql.settings SET value = %(prefix)s WHERE key = 'role_prefix';

-- name: role_names
SELECT plunk_sql.role_name('worker') AS worker, plunk_sql.role_name('operator') AS operator;

-- name: privilege_gaps
SELECT kind, statement FROM plunk_sql.privilege_gaps();

-- name: current_user
SELECT current_user AS name;

-- name: sweep_recent
-- The last sweep, and whether it ran within stuck_after (doctor's evidence that
-- something sweeps when no job or loop is visible to this user).
SELECT s.last_run_at, s.last_actions,
       coalesce(s.last_run_at > now() - plunk_sql.setting('stuck_after')::interval, false) AS recent
FROM plunk_sql.sweep_state AS s;

-- name: release_claims
-- A failing worker hands back what it never gave to SMTP (sql/45_release.sql).
SELECT released, deleted
FROM plunk_sql.release_claims(%(campaign_id)s, %(contact_ids)s::text[], %(email_ids)s::text[]);
