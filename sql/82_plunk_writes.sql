-- Plunk's own writes on a campaign the toolkit started (issue 13): its cancel
-- (three shapes), its status resets, its v2 completion writes, its suppression
-- rules, emails that existed before the start.
--
-- Everything here applies to runs of kind 'toolkit' only. A 'guard' run
-- (issue 15, sql/85_guard.sql) follows Plunk's statements and is never
-- corrected or refused here: every entry point below returns early on it.
--
-- Lock order is the toolkit's (recipients -> counter slots -> campaigns ->
-- campaign_runs), but
-- the campaigns triggers run while Plunk's UPDATE already holds the campaigns
-- row. So what they do to recipients and campaign_runs never waits long: it
-- runs in a subtransaction under a 100ms lock_timeout and, when a worker holds
-- a row it needs, gives up (nothing of it stays) and leaves the work to the
-- sweep (plunk_sql.sweep_plunk_writes, called from plunk_sql.sweep). A wait
-- cycle with a worker can therefore never last, and Plunk's statement never
-- fails because of the toolkit.

-- plunk_sql.suppression_rules_matching(project_id, addresses): for each
-- address of the array that an enabled rule of the project in
-- public.recipient_suppression_rules matches, the first matching rule (oldest
-- first, as Plunk checks them). Matching follows Plunk: the address is
-- trimmed and lower-cased, split at its last '@'; ADDRESS = whole address,
-- DOMAIN = the part after '@', PREFIX / SUFFIX = the local part starts / ends
-- with the pattern, WILDCARD = a glob over the whole address where only '*'
-- and '?' are special ('%' and '_' literal); an address longer than 254
-- characters never matches. Returns the address as given.
-- Where the table does not exist (Plunk before its 20261008140000 migration)
-- it returns nothing: the SQL naming the table is only run when it exists
-- (dynamic, parameters passed with USING, never spliced into the text).
--   No errors of its own.
-- Locks: none (reads). Cost: one to_regclass; with the table, one probe of
-- the project's enabled rules per address.
CREATE OR REPLACE FUNCTION plunk_sql.suppression_rules_matching(p_project_id text, p_addresses text[])
RETURNS TABLE (address text, rule_id text, rule_name text, rule_kind text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.to_regclass('public.recipient_suppression_rules') IS NULL
       OR p_addresses IS NULL OR pg_catalog.cardinality(p_addresses) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE $q$
        SELECT a.address, m.id, m.name, m.kind
        FROM (SELECT DISTINCT u.address FROM pg_catalog.unnest($2::text[]) AS u (address)) AS a
        CROSS JOIN LATERAL (SELECT pg_catalog.lower(pg_catalog.btrim(a.address)) AS addr) AS n
        CROSS JOIN LATERAL (
            SELECT pg_catalog.strpos(pg_catalog.reverse(n.addr), '@') AS at_from_end
        ) AS s
        CROSS JOIN LATERAL (
            SELECT CASE WHEN s.at_from_end = 0 THEN n.addr
                        ELSE pg_catalog.left(n.addr, pg_catalog.length(n.addr) - s.at_from_end) END AS local,
                   CASE WHEN s.at_from_end = 0 THEN NULL
                        ELSE pg_catalog.right(n.addr, s.at_from_end - 1) END AS domain
        ) AS p
        CROSS JOIN LATERAL (
            SELECT r.id, r.name, r.kind
            FROM public.recipient_suppression_rules AS r
            WHERE r."projectId" = $1
              AND r.enabled
              AND pg_catalog.length(n.addr) <= 254
              AND CASE r.kind
                      WHEN 'ADDRESS' THEN n.addr = r.pattern
                      WHEN 'DOMAIN' THEN p.domain = r.pattern
                      WHEN 'PREFIX' THEN pg_catalog.left(p.local, pg_catalog.length(r.pattern)) = r.pattern
                      WHEN 'SUFFIX' THEN pg_catalog.right(p.local, pg_catalog.length(r.pattern)) = r.pattern
                                         AND pg_catalog.length(p.local) >= pg_catalog.length(r.pattern)
                      WHEN 'WILDCARD' THEN n.addr LIKE pg_catalog.replace(pg_catalog.replace(
                                               pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
                                                   r.pattern, '\', '\\'), '%', '\%'), '_', '\_'),
                                               '*', '%'), '?', '_') ESCAPE '\'
                      ELSE false
                  END
            ORDER BY r."createdAt", r.id
            LIMIT 1
        ) AS m
    $q$ USING p_project_id, p_addresses;
END
$$;

COMMENT ON FUNCTION plunk_sql.suppression_rules_matching(text, text[]) IS
    'Addresses an enabled public.recipient_suppression_rules rule of the project matches, with the first '
    'matching rule (id, name, kind); nothing when the table does not exist. Internal.';

-- plunk_sql._adopt_existing_emails(campaign_id): at the start of a toolkit
-- run, link the campaign's emails that already exist (made before the start:
-- by Plunk's sender, an import, an earlier run) to their recipients, so no
-- contact gets a second one: PENDING/SENDING -> in_flight, a final status ->
-- sent/failed (counted on their slots). A contact with several
-- such emails is linked to one of them (a settled one first). Contacts outside
-- the snapshot are ignored. Called by the campaigns trigger when the status
-- becomes SENDING.
--   No errors of its own.
-- Locks: the new recipient rows it links (visible to nobody else yet), then
-- counters. Cost: one probe of emails("campaignId") (usually empty).
CREATE OR REPLACE FUNCTION plunk_sql._adopt_existing_emails(p_campaign_id text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_slots smallint[];
    v_outcomes plunk_sql.recipient_state[];
    v_linked integer;
BEGIN
    -- Usually none exists: settled by one probe of emails("campaignId"). (The
    -- join below, planned on the fresh snapshot's stale statistics, walked all
    -- of the campaign's recipients even then: 12 ms at 27k recipients.)
    IF NOT EXISTS (SELECT 1 FROM public.emails AS e WHERE e."campaignId" = p_campaign_id) THEN
        RETURN 0;
    END IF;
    WITH existing AS (
        SELECT DISTINCT ON (e."contactId")
               e.id, e."contactId" AS contact_id,
               CASE
                   WHEN e.status::text IN ('PENDING', 'SENDING') THEN 'in_flight'
                   WHEN e.status::text IN ('FAILED', 'SUPPRESSED') THEN 'failed'
                   ELSE 'sent'
               END::plunk_sql.recipient_state AS state,
               e.status::text AS status,
               e.error
        FROM public.emails AS e
        WHERE e."campaignId" = p_campaign_id
        ORDER BY e."contactId", (e.status::text IN ('PENDING', 'SENDING')), e."createdAt", e.id
    ),
    linked AS (
        UPDATE plunk_sql.recipients AS r
        SET state = x.state,
            email_id = x.id,
            in_flight_at = pg_catalog.now(),
            settled_at = CASE WHEN x.state <> 'in_flight' THEN pg_catalog.now() END,
            reason = CASE WHEN x.state = 'failed' THEN coalesce(x.error, 'email ' || x.status) END
        FROM existing AS x
        WHERE r.campaign_id = p_campaign_id
          AND r.contact_id = x.contact_id
          AND r.state = 'pending'
        RETURNING r.state, r.slot
    )
    SELECT pg_catalog.array_agg(l.slot) FILTER (WHERE l.state <> 'in_flight'),
           pg_catalog.array_agg(l.state) FILTER (WHERE l.state <> 'in_flight'),
           pg_catalog.count(*)::integer
    INTO v_slots, v_outcomes, v_linked
    FROM linked AS l;
    IF v_slots IS NOT NULL THEN
        PERFORM plunk_sql.count_settled(p_campaign_id, v_slots, v_outcomes);
    END IF;
    RETURN v_linked;
END
$$;

COMMENT ON FUNCTION plunk_sql._adopt_existing_emails(text) IS
    'Link emails made before a toolkit start to their recipients (one email per contact). Internal.';

-- plunk_sql._settle_cancelled(campaign_id, limit): the open recipients of a
-- campaign that stopped sending (CANCELLED, or back to DRAFT/SCHEDULED) that
-- no email will ever come for: pending and claimed rows settle skipped,
-- reason 'cancelled' (a claim holder's late email is refused: the campaign
-- is not SENDING). In-flight rows keep waiting for their email's outcome (or
-- its deletion). Rows a worker holds right now are skipped (SKIP LOCKED) and
-- left for the next call. Returns how many settled.
--   No errors of its own.
-- Locks: the pending/claimed rows it takes (SKIP LOCKED), then counters
-- (their slots; the run row and campaigns row when nothing is left open).
CREATE OR REPLACE FUNCTION plunk_sql._settle_cancelled(p_campaign_id text, p_limit integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    v_n integer;
    v_slots smallint[];
    v_outcomes plunk_sql.recipient_state[];
BEGIN
    WITH picked AS MATERIALIZED (
        SELECT r.ctid AS row_id
        FROM plunk_sql.recipients AS r
        WHERE r.campaign_id = p_campaign_id
          AND r.state IN ('pending', 'claimed')
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ),
    settled AS (
        UPDATE plunk_sql.recipients AS r
        SET state = 'skipped',
            settled_at = pg_catalog.now(),
            reason = 'cancelled'
        FROM picked AS p
        WHERE r.ctid = p.row_id
          AND r.state IN ('pending', 'claimed')
        RETURNING r.slot
    )
    SELECT pg_catalog.count(*)::integer, pg_catalog.array_agg(x.slot),
           pg_catalog.array_agg('skipped'::plunk_sql.recipient_state)
    INTO v_n, v_slots, v_outcomes
    FROM settled AS x;
    IF v_n > 0 THEN
        -- The campaign stopped sending: the end-game (at commit) keeps its status.
        PERFORM plunk_sql.count_settled(p_campaign_id, v_slots, v_outcomes);
    END IF;
    RETURN v_n;
END
$$;

COMMENT ON FUNCTION plunk_sql._settle_cancelled(text, integer) IS
    'Settle up to limit pending/claimed recipients of a stopped campaign as skipped (cancelled). Internal.';

-- plunk_sql._retire_run(campaign_id, retired_by): move the campaign's current
-- run to plunk_sql.retired_runs / retired_recipients and remove it from
-- campaign_runs / recipients. Rows still open are recorded skipped ('retired
-- while <state>') in the archive. From then on the campaign has no current
-- run: its emails are refused (55000, sql/50_settle.sql) until a new start,
-- which takes a fresh snapshot. Returns the retired_id, NULL when there was
-- no run.
--   No errors of its own.
-- Locks: the run's counter slots and campaign_runs row, then all the
-- campaign's recipient rows (DELETE).
CREATE OR REPLACE FUNCTION plunk_sql._retire_run(p_campaign_id text, p_retired_by text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint;
    v_open integer;
BEGIN
    -- Lock the counters first (slots, then the run, the global order), so they
    -- cannot move between the copy and the delete.
    PERFORM 1 FROM plunk_sql.run_slots AS s WHERE s.campaign_id = p_campaign_id ORDER BY s.slot DESC FOR UPDATE;
    PERFORM 1 FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT pg_catalog.count(*)::integer INTO v_open
    FROM plunk_sql.recipients AS r
    WHERE r.campaign_id = p_campaign_id
      AND r.state IN ('pending', 'claimed', 'in_flight');

    INSERT INTO plunk_sql.retired_runs (
        campaign_id, project_id, transactional, kind, total, sent, failed, skipped,
        started_at, paused_at, finished_at, progressed_at, retired_by)
    SELECT r.campaign_id, r.project_id, r.transactional, r.kind, r.total, n.sent, n.failed,
           n.skipped + v_open, r.started_at, r.paused_at, coalesce(r.finished_at, pg_catalog.now()),
           n.progressed_at, p_retired_by
    FROM plunk_sql.campaign_runs AS r
    CROSS JOIN LATERAL plunk_sql.run_counts(r.campaign_id) AS n
    WHERE r.campaign_id = p_campaign_id
    RETURNING retired_id INTO v_id;

    INSERT INTO plunk_sql.retired_recipients (
        retired_id, campaign_id, contact_id, state, email_id, claims, lease_expires_at,
        in_flight_at, settled_at, reason)
    SELECT v_id, r.campaign_id, r.contact_id,
           CASE WHEN r.state IN ('pending', 'claimed', 'in_flight') THEN 'skipped' ELSE r.state END,
           r.email_id, r.claims, r.lease_expires_at, r.in_flight_at,
           coalesce(r.settled_at, pg_catalog.now()),
           CASE WHEN r.state IN ('pending', 'claimed', 'in_flight')
                THEN 'retired while ' || r.state::text ELSE r.reason END
    FROM plunk_sql.recipients AS r
    WHERE r.campaign_id = p_campaign_id;

    -- The campaign_runs delete trigger removes the recipients.
    DELETE FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id;
    RETURN v_id;
END
$$;

COMMENT ON FUNCTION plunk_sql._retire_run(text, text) IS
    'Move a campaign''s current run to retired_runs/retired_recipients (never reused). Internal.';

-- Trigger: a toolkit campaign's status changed by anyone (Plunk's cancel,
-- its DRAFT reset, the toolkit's own start and cancel). Entered only when the
-- status really changes from DRAFT/SCHEDULED to SENDING (a start), or to
-- CANCELLED, DRAFT or SCHEDULED (WHEN clause): the toolkit's counter updates
-- and every other campaigns UPDATE never reach PL/pgSQL.
--   -> SENDING: emails made before the start are linked (_adopt_existing_emails).
--   -> CANCELLED / DRAFT / SCHEDULED: pending and claimed recipients settle
--      skipped (cancelled); -> DRAFT / SCHEDULED also retires the run (Plunk
--      sends a campaign back to DRAFT when nothing left; its next start must
--      take a fresh snapshot).
-- When a worker holds a row this needs, the work is left to the sweep (see the
-- top of this file); Plunk's statement always succeeds.
-- Locks: see the top of this file; recipient rows SKIP LOCKED, campaign_runs
-- and the retired run's rows under a 100ms lock_timeout.
CREATE OR REPLACE FUNCTION plunk_sql._campaigns_status_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_kind text;
    v_lock_timeout text;
BEGIN
    SELECT r.kind INTO v_kind FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = NEW.id;
    IF v_kind IS DISTINCT FROM 'toolkit' THEN  -- no run, or a guard run (issue 15's)
        RETURN NULL;
    END IF;

    IF NEW.status::text = 'SENDING' THEN
        PERFORM plunk_sql._adopt_existing_emails(NEW.id);
        RETURN NULL;
    END IF;

    v_lock_timeout := pg_catalog.current_setting('lock_timeout');
    BEGIN
        PERFORM pg_catalog.set_config('lock_timeout', '100ms', true);
        PERFORM plunk_sql._settle_cancelled(NEW.id, NULL);
        IF NEW.status::text IN ('DRAFT', 'SCHEDULED') THEN
            PERFORM plunk_sql._retire_run(NEW.id, 'plunk');
        END IF;
        PERFORM pg_catalog.set_config('lock_timeout', v_lock_timeout, true);
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
        -- Rolled back to the start of the block (lock_timeout included): the sweep finishes it.
        RAISE NOTICE USING
            MESSAGE = pg_catalog.format('plunk_sql: campaign %s is %s; workers hold its rows, the sweep settles it',
                                        NEW.id, NEW.status);
    END;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql._campaigns_status_changed() IS
    'Row trigger on public.campaigns status changes of toolkit campaigns: adopt pre-existing emails on '
    'SENDING; settle open recipients on CANCELLED/DRAFT/SCHEDULED; retire the run on DRAFT/SCHEDULED.';

CREATE OR REPLACE TRIGGER plunk_sql_campaigns_status_changed
    AFTER UPDATE OF status ON public.campaigns
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND ((NEW.status::text = 'SENDING' AND OLD.status::text IN ('DRAFT', 'SCHEDULED'))
               OR NEW.status::text IN ('CANCELLED', 'DRAFT', 'SCHEDULED')))
    EXECUTE FUNCTION plunk_sql._campaigns_status_changed();

-- Trigger: Plunk v2's completion writes on a toolkit campaign. Plunk rewrites
-- "totalRecipients" to the emails it counts at its last batch, writes
-- "sentCount" as its count of emails with "sentAt" (FAILED-but-stamped ones
-- included), and finalizeIfDone sets SENT once its own count reaches
-- "totalRecipients". Beside a toolkit run the toolkit's figures win, silently
-- (refusing would make Plunk's job fail and retry for ever): the same
-- statement ends with "totalRecipients" = the snapshot size, "sentCount" =
-- recipients settled sent (the recount), and status SENT put back to SENDING
-- while a recipient is open.
-- An AFTER row trigger that corrects the row with one more UPDATE (at
-- trigger depth 1, so it never re-enters itself), not a BEFORE trigger: any
-- BEFORE row trigger on campaigns would make PostgreSQL lock the old row of
-- every campaigns UPDATE, the toolkit's per-email counter update included.
-- Entered only when one of those columns changes, by a statement a client
-- sent (WHEN clause, pg_trigger_depth() = 0): the toolkit's per-email
-- settling runs inside the emails triggers and writes the recount itself.
-- Not for DRAFT/SCHEDULED rows (a cancel resets the counters) nor guard runs.
-- Plunk's UPDATE ... RETURNING still shows the values it wrote.
--   No errors.
-- Locks: none beyond the campaigns row the statement already holds.
CREATE OR REPLACE FUNCTION plunk_sql._campaigns_keep_counters()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_run plunk_sql.campaign_runs;
    v_n record;
BEGIN
    IF NEW.status::text IN ('DRAFT', 'SCHEDULED') THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_run FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = NEW.id;
    IF NOT FOUND OR v_run.kind <> 'toolkit' THEN
        RETURN NULL;
    END IF;
    -- "sentCount" as the toolkit keeps it: sent - unsynced while open (sql/48_counters.sql).
    SELECT * INTO v_n FROM plunk_sql.run_counts(NEW.id);
    UPDATE public.campaigns AS c
    SET "totalRecipients" = v_run.total,
        "sentCount" = v_n.shown_sent,
        status = CASE
            WHEN c.status::text = 'SENT' AND v_n.open > 0
                THEN OLD.status
            ELSE c.status
        END
    WHERE c.id = NEW.id
      AND (c."totalRecipients" IS DISTINCT FROM v_run.total
           OR c."sentCount" IS DISTINCT FROM v_n.shown_sent
           OR (c.status::text = 'SENT' AND v_n.open > 0));
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql._campaigns_keep_counters() IS
    'Row trigger on public.campaigns: for toolkit runs, "totalRecipients" = snapshot size, "sentCount" = '
    'the toolkit''s count, and no SENT while a recipient is open (Plunk v2''s completion writes).';

DROP TRIGGER IF EXISTS plunk_sql_campaigns_keep_counters ON public.campaigns;
CREATE TRIGGER plunk_sql_campaigns_keep_counters
    AFTER UPDATE OF "totalRecipients", "sentCount", status ON public.campaigns
    FOR EACH ROW
    WHEN (pg_catalog.pg_trigger_depth() = 0
          AND (NEW."totalRecipients" IS DISTINCT FROM OLD."totalRecipients"
               OR NEW."sentCount" IS DISTINCT FROM OLD."sentCount"
               OR (NEW.status::text = 'SENT' AND OLD.status::text <> 'SENT')))
    EXECUTE FUNCTION plunk_sql._campaigns_keep_counters();

-- plunk_sql.sweep_plunk_writes(batch): the sweep's backstop for what the
-- campaigns trigger had to leave (a worker held a row) or never saw (Plunk's
-- writes made before this version was installed). One row per campaign acted
-- on:
--   'cancel_settled'  a toolkit run whose campaign is CANCELLED, DRAFT or
--                     SCHEDULED: pending/claimed recipients settled skipped
--                     (cancelled), at most batch of them; affected = rows.
--   'run_retired'     a toolkit run whose campaign is back to DRAFT or
--                     SCHEDULED: the run is retired (a later start takes a
--                     fresh snapshot, the sweep's own scheduled start
--                     included); affected = the run's total.
-- Each campaign is handled in a subtransaction under a 100ms lock_timeout:
-- rows a worker holds are left for the next sweep, never waited for.
--   No errors of its own.
-- Locks: as _settle_cancelled and _retire_run. Cost: a scan of the campaigns
-- the toolkit has a run for (plus a probe of each one's campaigns row), most
-- of them filtered out by finished_at.
CREATE OR REPLACE FUNCTION plunk_sql.sweep_plunk_writes(p_batch integer)
RETURNS TABLE (action text, campaign_id text, affected integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row record;
    v_n integer;
    v_total integer;
    v_lock_timeout text := pg_catalog.current_setting('lock_timeout');
BEGIN
    FOR v_row IN
        SELECT run.campaign_id, c.status::text AS status, run.total
        FROM plunk_sql.campaign_runs AS run
        JOIN public.campaigns AS c ON c.id = run.campaign_id
        WHERE run.kind = 'toolkit'
          AND c.status::text IN ('CANCELLED', 'DRAFT', 'SCHEDULED')
          AND (run.finished_at IS NULL OR c.status::text <> 'CANCELLED')
        ORDER BY run.campaign_id
        LIMIT p_batch
    LOOP
        BEGIN
            PERFORM pg_catalog.set_config('lock_timeout', '100ms', true);
            v_n := plunk_sql._settle_cancelled(v_row.campaign_id, p_batch);
            IF v_row.status IN ('DRAFT', 'SCHEDULED') THEN
                SELECT r.total INTO v_total FROM plunk_sql.campaign_runs AS r
                WHERE r.campaign_id = v_row.campaign_id;
                PERFORM plunk_sql._retire_run(v_row.campaign_id, 'sweep');
            END IF;
            PERFORM pg_catalog.set_config('lock_timeout', v_lock_timeout, true);
        EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
            CONTINUE;  -- rolled back; next sweep
        END;
        IF v_n > 0 THEN
            action := 'cancel_settled';
            campaign_id := v_row.campaign_id;
            affected := v_n;
            RETURN NEXT;
        END IF;
        IF v_row.status IN ('DRAFT', 'SCHEDULED') THEN
            action := 'run_retired';
            campaign_id := v_row.campaign_id;
            affected := v_total;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

COMMENT ON FUNCTION plunk_sql.sweep_plunk_writes(integer) IS
    'Sweep action: settle open recipients of stopped toolkit campaigns (cancel_settled) and retire runs of '
    'campaigns back in DRAFT/SCHEDULED (run_retired). Internal; called by plunk_sql.sweep().';
