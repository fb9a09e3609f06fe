-- Linking and completion: triggers on Plunk's `emails` table.
--
-- Lock order everywhere a send changes state: recipients rows, then the
-- campaign_runs row, then the campaigns row. Keeping one order means a settling
-- statement and a claim that skips contacts can never deadlock.

-- An email status settles its recipient as 'failed' for FAILED/SUPPRESSED, as
-- 'sent' for every other status but PENDING/SENDING (the only open ones).
-- Written inline below (not as a function): a per-row call of a function with a
-- pinned search_path cannot be inlined and costs a GUC save/restore per email.
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
                    'sent', r.sent, 'failed', r.failed, 'skipped', r.skipped)::text
         FROM plunk_sql.campaign_runs AS r
         JOIN public.campaigns AS c ON c.id = r.campaign_id
         WHERE r.campaign_id = p_campaign_id));
END
$$;

COMMENT ON FUNCTION plunk_sql.notify_finished(text) IS
    'NOTIFY plunk_sql_campaign_finished with the campaign''s final counts as JSON.';

-- plunk_sql.apply_settlement(campaign_id, sent, failed, skipped): add newly
-- settled recipients to the campaign's counters, keep "sentCount" equal to the
-- recipients settled as sent, and set the campaign SENT when nothing is open.
-- Called once per campaign per settling statement, never per row.
-- Locks: the campaign_runs row (one UPDATE), then the campaigns row when
-- "sentCount" changes or the campaign finishes.
CREATE OR REPLACE FUNCTION plunk_sql.apply_settlement(
    p_campaign_id text,
    p_sent integer,
    p_failed integer,
    p_skipped integer
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sent integer;
    v_open integer;
    v_finished boolean;
    v_kind text;  -- guard mode
BEGIN
    UPDATE plunk_sql.campaign_runs AS r
    SET sent = r.sent + p_sent,
        failed = r.failed + p_failed,
        skipped = r.skipped + p_skipped,
        finished_at = CASE
            WHEN r.total = r.sent + r.failed + r.skipped + p_sent + p_failed + p_skipped
                THEN coalesce(r.finished_at, pg_catalog.now())
            ELSE r.finished_at
        END
    WHERE r.campaign_id = p_campaign_id
    RETURNING r.sent, r.total - r.sent - r.failed - r.skipped, r.kind
    INTO v_sent, v_open, v_kind;

    -- guard mode: Plunk's own code drives a guarded send and owns its campaigns
    -- row meanwhile ("sentCount", the end); plunk_sql.sweep_guarded() ends it.
    IF NOT FOUND OR (p_sent = 0 AND v_open > 0) OR v_kind = 'guard' THEN
        RETURN;
    END IF;

    UPDATE public.campaigns AS c
    SET "sentCount" = v_sent,
        status = CASE
            -- Only a SENDING campaign becomes SENT: a cancelled one (by
            -- cancel_campaign or Plunk) keeps its status while its last
            -- in-flight emails settle.
            WHEN v_open = 0 AND c.status::text = 'SENDING'
                THEN 'SENT'::public."CampaignStatus"
            ELSE c.status
        END,
        "updatedAt" = plunk_sql.utc_now()
    WHERE c.id = p_campaign_id
    RETURNING v_open = 0 AND c.status::text = 'SENT' INTO v_finished;

    IF v_finished AND v_open = 0 THEN
        PERFORM plunk_sql.notify_finished(p_campaign_id);
    END IF;
END
$$;

COMMENT ON FUNCTION plunk_sql.apply_settlement(text, integer, integer, integer) IS
    'Add settled recipients to a campaign''s counters; sets SENT (and NOTIFY) when none is open. Internal.';

-- Settlement tallies. The triggers walk their rows ordered by campaign id and
-- keep one tally per campaign in three parallel integer arrays (campaign ids in
-- v_campaigns); after the walk, apply_settlement runs once per campaign in that
-- order: one counter update per campaign per statement, one lock order. Plain
-- plpgsql variables: the common statement (one email, one campaign) pays no
-- per-row function call and no jsonb.

-- Trigger: a new emails row of a toolkit campaign links to its recipient.
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
--         The raise rolls everything back: the recipient stays pending and
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
-- Locks: the recipient rows it links, claimed ones first then unclaimed ones,
-- each group in (campaign, contact) order (a concurrent second email for the
-- same recipient waits, then finds it linked and is refused); then counters.
-- Cost: per statement one probe of the campaign's status per campaign; per
-- email one UPDATE by key; unclaimed emails add one set-based re-check
-- (index probes of recipients and contacts, suppression rules when the table
-- exists); campaign emails without a current run add one probe of
-- retired_runs.
CREATE OR REPLACE FUNCTION plunk_sql.emails_after_insert()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Each email's recipient is one parameterised UPDATE on the unique key of
-- recipients_open_key. Set-based joins were tried: with recipients' statistics
-- always stale (a fresh snapshot is not analysed yet), the planner put the
-- recipients on the outer side and walked every open recipient once per email
-- (2,000 links: 2.6 s instead of 0.1 s); joins by ctid stayed fast but skipped
-- rows another session changed meanwhile (a TID scan re-checks the TID). A
-- plain UPDATE by key keeps PostgreSQL's re-check of the newest row version.
-- Counters still change once per campaign per statement (apply_settlement).
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    v_campaign_rows integer;
    v_expected integer := 0;
    v_linked integer := 0;
    v_bad record;
    v_email record;
    v_state plunk_sql.recipient_state;
    v_cur text;
    v_status text;
    -- Emails of recipients that were not claimed: re-checked after the walk.
    v_u_ids text[] := '{}';
    v_u_campaigns text[] := '{}';
    v_u_contacts text[] := '{}';
    v_u_outcomes plunk_sql.recipient_state[] := '{}';
    v_u_reasons text[] := '{}';
    v_u integer := 0;
    v_refusal record;
    v_group record;
    v_refuse boolean;
    v_campaigns text[] := '{}';
    v_sent integer[] := '{}';
    v_failed integer[] := '{}';
    v_n integer := 0;
BEGIN
    -- Transactional and workflow mail: one pass over the transition table, no join.
    SELECT pg_catalog.count(*) FILTER (WHERE e."campaignId" IS NOT NULL)::integer
    INTO v_campaign_rows
    FROM new_emails AS e;
    IF v_campaign_rows = 0 THEN
        RETURN NULL;
    END IF;

    FOR v_email IN
        SELECT e.id, e."campaignId" AS campaign_id, e."contactId" AS contact_id,
               CASE
                   WHEN e.status::text IN ('PENDING', 'SENDING') THEN NULL
                   WHEN e.status::text IN ('FAILED', 'SUPPRESSED') THEN 'failed'::plunk_sql.recipient_state
                   ELSE 'sent'::plunk_sql.recipient_state
               END AS outcome,
               e.status::text AS status,
               e.error,
               e."projectId" AS project_id,
               run.project_id AS campaign_project_id,
               run.kind
        FROM new_emails AS e
        JOIN plunk_sql.campaign_runs AS run ON run.campaign_id = e."campaignId"
        ORDER BY e."campaignId", e."contactId"  -- one lock order for every statement
    LOOP
        IF v_email.project_id IS DISTINCT FROM v_email.campaign_project_id AND v_email.kind <> 'guard' THEN
            -- Plunk shows an email in its project's log: it must be the campaign's.
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                SCHEMA = 'plunk_sql', CONSTRAINT = 'email_project_is_campaign_project',
                MESSAGE = pg_catalog.format('email %s is in project %s but campaign %s belongs to project %s',
                                            v_email.id, v_email.project_id, v_email.campaign_id,
                                            v_email.campaign_project_id);
        END IF;
        IF v_email.campaign_id IS DISTINCT FROM v_cur THEN  -- once per campaign per statement
            SELECT c.status::text INTO v_status FROM public.campaigns AS c WHERE c.id = v_email.campaign_id;
            v_cur := v_email.campaign_id;
        END IF;
        IF v_email.kind = 'toolkit' AND v_status <> 'SENDING' THEN
            -- Refusal: a stopped campaign (cancelled by the toolkit or Plunk, or SENT) mails nobody.
            RAISE EXCEPTION USING
                ERRCODE = 'object_not_in_prerequisite_state',
                SCHEMA = 'plunk_sql',
                MESSAGE = pg_catalog.format('campaign %s is %s: no email may be created for it',
                                            v_email.campaign_id, v_status),
                HINT = 'A worker holding a claim of a cancelled campaign drops it; see plunk_sql.campaign_progress.';
        END IF;
        v_expected := v_expected + 1;
        -- The claim holder's email: the claim re-checked consent already.
        -- Guard mode: Plunk never claims, so a guard run links its pending
        -- recipients here too (Plunk's own audience query was its consent check).
        UPDATE plunk_sql.recipients AS r
        SET state = coalesce(v_email.outcome, 'in_flight'),
            email_id = v_email.id,
            lease_expires_at = NULL,
            in_flight_at = pg_catalog.now(),
            settled_at = CASE WHEN v_email.outcome IS NOT NULL THEN pg_catalog.now() END,
            reason = CASE WHEN v_email.outcome = 'failed'
                          THEN coalesce(v_email.error, 'email ' || v_email.status) END
        WHERE r.campaign_id = v_email.campaign_id
          AND r.contact_id = v_email.contact_id
          AND r.state IN ('pending', 'claimed')  -- proves recipients_open_key's predicate
          AND (r.state = 'claimed' OR v_email.kind = 'guard')
        RETURNING r.state INTO v_state;
        IF NOT FOUND AND v_email.kind = 'guard' THEN
            -- guard mode: never refuse Plunk's email; one outside the snapshot is
            -- recorded beside it (late joiner), a second one is accepted as is.
            v_expected := v_expected - 1;
            PERFORM plunk_sql.guard_unlinked_email(v_email.campaign_id, v_email.contact_id, v_email.id);
        ELSIF FOUND THEN
            v_linked := v_linked + 1;
            IF v_state IN ('sent', 'failed') THEN  -- inserted already final: tally it
                IF v_n = 0 OR v_campaigns[v_n] <> v_email.campaign_id THEN
                    v_n := v_n + 1;
                    v_campaigns[v_n] := v_email.campaign_id;
                    v_sent[v_n] := 0;
                    v_failed[v_n] := 0;
                END IF;
                IF v_state = 'sent' THEN
                    v_sent[v_n] := v_sent[v_n] + 1;
                ELSE
                    v_failed[v_n] := v_failed[v_n] + 1;
                END IF;
            END IF;
        ELSE
            v_u := v_u + 1;
            v_u_ids[v_u] := v_email.id;
            v_u_campaigns[v_u] := v_email.campaign_id;
            v_u_contacts[v_u] := v_email.contact_id;
            v_u_outcomes[v_u] := v_email.outcome;
            v_u_reasons[v_u] := CASE WHEN v_email.outcome = 'failed'
                                     THEN coalesce(v_email.error, 'email ' || v_email.status) END;
        END IF;
    END LOOP;

    IF v_expected < v_campaign_rows THEN
        -- Emails of campaigns without a current run: refused while a retired
        -- toolkit run says the campaign was cancelled back to DRAFT.
        SELECT e."campaignId" AS campaign_id, c.status::text AS status
        INTO v_refusal
        FROM new_emails AS e
        JOIN public.campaigns AS c ON c.id = e."campaignId"
        WHERE c.status::text <> 'SENDING'
          AND EXISTS (SELECT 1 FROM plunk_sql.retired_runs AS rr
                      WHERE rr.campaign_id = e."campaignId" AND rr.kind = 'toolkit')
          AND NOT EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS run WHERE run.campaign_id = e."campaignId")
        LIMIT 1;
        IF FOUND THEN
            -- Refusal (toolkit runs only: retired_runs.kind = 'toolkit' above).
            RAISE EXCEPTION USING
                ERRCODE = 'object_not_in_prerequisite_state',
                SCHEMA = 'plunk_sql',
                MESSAGE = pg_catalog.format('campaign %s was cancelled back to %s and its plunk_sql run retired: '
                                            'no email may be created until it is started again',
                                            v_refusal.campaign_id, v_refusal.status),
                HINT = 'SELECT plunk_sql.start_campaign(...) takes a fresh snapshot.';
        END IF;
    END IF;

    IF v_u > 0 THEN
        -- The claim's re-check, for pending recipients of toolkit runs, set-based.
        SELECT u.campaign_id, u.contact_id,
               CASE
                   WHEN run.paused_at IS NOT NULL THEN 'the campaign is paused'
                   WHEN k.id IS NULL THEN 'contact deleted'
                   ELSE 'unsubscribed'
               END AS why
        INTO v_refusal
        FROM unnest(v_u_campaigns, v_u_contacts) AS u (campaign_id, contact_id)
        JOIN plunk_sql.campaign_runs AS run ON run.campaign_id = u.campaign_id
        JOIN LATERAL (
            SELECT 1 FROM plunk_sql.recipients AS r
            WHERE r.campaign_id = u.campaign_id AND r.contact_id = u.contact_id AND r.state = 'pending'
        ) AS pending ON true
        LEFT JOIN LATERAL (
            SELECT k.id, k.subscribed FROM public.contacts AS k
            WHERE k.id = u.contact_id AND k."projectId" = run.project_id
        ) AS k ON true
        WHERE run.kind = 'toolkit'
          AND (run.paused_at IS NOT NULL OR k.id IS NULL OR (NOT run.transactional AND NOT k.subscribed))
        LIMIT 1;
        v_refuse := FOUND;
        IF NOT v_refuse THEN
            -- Suppression rules (where Plunk has them), once per project. The
            -- address is the email's recipient: "recipientAddress" where that
            -- column exists and is set, else the contact's email.
            FOR v_group IN
                SELECT run.project_id,
                       pg_catalog.array_agg(coalesce(pg_catalog.to_jsonb(e) ->> 'recipientAddress', k.email)) AS addresses
                FROM new_emails AS e
                JOIN plunk_sql.campaign_runs AS run ON run.campaign_id = e."campaignId"
                JOIN public.contacts AS k ON k.id = e."contactId"
                WHERE e.id = ANY (v_u_ids)
                  AND run.kind = 'toolkit'
                  AND EXISTS (SELECT 1 FROM plunk_sql.recipients AS r
                              WHERE r.campaign_id = e."campaignId" AND r.contact_id = e."contactId"
                                AND r.state = 'pending')
                GROUP BY run.project_id
            LOOP
                SELECT s.address AS contact_id, v_group.project_id AS campaign_id,
                       pg_catalog.format('suppressed by rule %s (%s, %s)', s.rule_name, s.rule_kind, s.rule_id) AS why
                INTO v_refusal
                FROM plunk_sql.suppression_rules_matching(v_group.project_id, v_group.addresses) AS s
                LIMIT 1;
                IF FOUND THEN
                    RAISE EXCEPTION USING
                        ERRCODE = 'object_not_in_prerequisite_state',
                        SCHEMA = 'plunk_sql',
                        MESSAGE = pg_catalog.format('address %s (project %s) was not claimed and may not be mailed: %s',
                                                    v_refusal.contact_id, v_refusal.campaign_id, v_refusal.why),
                        HINT = 'Claim recipients with plunk_sql.claim_batch and mail only the rows it returns.';
                END IF;
            END LOOP;
        END IF;
        IF v_refuse THEN
            -- Refusal (toolkit runs only: run.kind = 'toolkit' above).
            RAISE EXCEPTION USING
                ERRCODE = 'object_not_in_prerequisite_state',
                SCHEMA = 'plunk_sql',
                MESSAGE = pg_catalog.format('recipient %s of campaign %s was not claimed and may not be mailed: %s',
                                            v_refusal.contact_id, v_refusal.campaign_id, v_refusal.why),
                DETAIL = 'An email without a claim passes the claim''s re-check: campaign not paused, contact '
                         'exists, subscribed unless TRANSACTIONAL, not suppressed.',
                HINT = 'Claim recipients with plunk_sql.claim_batch and mail only the rows it returns.';
        END IF;

        FOR v_i IN 1 .. v_u LOOP
            -- 'claimed' too: a claim that raced this statement; its holder's email is refused (23505).
            UPDATE plunk_sql.recipients AS r
            SET state = coalesce(v_u_outcomes[v_i], 'in_flight'),
                email_id = v_u_ids[v_i],
                lease_expires_at = NULL,
                in_flight_at = pg_catalog.now(),
                settled_at = CASE WHEN v_u_outcomes[v_i] IS NOT NULL THEN pg_catalog.now() END,
                reason = v_u_reasons[v_i]
            WHERE r.campaign_id = v_u_campaigns[v_i]
              AND r.contact_id = v_u_contacts[v_i]
              AND r.state IN ('pending', 'claimed')
            RETURNING r.state INTO v_state;
            IF FOUND THEN
                v_linked := v_linked + 1;
                IF v_state IN ('sent', 'failed') THEN
                    IF v_n = 0 OR v_campaigns[v_n] <> v_u_campaigns[v_i] THEN
                        v_n := v_n + 1;
                        v_campaigns[v_n] := v_u_campaigns[v_i];
                        v_sent[v_n] := 0;
                        v_failed[v_n] := 0;
                    END IF;
                    IF v_state = 'sent' THEN
                        v_sent[v_n] := v_sent[v_n] + 1;
                    ELSE
                        v_failed[v_n] := v_failed[v_n] + 1;
                    END IF;
                END IF;
            END IF;
        END LOOP;
    END IF;

    IF v_linked < v_expected THEN
        -- Error path only: the first row that did not link, and why.
        SELECT e."campaignId" AS campaign_id, e."contactId" AS contact_id, r.state, r.reason,
               pg_catalog.count(*) OVER (PARTITION BY e."campaignId", e."contactId") AS in_statement
        INTO v_bad
        FROM new_emails AS e
        JOIN plunk_sql.campaign_runs AS run ON run.campaign_id = e."campaignId"
        LEFT JOIN plunk_sql.recipients AS r
               ON r.campaign_id = e."campaignId" AND r.contact_id = e."contactId"
        WHERE r.email_id IS DISTINCT FROM e.id
        ORDER BY e."campaignId", e."contactId"
        LIMIT 1;
        IF NOT FOUND THEN
            -- The run was retired while this statement waited for its rows
            -- (cancel_campaign going back to DRAFT): nothing may be mailed.
            RAISE EXCEPTION USING
                ERRCODE = 'object_not_in_prerequisite_state',
                SCHEMA = 'plunk_sql',
                MESSAGE = 'the campaign was cancelled while its emails were inserted: no email may be created';
        ELSIF v_bad.state IS NULL THEN
            RAISE EXCEPTION USING
                ERRCODE = 'foreign_key_violation',
                SCHEMA = 'plunk_sql', CONSTRAINT = 'email_contact_is_recipient',
                MESSAGE = pg_catalog.format('contact %s is not a recipient of campaign %s (not in its snapshot)',
                                            v_bad.contact_id, v_bad.campaign_id);
        ELSIF v_bad.state = 'skipped' AND v_bad.in_statement = 1 THEN
            RAISE EXCEPTION USING
                ERRCODE = 'object_not_in_prerequisite_state',
                SCHEMA = 'plunk_sql',
                MESSAGE = pg_catalog.format('recipient %s of campaign %s was skipped (%s): no email may be created',
                                            v_bad.contact_id, v_bad.campaign_id, coalesce(v_bad.reason, 'no reason')),
                HINT = 'Claim recipients with plunk_sql.claim_batch and mail only the rows it returns.';
        END IF;
        RAISE EXCEPTION USING
            ERRCODE = 'unique_violation',
            SCHEMA = 'plunk_sql', CONSTRAINT = 'one_email_per_recipient',
            MESSAGE = pg_catalog.format('campaign %s already has an email for contact %s',
                                        v_bad.campaign_id, v_bad.contact_id),
            DETAIL = 'plunk_sql allows one email per recipient of a campaign it started.';
    END IF;

    -- Rows inserted already final (rare: imports, tests) settle at once.
    FOR v_i IN 1 .. v_n LOOP
        PERFORM plunk_sql.apply_settlement(v_campaigns[v_i], v_sent[v_i], v_failed[v_i], 0);
    END LOOP;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql.emails_after_insert() IS
    'Statement trigger on public.emails INSERT: links campaign emails to recipients; toolkit runs: '
    '55000 campaign not SENDING / run retired / unclaimed email failing the claim re-check / recipient skipped, '
    '23505 second email, 23503 contact not in snapshot or email of another project.';

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

-- Trigger: an email's first final status settles its recipient: one index
-- probe per email, and one counter update per campaign per statement, however
-- many rows the statement changed. Later status moves (DELIVERED, OPENED, a late
-- BOUNCED) find the recipient settled and change nothing.
-- Locks: the recipient rows it settles, then the counter rows (apply_settlement).
CREATE OR REPLACE FUNCTION plunk_sql.emails_after_update()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Each email's recipient is one parameterised UPDATE on the unique key of
-- recipients_open_key. Set-based joins were tried: with recipients' statistics
-- always stale (a fresh snapshot is not analysed yet), the planner put the
-- recipients on the outer side and walked every open recipient once per email
-- (2,000 links: 2.6 s instead of 0.1 s); joins by ctid stayed fast but skipped
-- rows another session changed meanwhile (a TID scan re-checks the TID). A
-- plain UPDATE by key keeps PostgreSQL's re-check of the newest row version.
-- Counters still change once per campaign per statement (apply_settlement).
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    v_email record;
    v_state plunk_sql.recipient_state;
    v_campaigns text[] := '{}';
    v_sent integer[] := '{}';
    v_failed integer[] := '{}';
    v_n integer := 0;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM new_emails AS e
        WHERE e."campaignId" IS NOT NULL AND e.status::text NOT IN ('PENDING', 'SENDING')
    ) THEN
        RETURN NULL;
    END IF;

    FOR v_email IN
        SELECT e.id, e."campaignId" AS campaign_id, e."contactId" AS contact_id,
               e.status::text AS status, e.error
        FROM new_emails AS e
        WHERE e."campaignId" IS NOT NULL
          AND e.status::text NOT IN ('PENDING', 'SENDING')
        ORDER BY e."campaignId", e."contactId"  -- one lock order for every statement
    LOOP
        UPDATE plunk_sql.recipients AS r
        SET state = CASE WHEN v_email.status IN ('FAILED', 'SUPPRESSED')
                         THEN 'failed'::plunk_sql.recipient_state
                         ELSE 'sent'::plunk_sql.recipient_state END,
            settled_at = pg_catalog.now(),
            reason = CASE WHEN v_email.status IN ('FAILED', 'SUPPRESSED')
                          THEN coalesce(v_email.error, 'email ' || v_email.status) END
        WHERE r.campaign_id = v_email.campaign_id
          AND r.contact_id = v_email.contact_id
          AND r.state = 'in_flight'
          AND r.email_id = v_email.id
        RETURNING r.state INTO v_state;
        IF FOUND THEN
            IF v_n = 0 OR v_campaigns[v_n] <> v_email.campaign_id THEN
                v_n := v_n + 1;
                v_campaigns[v_n] := v_email.campaign_id;
                v_sent[v_n] := 0;
                v_failed[v_n] := 0;
            END IF;
            IF v_state = 'sent' THEN
                v_sent[v_n] := v_sent[v_n] + 1;
            ELSE
                v_failed[v_n] := v_failed[v_n] + 1;
            END IF;
        END IF;
    END LOOP;
    FOR v_i IN 1 .. v_n LOOP  -- most statements settle nothing: no call
        PERFORM plunk_sql.apply_settlement(v_campaigns[v_i], v_sent[v_i], v_failed[v_i], 0);
    END LOOP;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql.emails_after_update() IS
    'Statement trigger on public.emails UPDATE: settles recipients on their email''s first final status, '
    'updates counters once per campaign, sets SENT when the last one settles.';

-- Trigger: deleting an in-flight email (Plunk's cancel, a contact's cascade
-- delete) settles its recipient as skipped, so the campaign can still finish.
CREATE OR REPLACE FUNCTION plunk_sql.emails_after_delete()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Each email's recipient is one parameterised UPDATE on the unique key of
-- recipients_open_key. Set-based joins were tried: with recipients' statistics
-- always stale (a fresh snapshot is not analysed yet), the planner put the
-- recipients on the outer side and walked every open recipient once per email
-- (2,000 links: 2.6 s instead of 0.1 s); joins by ctid stayed fast but skipped
-- rows another session changed meanwhile (a TID scan re-checks the TID). A
-- plain UPDATE by key keeps PostgreSQL's re-check of the newest row version.
-- Counters still change once per campaign per statement (apply_settlement).
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    v_email record;
    v_campaigns text[] := '{}';
    v_skipped integer[] := '{}';
    v_n integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM old_emails AS e WHERE e."campaignId" IS NOT NULL) THEN
        RETURN NULL;
    END IF;

    FOR v_email IN
        SELECT e.id, e."campaignId" AS campaign_id, e."contactId" AS contact_id
        FROM old_emails AS e
        WHERE e."campaignId" IS NOT NULL
        ORDER BY e."campaignId", e."contactId"  -- one lock order for every statement
    LOOP
        UPDATE plunk_sql.recipients AS r
        SET state = 'skipped',
            settled_at = pg_catalog.now(),
            reason = 'email deleted'
        WHERE r.campaign_id = v_email.campaign_id
          AND r.contact_id = v_email.contact_id
          AND r.state = 'in_flight'
          AND r.email_id = v_email.id;
        IF FOUND THEN
            IF v_n = 0 OR v_campaigns[v_n] <> v_email.campaign_id THEN
                v_n := v_n + 1;
                v_campaigns[v_n] := v_email.campaign_id;
                v_skipped[v_n] := 0;
            END IF;
            v_skipped[v_n] := v_skipped[v_n] + 1;
        END IF;
    END LOOP;
    FOR v_i IN 1 .. v_n LOOP
        PERFORM plunk_sql.apply_settlement(v_campaigns[v_i], 0, 0, v_skipped[v_i]);
    END LOOP;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql.emails_after_delete() IS
    'Statement trigger on public.emails DELETE: in-flight recipients of deleted emails settle as skipped.';

CREATE OR REPLACE TRIGGER plunk_sql_emails_after_insert
    AFTER INSERT ON public.emails
    REFERENCING NEW TABLE AS new_emails
    FOR EACH STATEMENT
    EXECUTE FUNCTION plunk_sql.emails_after_insert();

CREATE OR REPLACE TRIGGER plunk_sql_emails_after_update
    AFTER UPDATE ON public.emails
    REFERENCING NEW TABLE AS new_emails
    FOR EACH STATEMENT
    EXECUTE FUNCTION plunk_sql.emails_after_update();

CREATE OR REPLACE TRIGGER plunk_sql_emails_after_delete
    AFTER DELETE ON public.emails
    REFERENCING OLD TABLE AS old_emails
    FOR EACH STATEMENT
    EXECUTE FUNCTION plunk_sql.emails_after_delete();

-- Helpers of earlier versions (the jsonb tally), gone since the triggers above
-- keep their tallies in variables. Dropped after the triggers stop calling them.
DROP FUNCTION IF EXISTS plunk_sql.apply_outcomes(jsonb);
DROP FUNCTION IF EXISTS plunk_sql.count_outcome(jsonb, text, plunk_sql.recipient_state);
DROP FUNCTION IF EXISTS plunk_sql.emails_before_move();
