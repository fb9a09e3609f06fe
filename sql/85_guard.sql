-- Guard mode (issue 15, docs/guard-mode.md): install into an unmodified Plunk
-- and no campaign stays stuck, nobody is lost silently.
--
-- With setting guard_mode = on, when Plunk's own code moves a campaign the
-- toolkit did not start from DRAFT or SCHEDULED to SENDING, a trigger on
-- public.campaigns snapshots the audience in that same transaction as a run of
-- kind 'guard' (campaign_runs + recipients, shown by campaign_progress like any
-- run). Plunk keeps sending as it always does; its emails link to and settle
-- the snapshot's recipients through the emails triggers (sql/50_settle.sql),
-- which never refuse an email of a guarded run: one for a contact outside the
-- snapshot is recorded in plunk_sql.guard_late_joiners. When Plunk's batches
-- are done, plunk_sql.sweep_guarded() (called by plunk_sql.sweep()) settles
-- every snapshot recipient Plunk never mailed as skipped, with the reason
-- known then, and ends the campaign SENT unless Plunk ended it first.
--
-- Nothing here ever raises into Plunk's statements: the snapshot runs in a
-- subtransaction and a failure is recorded in plunk_sql.guard_failures (shown
-- by plunk_sql.guard_status and plunk-sql doctor); the campaign is then left
-- to Plunk.

-- plunk_sql.guard_mode_on(): whether new sends of Plunk are guarded now.
-- Never raises (a missing or unreadable setting reads as off).
-- Locks: none.
CREATE OR REPLACE FUNCTION plunk_sql.guard_mode_on()
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
RETURN coalesce((SELECT s.value = 'on' FROM plunk_sql.settings AS s WHERE s.key = 'guard_mode'), false);

COMMENT ON FUNCTION plunk_sql.guard_mode_on() IS
    'true when setting guard_mode is on (new Plunk sends are snapshotted and followed); never raises.';

-- plunk_sql.set_guard_mode(mode, quiet_period): the operator's switch.
-- mode 'on' or 'off'; quiet_period, when given, replaces guard_quiet_period.
-- Turning it off stops new snapshots only: runs already guarded are still
-- followed and finished by the sweep.
--   22004 null mode; 22023 mode not on/off, or quiet period not positive
--   (validated by the settings trigger). No partial effect.
-- Locks: the two settings rows.
CREATE OR REPLACE FUNCTION plunk_sql.set_guard_mode(p_mode text, p_quiet_period interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_mode IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'null_value_not_allowed',
            SCHEMA = 'plunk_sql',
            MESSAGE = 'guard mode must be on or off, not null';
    END IF;
    UPDATE plunk_sql.settings AS s SET value = p_mode WHERE s.key = 'guard_mode';
    IF p_quiet_period IS NOT NULL THEN
        UPDATE plunk_sql.settings AS s SET value = p_quiet_period::text WHERE s.key = 'guard_quiet_period';
    END IF;
END
$$;

COMMENT ON FUNCTION plunk_sql.set_guard_mode(text, interval) IS
    'Set guard_mode (on/off) and optionally guard_quiet_period. Errors: 22004 null mode, 22023 invalid value.';

-- plunk_sql._guard_snapshot(campaign): take the guard snapshot of a campaign
-- Plunk has just set SENDING: a campaign_runs row of kind 'guard', one
-- recipients row per contact of the audience now (the audience compiler's
-- predicate, as start_campaign uses it), a guard_runs row. Replaces an
-- earlier guard run of the campaign (Plunk's cancel took it back to DRAFT and
-- it is being sent again). Leaves public.campaigns alone. Returns the size.
--   Raises whatever the compiler raises (22023 invalid or refused audience,
--   e.g. another project's segment): the caller catches it.
-- Locks: the campaign's old guard run rows when there is one; new rows only
-- otherwise (nobody else can see this run before the transaction commits).
CREATE OR REPLACE FUNCTION plunk_sql._guard_snapshot(p_campaign public.campaigns)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    -- The campaign_runs delete trigger removes the old snapshot.
    DELETE FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign.id AND r.kind = 'guard';

    INSERT INTO plunk_sql.campaign_runs (campaign_id, project_id, transactional, kind)
    VALUES (p_campaign.id, p_campaign."projectId", p_campaign.type::text = 'TRANSACTIONAL', 'guard');

    -- Sorted by contact id, as start_campaign does (index entries in key order).
    EXECUTE pg_catalog.format(
        'INSERT INTO plunk_sql.recipients (campaign_id, contact_id) '
        'SELECT %L, c.id FROM public.contacts AS c WHERE %s ORDER BY c.id',
        p_campaign.id, plunk_sql.audience_predicate(p_campaign));
    GET DIAGNOSTICS v_count = ROW_COUNT;

    UPDATE plunk_sql.campaign_runs AS r SET total = v_count WHERE r.campaign_id = p_campaign.id;
    PERFORM plunk_sql._make_slots(p_campaign.id, v_count);
    INSERT INTO plunk_sql.guard_runs (campaign_id, plunk_total)
    VALUES (p_campaign.id, p_campaign."totalRecipients");
    DELETE FROM plunk_sql.guard_failures AS f WHERE f.campaign_id = p_campaign.id;
    RETURN v_count;
END
$$;

COMMENT ON FUNCTION plunk_sql._guard_snapshot(public.campaigns) IS
    'Guard mode: snapshot the audience of a campaign Plunk set SENDING as a run of kind guard. Internal; '
    'raises what the audience compiler raises (22023).';

-- Trigger: Plunk moved a campaign from DRAFT or SCHEDULED to SENDING (the
-- WHEN clause: every other UPDATE of campaigns never enters PL/pgSQL). With
-- guard mode on and no toolkit run (start_campaign inserts its run before it
-- sets SENDING, so its own UPDATE passes through here and stops at once), the
-- audience is snapshotted in Plunk's transaction. NEVER raises: any error,
-- a cancel or a statement timeout included, rolls back the subtransaction,
-- is recorded in plunk_sql.guard_failures (latest per campaign) with a
-- WARNING, and the campaign is left to Plunk; Plunk's UPDATE succeeds.
-- Locks: Plunk's UPDATE holds the campaigns row; then _guard_snapshot's rows.
CREATE OR REPLACE FUNCTION plunk_sql._guard_campaign_started()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text;
    v_message text;
BEGIN
    BEGIN
        IF EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r
                   WHERE r.campaign_id = NEW.id AND r.kind = 'toolkit')
        THEN
            RETURN NULL;
        END IF;
        IF plunk_sql.guard_mode_on() THEN
            PERFORM plunk_sql._guard_snapshot(NEW);
        ELSE
            -- A new send of a campaign guarded before (Plunk's cancel took it
            -- back to DRAFT): the old run must not follow or end this one.
            DELETE FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = NEW.id AND r.kind = 'guard';
        END IF;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
        BEGIN
            RAISE WARNING USING MESSAGE = pg_catalog.format(
                'plunk_sql guard mode: campaign %s is left to Plunk, its audience could not be snapshotted: %s (SQLSTATE %s)',
                NEW.id, v_message, v_state);
            -- An earlier guarded run (restored by the rollback) must not follow this send.
            DELETE FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = NEW.id AND r.kind = 'guard';
            INSERT INTO plunk_sql.guard_failures AS f (campaign_id, sqlstate, message)
            VALUES (NEW.id, v_state, v_message)
            ON CONFLICT (campaign_id) DO UPDATE
            SET failed_at = pg_catalog.now(), sqlstate = EXCLUDED.sqlstate, message = EXCLUDED.message;
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            NULL;  -- even the record failed: the WARNING above is all there is
        END;
    END;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql._guard_campaign_started() IS
    'Row trigger on public.campaigns (DRAFT/SCHEDULED -> SENDING): guard snapshot when guard mode is on. '
    'Never raises; failures go to plunk_sql.guard_failures.';

CREATE OR REPLACE TRIGGER plunk_sql_guard_campaign_started
    AFTER UPDATE OF status ON public.campaigns
    FOR EACH ROW
    WHEN (NEW.status::text = 'SENDING' AND OLD.status::text IN ('DRAFT', 'SCHEDULED'))
    EXECUTE FUNCTION plunk_sql._guard_campaign_started();

-- plunk_sql.guard_unlinked_email(campaign_id, contact_id, email_id): an email
-- of a guarded run that linked to no open recipient (called by the emails
-- INSERT trigger, which accepts it). It is a late joiner's when the contact
-- has no other email of the campaign outside the late joiners, i.e. it is not
-- a snapshot recipient mailed twice (the snapshot's never-mailed recipients
-- stay open until the run is finalized, so "not open and not mailed" means
-- "not in the snapshot"); recorded in guard_late_joiners, kind 'late joiner',
-- or 'after end' once the run was finalized (then it may also be a snapshot
-- recipient settled as skipped at the end). A second email of a snapshot
-- recipient is accepted and not recorded. Never raises (a WARNING instead).
-- Cost: probes of emails by contact, of guard_runs and guard_late_joiners.
-- Locks: the guard_late_joiners row it inserts.
CREATE OR REPLACE FUNCTION plunk_sql.guard_unlinked_email(p_campaign_id text, p_contact_id text, p_email_id text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM public.emails AS m
        WHERE m."contactId" = p_contact_id
          AND m."campaignId" = p_campaign_id
          AND m.id <> p_email_id
          AND NOT EXISTS (SELECT 1 FROM plunk_sql.guard_late_joiners AS j
                          WHERE j.campaign_id = p_campaign_id AND j.email_id = m.id))
    THEN
        RETURN;  -- a snapshot recipient's second email
    END IF;
    INSERT INTO plunk_sql.guard_late_joiners (campaign_id, email_id, contact_id, kind)
    SELECT p_campaign_id, p_email_id, p_contact_id,
           CASE WHEN g.finalized_at IS NULL THEN 'late joiner' ELSE 'after end' END
    FROM plunk_sql.guard_runs AS g
    WHERE g.campaign_id = p_campaign_id
    ON CONFLICT (campaign_id, email_id) DO NOTHING;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING USING MESSAGE = pg_catalog.format(
        'plunk_sql guard mode: email %s of campaign %s could not be recorded: %s (SQLSTATE %s)',
        p_email_id, p_campaign_id, SQLERRM, SQLSTATE);
END
$$;

COMMENT ON FUNCTION plunk_sql.guard_unlinked_email(text, text, text) IS
    'Guard mode: record an email of a guarded run for a contact outside the snapshot (late joiner). '
    'Called by the emails INSERT trigger. Never raises.';

-- plunk_sql.sweep_guarded(): the sweep's guard mode actions, one bounded pass
-- over the guarded runs not finalized yet (not paused), in campaign order.
-- Called by plunk_sql.sweep() under its advisory lock (and only there). Rows
-- (action, campaign_id, affected):
--   'email_abandoned'  emails of the campaign still PENDING or SENDING
--                      abandon_timeout after they were created and last
--                      updated (a lost send job) are set FAILED with the
--                      normal path's error text; the emails UPDATE trigger
--                      settles their recipients. (sweep() already abandons
--                      the snapshot's linked emails; this catches the rest:
--                      late joiners' and second emails.) affected = emails.
--   'guard_finalized'  nothing of the campaign is PENDING or SENDING, no
--                      email was created for it within guard_quiet_period,
--                      and the snapshot is older than that: every open
--                      snapshot recipient (never mailed by Plunk) is settled
--                      skipped with the reason known now, in this order:
--                      'cancelled' (Plunk's cancel: CANCELLED or back to
--                      DRAFT), 'contact deleted', 'unsubscribed' (not for
--                      TRANSACTIONAL), 'not mailed by Plunk' (the contact
--                      still matches the audience, or it cannot be compiled
--                      any more: e.g. a lost batch job), 'left the audience';
--                      a recipient still in flight without an open email:
--                      'email deleted'. Then, if Plunk left it SENDING: SENT,
--                      "totalRecipients" = snapshot size, "sentCount" =
--                      Plunk's own count (emails with "sentAt"), NOTIFY
--                      plunk_sql_campaign_finished; if Plunk ended it first
--                      (v2's finalizeIfDone, a cancel), its row is left as
--                      Plunk wrote it. affected = recipients settled now.
-- Cost per unfinished guarded campaign: index probes on emails
-- ("campaignId", status) and ("projectId", "createdAt") for the recent
-- window; finalizing reads the open recipients once and counts the
-- campaign's emails once.
-- Errors: P0002 / 22P02 when a setting is missing or unreadable.
-- Locks: abandoned emails FOR UPDATE SKIP LOCKED, then (trigger) their
-- recipients and counter slots (their end-game at commit: the campaign_runs
-- row); finalize: the open recipient rows, counter slots, the campaign_runs
-- row, then the campaigns row (a guard run's end-game never takes the
-- campaigns row, which Plunk owns during the send).
CREATE OR REPLACE FUNCTION plunk_sql.sweep_guarded()
RETURNS TABLE (action text, campaign_id text, affected integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_batch integer := plunk_sql.setting('sweep_batch_size')::integer;
    v_abandon interval := plunk_sql.setting('abandon_timeout')::interval;
    v_quiet interval := plunk_sql.setting('guard_quiet_period')::interval;
    v_now timestamp := plunk_sql.utc_now();
    v_row record;
    v_count integer;
    v_status text;
    v_predicate text;
    v_slots smallint[];
    v_outcomes plunk_sql.recipient_state[];
BEGIN
    FOR v_row IN
        SELECT run.campaign_id, run.project_id, run.transactional, run.total, g.snapshot_at
        FROM plunk_sql.campaign_runs AS run
        JOIN plunk_sql.guard_runs AS g ON g.campaign_id = run.campaign_id
        WHERE run.kind = 'guard'
          AND g.finalized_at IS NULL
          AND run.paused_at IS NULL
        ORDER BY run.campaign_id
        LIMIT v_batch
    LOOP
        -- Lost send jobs: the campaign's emails open for abandon_timeout.
        WITH picked AS MATERIALIZED (
            SELECT e.id, e.status::text AS status
            FROM public.emails AS e
            WHERE e."campaignId" = v_row.campaign_id
              AND e.status IN ('PENDING', 'SENDING')
              AND e."createdAt" < v_now - v_abandon
              AND e."updatedAt" < v_now - v_abandon
            ORDER BY e.id
            LIMIT v_batch
            FOR UPDATE SKIP LOCKED
        )
        UPDATE public.emails AS e
        SET status = 'FAILED',
            error = pg_catalog.format('abandoned by plunk_sql.sweep: %s for more than %s', p.status, v_abandon),
            "updatedAt" = v_now
        FROM picked AS p
        WHERE e.id = p.id
          AND e.status IN ('PENDING', 'SENDING');
        GET DIAGNOSTICS v_count = ROW_COUNT;
        IF v_count > 0 THEN
            action := 'email_abandoned';
            campaign_id := v_row.campaign_id;
            affected := v_count;
            RETURN NEXT;
        END IF;

        -- Plunk's batches are done? Nothing open, nothing new for the quiet period.
        CONTINUE WHEN v_row.snapshot_at > pg_catalog.now() - v_quiet;
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM public.emails AS e
            WHERE e."campaignId" = v_row.campaign_id
              AND e.status IN ('PENDING', 'SENDING'));
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM public.emails AS e
            WHERE e."projectId" = v_row.project_id
              AND e."createdAt" >= v_now - v_quiet
              AND e."campaignId" = v_row.campaign_id);

        SELECT c.status::text INTO v_status FROM public.campaigns AS c WHERE c.id = v_row.campaign_id;
        BEGIN
            v_predicate := plunk_sql.audience_predicate(
                (SELECT c FROM public.campaigns AS c WHERE c.id = v_row.campaign_id));
        EXCEPTION WHEN OTHERS THEN
            v_predicate := 'true';  -- cannot tell who left: 'not mailed by Plunk'
        END;

        EXECUTE pg_catalog.format(
            $sql$
            WITH open AS MATERIALIZED (
                SELECT r.contact_id, r.state
                FROM plunk_sql.recipients AS r
                WHERE r.campaign_id = %1$L
                  AND r.state IN ('pending', 'claimed', 'in_flight')
                ORDER BY r.contact_id
                FOR UPDATE
            ),
            why AS (
                SELECT o.contact_id,
                       CASE
                           WHEN o.state = 'in_flight' THEN 'email deleted'
                           WHEN %2$s THEN 'cancelled'
                           WHEN c.id IS NULL THEN 'contact deleted'
                           WHEN NOT %3$s AND NOT c.subscribed THEN 'unsubscribed'
                           WHEN %4$s THEN 'not mailed by Plunk'
                           ELSE 'left the audience'
                       END AS reason
                FROM open AS o
                LEFT JOIN public.contacts AS c
                       ON c.id = o.contact_id
                      AND c."projectId" = %5$L
            )
            , settled AS (
                UPDATE plunk_sql.recipients AS r
                SET state = 'skipped',
                    settled_at = pg_catalog.now(),
                    lease_expires_at = NULL,
                    reason = w.reason
                FROM why AS w
                WHERE r.campaign_id = %1$L
                  AND r.contact_id = w.contact_id
                  AND r.state IN ('pending', 'claimed', 'in_flight')
                RETURNING r.slot
            )
            SELECT pg_catalog.count(*)::integer, pg_catalog.array_agg(s.slot),
                   pg_catalog.array_agg('skipped'::plunk_sql.recipient_state)
            FROM settled AS s
            $sql$,
            v_row.campaign_id, (v_status IN ('CANCELLED', 'DRAFT'))::text, v_row.transactional::text,
            v_predicate, v_row.project_id)
        INTO v_count, v_slots, v_outcomes;

        -- Counters (and finished_at) only: the counters leave a guarded
        -- campaign's row to this function.
        IF v_count > 0 THEN
            PERFORM plunk_sql.count_settled(v_row.campaign_id, v_slots, v_outcomes);
        END IF;
        UPDATE plunk_sql.campaign_runs AS r
        SET finished_at = coalesce(r.finished_at, pg_catalog.now())
        WHERE r.campaign_id = v_row.campaign_id;

        IF v_status = 'SENDING' THEN
            UPDATE public.campaigns AS c
            SET status = 'SENT',
                "totalRecipients" = v_row.total,
                "sentCount" = (SELECT pg_catalog.count(*)::integer FROM public.emails AS e
                               WHERE e."campaignId" = v_row.campaign_id AND e."sentAt" IS NOT NULL),
                "updatedAt" = v_now
            WHERE c.id = v_row.campaign_id
              AND c.status = 'SENDING';
            IF FOUND THEN
                PERFORM plunk_sql.notify_finished(v_row.campaign_id);
                v_status := 'SENT';
                UPDATE plunk_sql.guard_runs AS g SET ended_by = 'sweep' WHERE g.campaign_id = v_row.campaign_id;
            END IF;
        END IF;
        UPDATE plunk_sql.guard_runs AS g
        SET finalized_at = pg_catalog.now(),
            final_status = v_status,
            ended_by = coalesce(g.ended_by, 'plunk'),
            settled_at_end = v_count
        WHERE g.campaign_id = v_row.campaign_id;

        action := 'guard_finalized';
        campaign_id := v_row.campaign_id;
        affected := v_count;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION plunk_sql.sweep_guarded() IS
    'The sweep''s guard mode actions (email_abandoned, guard_finalized) over unfinished guarded runs. '
    'Internal: called by plunk_sql.sweep().';

DROP VIEW IF EXISTS plunk_sql.guard_status;
DROP VIEW IF EXISTS plunk_sql.late_joiners;

-- Late joiners per guarded campaign: emails Plunk created for contacts outside
-- the snapshot, with the email's status now (NULL once the email row is gone).
CREATE VIEW plunk_sql.late_joiners AS
SELECT j.campaign_id,
       j.contact_id,
       j.email_id,
       j.kind,
       e.status::text AS email_status,
       j.recorded_at
FROM plunk_sql.guard_late_joiners AS j
LEFT JOIN public.emails AS e ON e.id = j.email_id;

COMMENT ON VIEW plunk_sql.late_joiners IS
    'Guard mode: emails Plunk created for contacts outside a guarded campaign''s snapshot (kind late joiner, '
    'or after end), with the email''s current status.';

-- What guard mode is doing: one row per guarded campaign (state 'following'
-- or 'finalized', with who ended it and how many recipients the sweep
-- settled then), and one per campaign it could not follow (state 'left to
-- Plunk', with the error). guard_mode is the setting now.
-- (The setting is read from the table, not through guard_mode_on(): a view's
-- tables are read with its owner's rights, its functions with the reader's.)
CREATE VIEW plunk_sql.guard_status AS
WITH cfg AS (
    SELECT coalesce((SELECT s.value = 'on' FROM plunk_sql.settings AS s WHERE s.key = 'guard_mode'), false)
               AS guard_mode
)
SELECT g.campaign_id,
       run.project_id,
       c.status::text AS status,
       CASE WHEN g.finalized_at IS NULL THEN 'following' ELSE 'finalized' END AS state,
       cfg.guard_mode,
       run.total,
       g.plunk_total,
       (SELECT pg_catalog.count(*)::integer FROM plunk_sql.guard_late_joiners AS j
        WHERE j.campaign_id = g.campaign_id) AS late_joiners,
       g.snapshot_at AS since,
       g.finalized_at,
       g.ended_by,
       g.settled_at_end,
       NULL::text AS error
FROM plunk_sql.guard_runs AS g
JOIN plunk_sql.campaign_runs AS run ON run.campaign_id = g.campaign_id
JOIN public.campaigns AS c ON c.id = g.campaign_id
CROSS JOIN cfg
UNION ALL
SELECT f.campaign_id,
       c."projectId",
       c.status::text,
       'left to Plunk',
       cfg.guard_mode,
       NULL::integer,
       c."totalRecipients",
       NULL::integer,
       f.failed_at,
       NULL::timestamptz,
       NULL::text,
       NULL::integer,
       pg_catalog.format('%s (SQLSTATE %s)', f.message, f.sqlstate)
FROM plunk_sql.guard_failures AS f
JOIN public.campaigns AS c ON c.id = f.campaign_id
CROSS JOIN cfg
WHERE NOT EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS run WHERE run.campaign_id = f.campaign_id);

COMMENT ON VIEW plunk_sql.guard_status IS
    'Guard mode per campaign: following / finalized (ended_by sweep or plunk, settled_at_end) / left to Plunk '
    '(error), late joiners, and whether guard_mode is on.';
