-- Scheduled starts: one campaign per top-level statement, outside the sweep.
--
-- PostgreSQL arms statement_timeout once per top-level statement (and, since
-- PostgreSQL 13, once per statement of a multi-statement simple query), so a
-- start can only be bounded when it is a statement of its own. Hence
-- plunk_sql.start_next_scheduled() starts at most ONE due campaign per call,
-- and its callers run it as separate statements under the start_timeout
-- setting: `plunk-sql sweep` (a loop of calls, each in its own transaction
-- with SET LOCAL statement_timeout) and the pg_cron job
-- plunk_sql_starts:<db> (plunk_sql/cron.py: one command string of
-- `SET statement_timeout; SELECT ...; COMMIT;` repeated starts_per_run times).
-- plunk_sql.sweep() no longer starts campaigns: a slow start cannot delay
-- lease release, abandon or finalize.

DROP FUNCTION IF EXISTS plunk_sql.sweep_scheduled_starts(timestamp, integer);
DROP FUNCTION IF EXISTS plunk_sql.sweep_start_budget();

-- Wait before retrying a start that failed n times: 30 s doubling, at most 1 h.
CREATE OR REPLACE FUNCTION plunk_sql.start_backoff(p_attempts integer)
RETURNS interval
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN LEAST(interval '30 seconds' * pg_catalog.power(2, LEAST(p_attempts, 20) - 1),
                        interval '1 hour');

COMMENT ON FUNCTION plunk_sql.start_backoff(integer) IS
    'Backoff before the next attempt after p_attempts failed starts (30 s, 60 s, ... capped at 1 h).';

-- plunk_sql.start_next_scheduled(): start at most ONE due SCHEDULED campaign
-- ("scheduledFor" <= utc_now()); rows (action, campaign_id, affected):
--   'start_failed'       start_campaign raised (e.g. 22023 invalid audience) or
--                        was cancelled (57014: statement_timeout, i.e. the
--                        start_timeout budget, or pg_cancel_backend): the
--                        campaign stays SCHEDULED, the error is logged as a
--                        WARNING and kept in plunk_sql.start_attempts with a
--                        backoff; affected = 0. After a failure the next due
--                        campaign is tried (a broken audience fails while
--                        compiling, in about a millisecond), after a cancel the
--                        call returns.
--   'scheduled_started'  the one campaign started; affected = snapshot size.
--                        Always the last row.
-- No row: nothing is due, guard mode is on (Plunk's scheduler starts them), or
-- another caller is starting campaigns right now (the lock below).
-- Order: campaigns that never failed first (oldest schedule first), then
-- failed ones whose backoff has passed; campaigns still backing off are not
-- tried, so broken schedules cannot starve a valid one behind them.
-- Budget: the caller's statement_timeout, armed for this call alone when it is
-- its own top-level statement. The cancel is trapped by name (OTHERS does not
-- catch 57014) so that the attempt is recorded and the call returns normally:
-- the next statement of the pg_cron job's command string still runs.
-- Locks: pg_try_advisory_xact_lock(hashtext('plunk_sql.scheduled_starts'))
-- (not the sweep's lock: a start never waits for nor delays a sweep); the
-- tried campaigns rows FOR UPDATE SKIP LOCKED, then start_campaign's; their
-- plunk_sql.start_attempts rows.
-- Errors: none of its own (a start's error is caught and reported as a row).
CREATE OR REPLACE FUNCTION plunk_sql.start_next_scheduled()
RETURNS TABLE (action text, campaign_id text, affected integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row record;
    v_count integer;
    v_state text;
    v_error text;
BEGIN
    IF plunk_sql.guard_mode_on()
       OR NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('plunk_sql.scheduled_starts')) THEN
        RETURN;
    END IF;
    -- Rows of campaigns no longer SCHEDULED (started, cancelled, edited back to DRAFT).
    DELETE FROM plunk_sql.start_attempts AS a
    USING public.campaigns AS c
    WHERE c.id = a.campaign_id AND c.status::text <> 'SCHEDULED';

    FOR v_row IN
        SELECT c.id
        FROM public.campaigns AS c
        LEFT JOIN plunk_sql.start_attempts AS a ON a.campaign_id = c.id
        WHERE c.status = 'SCHEDULED'
          AND c."scheduledFor" <= plunk_sql.utc_now()
          AND (a.campaign_id IS NULL OR a.next_attempt_at <= pg_catalog.now())
        ORDER BY a.campaign_id IS NOT NULL, c."scheduledFor", c.id
        FOR UPDATE OF c SKIP LOCKED
    LOOP
        BEGIN
            v_count := plunk_sql.start_campaign(v_row.id);
            DELETE FROM plunk_sql.start_attempts AS a WHERE a.campaign_id = v_row.id;
            RETURN QUERY SELECT 'scheduled_started'::text, v_row.id, v_count;
            RETURN;
        EXCEPTION
            WHEN query_canceled THEN
                v_state := SQLSTATE;
                v_error := SQLERRM;
            WHEN OTHERS THEN
                v_state := SQLSTATE;
                v_error := SQLERRM;
        END;
        RAISE WARNING USING
            MESSAGE = pg_catalog.format('plunk_sql: scheduled campaign %s could not start: %s (SQLSTATE %s)',
                                        v_row.id, v_error, v_state);
        INSERT INTO plunk_sql.start_attempts AS a
            (campaign_id, attempts, last_attempt_at, next_attempt_at, last_sqlstate, last_error)
        VALUES (v_row.id, 1, pg_catalog.now(), pg_catalog.now() + plunk_sql.start_backoff(1), v_state, v_error)
        ON CONFLICT ON CONSTRAINT start_attempts_pkey DO UPDATE
        SET attempts = a.attempts + 1,
            last_attempt_at = pg_catalog.now(),
            next_attempt_at = pg_catalog.now() + plunk_sql.start_backoff(a.attempts + 1),
            last_sqlstate = EXCLUDED.last_sqlstate,
            last_error = EXCLUDED.last_error;
        action := 'start_failed';
        campaign_id := v_row.id;
        affected := 0;
        RETURN NEXT;
        EXIT WHEN v_state = '57014';
    END LOOP;
END
$$;

COMMENT ON FUNCTION plunk_sql.start_next_scheduled() IS
    'Starts at most one due SCHEDULED campaign (never-failed first, failed ones after their backoff), '
    'reporting the failed attempts before it (start_failed) and the start (scheduled_started); no row when '
    'nothing is due, guard mode is on or another caller is starting. Run it as its own statement under '
    'statement_timeout (the start_timeout setting).'
;
