-- Scheduled starts, the first action of plunk_sql.sweep(): fair between
-- tenants and bounded per pass.

-- Longest a sweep pass keeps starting scheduled campaigns: once a start ends
-- past this, the remaining due campaigns wait for the next pass. One start is
-- itself bounded by the audience cost limits (docs/audience.md).
CREATE OR REPLACE FUNCTION plunk_sql.sweep_start_budget()
RETURNS interval
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN interval '2 seconds';

COMMENT ON FUNCTION plunk_sql.sweep_start_budget() IS
    'Time a sweep pass spends starting scheduled campaigns before leaving the rest to the next pass.';

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

-- plunk_sql.sweep_scheduled_starts(now, batch): start the due SCHEDULED
-- campaigns ("scheduledFor" <= now), returning (action, campaign_id, affected)
-- rows 'scheduled_started' (affected = snapshot size) or 'start_failed'
-- (affected = 0; the error is logged as a WARNING and kept in
-- plunk_sql.start_attempts).
-- Order: campaigns that never failed first (oldest schedule first), then
-- failed ones whose backoff has passed; campaigns still backing off are not
-- tried. At most p_batch successful starts, and no new attempt once
-- sweep_start_budget() has passed (a failing start is cheap: an invalid
-- audience fails while compiling, so a thousand broken schedules cost about a
-- second and cannot starve a valid one behind them). Each start runs in its own subtransaction,
-- so a bad audience rolls back alone.
-- Locks: the due campaigns rows FOR UPDATE SKIP LOCKED (a concurrent start
-- elsewhere is skipped, never waited for), then start_campaign's; rows of
-- plunk_sql.start_attempts of those campaigns.
-- Errors: none of its own (a start's error is caught and reported as a row).
CREATE OR REPLACE FUNCTION plunk_sql.sweep_scheduled_starts(p_now timestamp, p_batch integer)
RETURNS TABLE (action text, campaign_id text, affected integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row record;
    v_count integer;
    v_began timestamptz := pg_catalog.clock_timestamp();
    v_started integer := 0;
BEGIN
    -- Rows of campaigns no longer SCHEDULED (started, cancelled, edited back to DRAFT).
    DELETE FROM plunk_sql.start_attempts AS a
    USING public.campaigns AS c
    WHERE c.id = a.campaign_id AND c.status::text <> 'SCHEDULED';

    FOR v_row IN
        SELECT c.id
        FROM public.campaigns AS c
        LEFT JOIN plunk_sql.start_attempts AS a ON a.campaign_id = c.id
        WHERE c.status = 'SCHEDULED'
          AND c."scheduledFor" <= p_now
          AND (a.campaign_id IS NULL OR a.next_attempt_at <= pg_catalog.now())
          -- Guard mode: Plunk's own scheduler starts them, and the toolkit follows.
          AND NOT plunk_sql.guard_mode_on()
        ORDER BY a.campaign_id IS NOT NULL, c."scheduledFor", c.id
        FOR UPDATE OF c SKIP LOCKED
    LOOP
        EXIT WHEN v_started >= p_batch
            OR pg_catalog.clock_timestamp() - v_began > plunk_sql.sweep_start_budget();
        BEGIN
            v_count := plunk_sql.start_campaign(v_row.id);
            action := 'scheduled_started';
            affected := v_count;
            v_started := v_started + 1;
            DELETE FROM plunk_sql.start_attempts AS a WHERE a.campaign_id = v_row.id;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING USING
                MESSAGE = pg_catalog.format('plunk_sql.sweep: scheduled campaign %s could not start: %s (SQLSTATE %s)',
                                            v_row.id, SQLERRM, SQLSTATE);
            INSERT INTO plunk_sql.start_attempts AS a
                (campaign_id, attempts, last_attempt_at, next_attempt_at, last_sqlstate, last_error)
            VALUES (v_row.id, 1, pg_catalog.now(), pg_catalog.now() + plunk_sql.start_backoff(1), SQLSTATE, SQLERRM)
            ON CONFLICT ON CONSTRAINT start_attempts_pkey DO UPDATE
            SET attempts = a.attempts + 1,
                last_attempt_at = pg_catalog.now(),
                next_attempt_at = pg_catalog.now() + plunk_sql.start_backoff(a.attempts + 1),
                last_sqlstate = EXCLUDED.last_sqlstate,
                last_error = EXCLUDED.last_error;
            action := 'start_failed';
            affected := 0;
        END;
        campaign_id := v_row.id;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION plunk_sql.sweep_scheduled_starts(timestamp, integer) IS
    'The sweep''s scheduled starts: never-failed due campaigns first, failed ones after their backoff; '
    'bounded by p_batch starts and sweep_start_budget(). Rows scheduled_started / start_failed.';
