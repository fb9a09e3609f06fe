-- Linking and completion: row triggers on Plunk's `emails` table.
--
-- Each trigger is a row trigger whose WHEN clause admits only rows of a
-- campaign (and, for UPDATE, only an email's first final status): Plunk's
-- transactional and workflow mail, its status moves after the first final one
-- (DELIVERED, OPENED, ...) and the SENDING step never enter PL/pgSQL and
-- capture no transition table. Counters: sql/48_counters.sql.
--
-- Lock order everywhere a send changes state: recipients rows, then counter
-- slot rows (descending), then the campaigns row, then the campaign_runs row.
-- A row trigger takes its recipient row when its own row is processed, so a
-- statement locks recipients in the order it writes emails; two statements
-- writing emails of the same recipients in opposite orders can deadlock
-- (40P01 for one of them; it would have been refused anyway: one email per
-- recipient).

-- An email status settles its recipient as 'failed' for FAILED/SUPPRESSED, as
-- 'sent' for every other status but PENDING/SENDING (the only open ones).
-- Statuses are compared as text so every EmailStatus enum version works.

-- plunk_sql.notify_finished(campaign_id): NOTIFY channel plunk_sql_campaign_finished
-- with a JSON payload {"campaign_id", "status", "total", "sent", "failed", "skipped"}.
-- Delivered when the finishing transaction commits.
CREATE OR REPLACE FUNCTION plunk_sql.notify_finished(p_campaign_id text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify(
        'plunk_sql_campaign_finished',
        (SELECT pg_catalog.json_build_object(
                    'campaign_id', r.campaign_id, 'status', c.status::text, 'total', r.total,
                    'sent', n.sent, 'failed', n.failed, 'skipped', n.skipped)::text
         FROM plunk_sql.campaign_runs AS r
         JOIN public.campaigns AS c ON c.id = r.campaign_id
         CROSS JOIN LATERAL plunk_sql.run_counts(r.campaign_id) AS n
         WHERE r.campaign_id = p_campaign_id));
END
$$;

COMMENT ON FUNCTION plunk_sql.notify_finished(text) IS
    'NOTIFY plunk_sql_campaign_finished with the campaign''s final counts as JSON.';

-- Trigger: a new emails row of a campaign links to its recipient (row
-- trigger, only rows with a "campaignId": WHEN clause).
-- Refusals, for runs of kind 'toolkit' (a 'guard' run is never refused here;
-- each refusal site below is guarded by one condition on the run's kind):
--   55000 the campaign is not SENDING (cancelled by the toolkit or by Plunk,
--         or already SENT): nothing may be mailed for it;
--   55000 the campaign has no current run but a retired one (cancelled back
--         to DRAFT) and is not SENDING: nothing until a new start;
--   55000 an email for a recipient nobody claimed (a sender that skips
--         claim_batch: Plunk's own, a worker role) fails the claim's re-check:
--         campaign paused, contact deleted, unsubscribed (unless
--         TRANSACTIONAL), or suppressed by a recipient_suppression_rules rule.
--         The raise rolls the statement back: the recipient stays pending and
--         the next claim settles it skipped with its reason;
--   55000 the recipient was settled without mail (unsubscribed, deleted,
--         cancelled, suppressed);
--   23505 the recipient already has an email (one email per recipient,
--         whatever the order: an email made before the start was linked by
--         it, an earlier insert, a late insert after an expired lease);
--   23503 the contact is outside the snapshot, or the email's "projectId" is
--         not the campaign's.
-- An email for a claimed recipient is taken as the claim holder's and needs no
-- re-check (the claim made it); an unclaimed email that races a claim links
-- the recipient, and the claim holder's own email is then refused (23505).
-- Rows of campaigns the toolkit never started are left alone.
-- Locks: the recipient row it links (a concurrent second email for the same
-- recipient waits, then finds it linked and is refused); counters only for an
-- email inserted already final.
-- Cost per campaign email: probes of campaign_runs and campaigns, one UPDATE
-- by key; an unclaimed email adds the re-check (contacts, suppression rules
-- when the table exists).
CREATE OR REPLACE FUNCTION plunk_sql.emails_after_insert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_run record;
    v_status text;
    v_outcome plunk_sql.recipient_state;
    v_reason text;
    v_slot smallint;
    v_rec record;
    v_why text;
    v_rule record;
BEGIN
    SELECT r.kind, r.project_id, r.paused_at, r.transactional INTO v_run
    FROM plunk_sql.campaign_runs AS r
    WHERE r.campaign_id = NEW."campaignId";
    IF NOT FOUND THEN
        -- No current run: refused while a retired toolkit run says the
        -- campaign was cancelled back to DRAFT; any other campaign is Plunk's.
        SELECT c.status::text INTO v_status FROM public.campaigns AS c WHERE c.id = NEW."campaignId";
        IF v_status IS DISTINCT FROM 'SENDING'
           AND EXISTS (SELECT 1 FROM plunk_sql.retired_runs AS rr
                       WHERE rr.campaign_id = NEW."campaignId" AND rr.kind = 'toolkit') THEN
            -- Refusal (toolkit runs only: retired_runs.kind = 'toolkit' above).
            RAISE EXCEPTION USING
                ERRCODE = 'object_not_in_prerequisite_state',
                SCHEMA = 'plunk_sql',
                MESSAGE = pg_catalog.format('campaign %s was cancelled back to %s and its plunk_sql run retired: '
                                            'no email may be created until it is started again',
                                            NEW."campaignId", v_status),
                HINT = 'SELECT plunk_sql.start_campaign(...) takes a fresh snapshot.';
        END IF;
        RETURN NULL;
    END IF;

    IF v_run.kind = 'toolkit' THEN
        IF NEW."projectId" IS DISTINCT FROM v_run.project_id THEN
            -- Plunk shows an email in its project's log: it must be the campaign's.
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                SCHEMA = 'plunk_sql', CONSTRAINT = 'email_project_is_campaign_project',
                MESSAGE = pg_catalog.format('email %s is in project %s but campaign %s belongs to project %s',
                                            NEW.id, NEW."projectId", NEW."campaignId", v_run.project_id);
        END IF;
        SELECT c.status::text INTO v_status FROM public.campaigns AS c WHERE c.id = NEW."campaignId";
        IF v_status <> 'SENDING' THEN
            -- Refusal: a stopped campaign (cancelled by the toolkit or Plunk, or SENT) mails nobody.
            RAISE EXCEPTION USING
                ERRCODE = 'object_not_in_prerequisite_state',
                SCHEMA = 'plunk_sql',
                MESSAGE = pg_catalog.format('campaign %s is %s: no email may be created for it',
                                            NEW."campaignId", v_status),
                HINT = 'A worker holding a claim of a cancelled campaign drops it; see plunk_sql.campaign_progress.';
        END IF;
    END IF;

    v_outcome := CASE
        WHEN NEW.status::text IN ('PENDING', 'SENDING') THEN NULL
        WHEN NEW.status::text IN ('FAILED', 'SUPPRESSED') THEN 'failed'::plunk_sql.recipient_state
        ELSE 'sent'::plunk_sql.recipient_state
    END;
    v_reason := CASE WHEN v_outcome = 'failed' THEN coalesce(NEW.error, 'email ' || NEW.status::text) END;

    -- The claim holder's email: the claim re-checked consent already.
    -- Guard mode: Plunk never claims, so a guard run links its pending
    -- recipients here too (Plunk's own audience query was its consent check).
    UPDATE plunk_sql.recipients AS r
    SET state = coalesce(v_outcome, 'in_flight'),
        email_id = NEW.id,
        lease_expires_at = NULL,
        in_flight_at = pg_catalog.now(),
        settled_at = CASE WHEN v_outcome IS NOT NULL THEN pg_catalog.now() END,
        reason = v_reason
    WHERE r.campaign_id = NEW."campaignId"
      AND r.contact_id = NEW."contactId"
      AND r.state IN ('pending', 'claimed')  -- proves recipients_open_key's predicate
      AND (r.state = 'claimed' OR v_run.kind = 'guard')
    RETURNING r.slot INTO v_slot;

    IF NOT FOUND AND v_run.kind = 'guard' THEN
        -- guard mode: never refuse Plunk's email; one outside the snapshot is
        -- recorded beside it (late joiner), a second one is accepted as is.
        PERFORM plunk_sql.guard_unlinked_email(NEW."campaignId", NEW."contactId", NEW.id);
        RETURN NULL;
    END IF;

    IF NOT FOUND THEN
        -- Not claimed: the claim's re-check, then link (toolkit runs only from here).
        SELECT r.state, r.reason, k.id AS contact_id, k.subscribed, k.email INTO v_rec
        FROM plunk_sql.recipients AS r
        LEFT JOIN public.contacts AS k ON k.id = r.contact_id AND k."projectId" = v_run.project_id
        WHERE r.campaign_id = NEW."campaignId"
          AND r.contact_id = NEW."contactId";
        IF FOUND AND v_rec.state = 'pending' THEN
            v_why := CASE
                WHEN v_run.paused_at IS NOT NULL THEN 'the campaign is paused'
                WHEN v_rec.contact_id IS NULL THEN 'contact deleted'
                WHEN NOT v_run.transactional AND NOT v_rec.subscribed THEN 'unsubscribed'
            END;
            IF v_why IS NULL AND pg_catalog.to_regclass('public.recipient_suppression_rules') IS NOT NULL THEN
                -- The address is the email's recipient: "recipientAddress" where
                -- that column exists and is set, else the contact's email.
                SELECT s.rule_id, s.rule_name, s.rule_kind INTO v_rule
                FROM plunk_sql.suppression_rules_matching(
                         v_run.project_id,
                         ARRAY[coalesce(pg_catalog.to_jsonb(NEW) ->> 'recipientAddress', v_rec.email)]) AS s
                LIMIT 1;
                IF FOUND THEN
                    v_why := pg_catalog.format('suppressed by rule %s (%s, %s)', v_rule.rule_name, v_rule.rule_kind,
                                               v_rule.rule_id);
                END IF;
            END IF;
            IF v_why IS NOT NULL THEN
                -- Refusal (toolkit runs only).
                RAISE EXCEPTION USING
                    ERRCODE = 'object_not_in_prerequisite_state',
                    SCHEMA = 'plunk_sql',
                    MESSAGE = pg_catalog.format('recipient %s of campaign %s was not claimed and may not be mailed: %s',
                                                NEW."contactId", NEW."campaignId", v_why),
                    DETAIL = 'An email without a claim passes the claim''s re-check: campaign not paused, contact '
                             'exists, subscribed unless TRANSACTIONAL, not suppressed.',
                    HINT = 'Claim recipients with plunk_sql.claim_batch and mail only the rows it returns.';
            END IF;
            -- 'claimed' too: a claim that raced this statement; its holder's email is refused (23505).
            UPDATE plunk_sql.recipients AS r
            SET state = coalesce(v_outcome, 'in_flight'),
                email_id = NEW.id,
                lease_expires_at = NULL,
                in_flight_at = pg_catalog.now(),
                settled_at = CASE WHEN v_outcome IS NOT NULL THEN pg_catalog.now() END,
                reason = v_reason
            WHERE r.campaign_id = NEW."campaignId"
              AND r.contact_id = NEW."contactId"
              AND r.state IN ('pending', 'claimed')
            RETURNING r.slot INTO v_slot;
        END IF;
    END IF;

    IF v_slot IS NULL THEN
        -- Did not link: why (error path only).
        SELECT r.state, r.reason INTO v_rec
        FROM plunk_sql.recipients AS r
        WHERE r.campaign_id = NEW."campaignId"
          AND r.contact_id = NEW."contactId";
        IF NOT FOUND THEN
            IF NOT EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = NEW."campaignId") THEN
                -- The run was retired while this statement waited for its row
                -- (cancel_campaign going back to DRAFT): nothing may be mailed.
                RAISE EXCEPTION USING
                    ERRCODE = 'object_not_in_prerequisite_state',
                    SCHEMA = 'plunk_sql',
                    MESSAGE = 'the campaign was cancelled while its emails were inserted: no email may be created';
            END IF;
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                SCHEMA = 'plunk_sql', CONSTRAINT = 'email_contact_is_recipient',
                MESSAGE = pg_catalog.format('contact %s is not a recipient of campaign %s (not in its snapshot)',
                                            NEW."contactId", NEW."campaignId");
        ELSIF v_rec.state = 'skipped' THEN
            RAISE EXCEPTION USING
                ERRCODE = 'object_not_in_prerequisite_state',
                SCHEMA = 'plunk_sql',
                MESSAGE = pg_catalog.format('recipient %s of campaign %s was skipped (%s): no email may be created',
                                            NEW."contactId", NEW."campaignId", coalesce(v_rec.reason, 'no reason')),
                HINT = 'Claim recipients with plunk_sql.claim_batch and mail only the rows it returns.';
        END IF;
        RAISE EXCEPTION USING
            ERRCODE = 'unique_violation',
            SCHEMA = 'plunk_sql', CONSTRAINT = 'one_email_per_recipient',
            MESSAGE = pg_catalog.format('campaign %s already has an email for contact %s',
                                        NEW."campaignId", NEW."contactId"),
            DETAIL = 'plunk_sql allows one email per recipient of a campaign it started.';
    END IF;

    IF v_outcome IS NOT NULL THEN
        -- Inserted already final (rare: imports, tests): settled at once.
        PERFORM plunk_sql._count(NEW."campaignId", v_slot, -1, 0, (v_outcome = 'sent')::integer,
                                 (v_outcome = 'failed')::integer, 0);
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql.emails_after_insert() IS
    'Row trigger on public.emails INSERT of campaign rows: links the email to its recipient; toolkit runs: '
    '55000 campaign not SENDING / run retired / unclaimed email failing the claim re-check / recipient skipped, '
    '23505 second email, 23503 contact not in snapshot or email of another project.';

-- Trigger: an email's first final status settles its recipient (row trigger;
-- its WHEN clause admits only a campaign email whose status moves from
-- PENDING/SENDING to anything else, so later moves - DELIVERED, OPENED, a late
-- BOUNCED - and every non-campaign email never enter it). One UPDATE by key of
-- the recipient, one of its counter slot; the end-game when that slot drains
-- runs at commit (sql/48_counters.sql).
-- Locks: the recipient row, then its slot row.
CREATE OR REPLACE FUNCTION plunk_sql.emails_after_update()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_failed boolean := NEW.status::text IN ('FAILED', 'SUPPRESSED');
    v_slot smallint;
    v_open integer;
    v_unsynced integer;
BEGIN
    UPDATE plunk_sql.recipients AS r
    SET state = CASE WHEN v_failed THEN 'failed'::plunk_sql.recipient_state
                     ELSE 'sent'::plunk_sql.recipient_state END,
        settled_at = pg_catalog.now(),
        reason = CASE WHEN v_failed THEN coalesce(NEW.error, 'email ' || NEW.status::text) END
    WHERE r.campaign_id = NEW."campaignId"
      AND r.contact_id = NEW."contactId"
      AND r.state = 'in_flight'
      AND r.email_id = NEW.id
    RETURNING r.slot INTO v_slot;
    IF FOUND THEN
        -- plunk_sql._count inlined: the hot path, one PL/pgSQL call (with its
        -- search_path switch) less per email. The inlining was not measured as
        -- such; the SET search_path of a call alone costs about 4 us (a no-op
        -- trigger with and without it, 20,000 committed UPDATEs; bench/notes).
        -- Keep the two in step: the same counters, and an event for the pool,
        -- a drained slot, or unsynced reaching 32.
        UPDATE plunk_sql.run_slots AS s
        SET open = s.open - 1,
            sent = s.sent + (NOT v_failed)::integer,
            failed = s.failed + v_failed::integer,
            unsynced = s.unsynced + (NOT v_failed)::integer,
            progressed_at = pg_catalog.now()
        WHERE s.campaign_id = NEW."campaignId"
          AND s.slot = v_slot
        RETURNING s.open, s.unsynced INTO v_open, v_unsynced;
        IF v_slot = 0 OR v_open = 0 OR v_unsynced = 32 THEN  -- = 32: once per transaction
            INSERT INTO plunk_sql.slot_events (campaign_id, slot) VALUES (NEW."campaignId", v_slot);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql.emails_after_update() IS
    'Row trigger on public.emails UPDATE (first final status of a campaign email): settles its recipient, '
    'counts it on its slot, sets SENT when the last one settles.';

-- Trigger: deleting an in-flight email (Plunk's cancel, a contact's cascade
-- delete) settles its recipient as skipped, so the campaign can still finish
-- (row trigger, campaign rows only).
-- Locks: the recipient row, then its slot row.
CREATE OR REPLACE FUNCTION plunk_sql.emails_after_delete()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_slot smallint;
BEGIN
    UPDATE plunk_sql.recipients AS r
    SET state = 'skipped',
        settled_at = pg_catalog.now(),
        reason = 'email deleted'
    WHERE r.campaign_id = OLD."campaignId"
      AND r.contact_id = OLD."contactId"
      AND r.state = 'in_flight'
      AND r.email_id = OLD.id
    RETURNING r.slot INTO v_slot;
    IF FOUND THEN
        PERFORM plunk_sql._count(OLD."campaignId", v_slot, -1, 0, 0, 0, 1);
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql.emails_after_delete() IS
    'Row trigger on public.emails DELETE of campaign rows: an in-flight recipient of a deleted email settles '
    'as skipped.';

-- Row triggers replace the statement triggers of 0.2 (DROP first: CREATE OR
-- REPLACE TRIGGER cannot turn a statement trigger into a row trigger).
DROP TRIGGER IF EXISTS plunk_sql_emails_after_insert ON public.emails;
DROP TRIGGER IF EXISTS plunk_sql_emails_after_update ON public.emails;
DROP TRIGGER IF EXISTS plunk_sql_emails_after_delete ON public.emails;

CREATE TRIGGER plunk_sql_emails_after_insert
    AFTER INSERT ON public.emails
    FOR EACH ROW
    WHEN (NEW."campaignId" IS NOT NULL)
    EXECUTE FUNCTION plunk_sql.emails_after_insert();

CREATE TRIGGER plunk_sql_emails_after_update
    AFTER UPDATE OF status ON public.emails
    FOR EACH ROW
    WHEN (NEW."campaignId" IS NOT NULL
          AND OLD.status::text IN ('PENDING', 'SENDING')
          AND NEW.status::text NOT IN ('PENDING', 'SENDING'))
    EXECUTE FUNCTION plunk_sql.emails_after_update();

CREATE TRIGGER plunk_sql_emails_after_delete
    AFTER DELETE ON public.emails
    FOR EACH ROW
    WHEN (OLD."campaignId" IS NOT NULL)
    EXECUTE FUNCTION plunk_sql.emails_after_delete();

-- Helpers of earlier versions, gone since the triggers above replaced them.
DROP FUNCTION IF EXISTS plunk_sql.apply_outcomes(jsonb);
DROP FUNCTION IF EXISTS plunk_sql.count_outcome(jsonb, text, plunk_sql.recipient_state);
DROP FUNCTION IF EXISTS plunk_sql.emails_before_move();
-- Trigger: moving an email of a toolkit campaign (UPDATE of "campaignId" or
-- "contactId") is refused. The recipient is linked to this row by (campaign,
-- contact): a moved row would leave its recipient pointing at mail it no
-- longer is, and could give the target contact a second email. Deleting the
-- email (its recipient settles skipped) and inserting a new one is the way.
-- Not refused: rows of campaigns without a toolkit run, guard runs, and the
-- "campaignId" SET NULL of Plunk's foreign key when the campaign is deleted.
--   55000 the email belongs (or would belong) to a toolkit campaign.
-- Locks: none beyond the row being updated. Entered only when one of the two
-- columns changes (WHEN clause): Plunk's status writes never reach it.
CREATE OR REPLACE FUNCTION plunk_sql.emails_refuse_move()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW."campaignId" IS NULL
       AND NOT EXISTS (SELECT 1 FROM public.campaigns AS c WHERE c.id = OLD."campaignId") THEN
        RETURN NULL;  -- the campaign is being deleted (ON DELETE SET NULL)
    END IF;
    IF EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r
               WHERE r.campaign_id IN (OLD."campaignId", NEW."campaignId")
                 AND r.kind = 'toolkit') THEN
        -- Refusal (toolkit runs only).
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            SCHEMA = 'plunk_sql',
            MESSAGE = pg_catalog.format('email %s of a campaign plunk_sql sends cannot move '
                                        '(campaign %s -> %s, contact %s -> %s)',
                                        OLD.id, OLD."campaignId", NEW."campaignId", OLD."contactId",
                                        NEW."contactId"),
            DETAIL = 'Its recipient is linked by (campaign, contact); one email per recipient.',
            HINT = 'Delete the email (its recipient settles skipped) instead of moving it.';
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql.emails_refuse_move() IS
    'Row trigger on public.emails: refuses UPDATE of "campaignId"/"contactId" of a toolkit campaign''s email '
    '(55000).';

-- AFTER, not BEFORE: any BEFORE ROW UPDATE trigger makes PostgreSQL fetch and
-- lock the old row of every UPDATE of emails before it even looks at the
-- trigger's columns (measured with one BEFORE row trigger each on emails and
-- campaigns: +115 WAL bytes and roughly +90 us per settling UPDATE). An AFTER
-- row trigger whose columns are not updated is never queued, and its raise
-- still undoes the whole statement.
DROP TRIGGER IF EXISTS plunk_sql_emails_before_move ON public.emails;
CREATE OR REPLACE TRIGGER plunk_sql_emails_refuse_move
    AFTER UPDATE OF "campaignId", "contactId" ON public.emails
    FOR EACH ROW
    WHEN (OLD."campaignId" IS DISTINCT FROM NEW."campaignId" OR OLD."contactId" IS DISTINCT FROM NEW."contactId")
    EXECUTE FUNCTION plunk_sql.emails_refuse_move();

