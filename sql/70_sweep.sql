-- The sweep: every path that the triggers alone cannot end. Run by pg_cron
-- (scheduled by plunk-sql migrate) or by `plunk-sql sweep --every 30s`.

-- plunk_sql.sweep(): one pass over the work that is due, returned as rows
-- (action, campaign_id, affected), in this order:
--   (scheduled starts are not the sweep's: plunk_sql.start_next_scheduled(),
--   sql/72_scheduled_starts.sql, each its own statement and time budget)
--   'lease_expired'      claimed recipients whose lease passed (no email was
--                        made) go back to pending; affected = recipients.
--   'email_abandoned'    emails of toolkit campaigns still PENDING/SENDING
--                        abandon_timeout after the recipient went in flight and
--                        after the email's last update are set FAILED with
--                        error 'abandoned by plunk_sql.sweep: ...'; the emails
--                        UPDATE trigger settles their recipients as failed
--                        (counted on their slots); affected = emails.
--   'finalized'          SENDING toolkit campaigns with nothing open and
--                        complete counters are set SENT by the end-game
--                        (_finish_if_settled: the trigger's backstop, with its
--                        NOTIFY); affected = the campaign's recipients.
-- Each action handles at most sweep_batch_size rows per call; the rest is
-- left for the next call. Every scan starts from a partial index or a small
-- toolkit table (the campaigns scans use Plunk's own indexes: ("scheduledFor"),
-- ("projectId", status); there is no (status, "scheduledFor") index in Plunk),
-- so a sweep that finds nothing stays cheap whatever the recipients count.
-- Paused campaigns: leases still expire (a lease belongs to a worker, and the
-- recipient just waits pending for the resume), but their emails are not
-- abandoned and they are not finalized: the sweep leaves them alone.
-- Concurrency: one pg_try_advisory_xact_lock; a second sweep while one runs
-- returns no rows at once (it skips, it never waits and never acts twice).
-- Locks, each action in the global order (recipients -> counter slots ->
-- campaigns -> campaign_runs): lease rows FOR UPDATE SKIP LOCKED; abandoned
-- emails FOR UPDATE SKIP LOCKED, then (trigger) their recipients and counter
-- slots, then the end-games of drained slots (campaigns, campaign_runs rows);
-- finalize: campaigns then campaign_runs rows of campaigns with nothing open.
-- Errors: P0002 / 22P02 when a setting is missing or unreadable.
CREATE OR REPLACE FUNCTION plunk_sql.sweep()
RETURNS TABLE (action text, campaign_id text, affected integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_batch integer := plunk_sql.setting('sweep_batch_size')::integer;
    v_abandon interval := plunk_sql.setting('abandon_timeout')::interval;
    v_now timestamp := plunk_sql.utc_now();
    v_total integer := 0;
    v_count integer;
    v_status text;
    v_row record;
BEGIN
    IF NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('plunk_sql.sweep')) THEN
        RETURN;
    END IF;
    -- 0. What Plunk's own cancel left open: cancel_settled, run_retired
    -- (sql/82_plunk_writes.sql).
    RETURN QUERY SELECT * FROM plunk_sql.sweep_plunk_writes(v_batch);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_total := v_total + v_count;

    -- 2. Expired leases: the lease index holds only claimed rows.
    FOR v_row IN
        WITH expired AS MATERIALIZED (
            SELECT x.campaign_id, x.contact_id
            FROM plunk_sql.recipients AS x
            WHERE x.state = 'claimed'
              AND x.lease_expires_at < pg_catalog.now()
            ORDER BY x.lease_expires_at
            LIMIT v_batch
            FOR UPDATE SKIP LOCKED
        ),
        released AS (
            UPDATE plunk_sql.recipients AS x
            SET state = 'pending',
                lease_expires_at = NULL
            FROM expired AS e
            WHERE x.campaign_id = e.campaign_id
              AND x.contact_id = e.contact_id
              AND x.state = 'claimed'
            RETURNING x.campaign_id
        )
        SELECT rl.campaign_id, pg_catalog.count(*)::integer AS n
        FROM released AS rl
        GROUP BY rl.campaign_id
        ORDER BY rl.campaign_id
    LOOP
        action := 'lease_expired';
        campaign_id := v_row.campaign_id;
        affected := v_row.n;
        v_total := v_total + 1;
        RETURN NEXT;
    END LOOP;

    -- 3. Abandoned emails: the in-flight index, oldest first; the email must
    -- also be untouched for the timeout (a worker retrying SENDING is alive).
    FOR v_row IN
        WITH picked AS MATERIALIZED (
            SELECT e.id, e.status::text AS status
            FROM plunk_sql.recipients AS x
            JOIN plunk_sql.campaign_runs AS run ON run.campaign_id = x.campaign_id
            JOIN public.emails AS e ON e.id = x.email_id
            WHERE x.state = 'in_flight'
              AND x.in_flight_at < pg_catalog.now() - v_abandon
              AND run.paused_at IS NULL
              AND e.status::text IN ('PENDING', 'SENDING')
              AND e."updatedAt" < v_now - v_abandon
            ORDER BY x.in_flight_at
            LIMIT v_batch
            FOR UPDATE OF e SKIP LOCKED
        ),
        failed AS (
            UPDATE public.emails AS e
            SET status = 'FAILED',
                error = pg_catalog.format('abandoned by plunk_sql.sweep: %s for more than %s',
                                          p.status, v_abandon),
                "updatedAt" = v_now
            FROM picked AS p
            WHERE e.id = p.id
              AND e.status::text IN ('PENDING', 'SENDING')
            RETURNING e."campaignId" AS campaign_id
        )
        SELECT f.campaign_id, pg_catalog.count(*)::integer AS n
        FROM failed AS f
        GROUP BY f.campaign_id
        ORDER BY f.campaign_id
    LOOP
        action := 'email_abandoned';
        campaign_id := v_row.campaign_id;
        affected := v_row.n;
        v_total := v_total + 1;
        RETURN NEXT;
    END LOOP;

    -- The end-games of the slots step 3 drained run now rather than at commit
    -- (deferred trigger, sql/48_counters.sql): step 4 then sees them finished.
    SET CONSTRAINTS plunk_sql.slot_events_settled IMMEDIATE;
    SET CONSTRAINTS plunk_sql.slot_events_settled DEFERRED;

    -- 4. Finalize backstop: SENDING toolkit campaigns with complete counters
    -- and no open recipient. The enum literal: SENDING exists in every Plunk
    -- version.
    FOR v_row IN
        SELECT run.campaign_id, run.total
        FROM public.campaigns AS c
        JOIN plunk_sql.campaign_runs AS run ON run.campaign_id = c.id
        WHERE c.status = 'SENDING'
          AND run.paused_at IS NULL
          AND run.kind = 'toolkit'
          AND (SELECT pg_catalog.sum(s.open - s.taken) FROM plunk_sql.run_slots AS s
               WHERE s.campaign_id = run.campaign_id) = 0
          AND NOT EXISTS (
              SELECT 1 FROM plunk_sql.recipients AS x
              WHERE x.campaign_id = run.campaign_id
                AND x.state IN ('pending', 'claimed', 'in_flight'))
        ORDER BY run.campaign_id
        LIMIT v_batch
    LOOP
        PERFORM plunk_sql._finish_if_settled(v_row.campaign_id);
        SELECT c.status::text INTO v_status FROM public.campaigns AS c WHERE c.id = v_row.campaign_id;
        IF v_status = 'SENT' THEN
            action := 'finalized';
            campaign_id := v_row.campaign_id;
            affected := v_row.total;
            v_total := v_total + 1;
            RETURN NEXT;
        END IF;
    END LOOP;

    -- 5. Guard mode: finish the sends Plunk started and left open (sql/85_guard.sql).
    RETURN QUERY SELECT g.action, g.campaign_id, g.affected FROM plunk_sql.sweep_guarded() AS g;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_total := v_total + v_count;

    UPDATE plunk_sql.sweep_state AS s
    SET last_run_at = pg_catalog.now(),
        last_actions = v_total
    WHERE s.id;
END
$$;

COMMENT ON FUNCTION plunk_sql.sweep() IS
    'One bounded pass: cancel_settled, run_retired, lease_expired, '
    'email_abandoned, finalized and guard mode''s rows. '
    'Skips (no rows) while another sweep runs. Leaves paused campaigns alone except for expired leases.';
