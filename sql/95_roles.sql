-- Least privilege: who may call what. Applied last on every migrate (after
-- every other function file), so it sees the functions as they are now.
--
-- Model
-- -----
-- * Nothing in schema plunk_sql is executable by PUBLIC: every function is
--   revoked from PUBLIC here, on every migrate, after all other files ran.
--   One exception, plunk_sql.setting(text): an invoker-rights reader of
--   plunk_sql.settings (the caller needs SELECT on that table anyway).
--   (Schema-level ALTER DEFAULT PRIVILEGES cannot revoke PUBLIC's default
--   EXECUTE, and the global form would touch the owner's functions in every
--   schema of Plunk's database, so this file does it explicitly.)
-- * Two NOLOGIN roles, created when the migrating user may create roles (else a
--   NOTICE says so; `SELECT * FROM plunk_sql.privilege_statements()` prints the
--   statements a superuser runs instead; docs/reliability.md lists them):
--     plunk_sql_worker    claim_batch, campaign_message (the subject/body of a
--                         SENDING toolkit campaign), campaign_progress_of (the
--                         counts of one campaign), utc_now; INSERT on public.emails; UPDATE of the
--                         delivery columns of public.emails; SELECT of the few
--                         emails columns an `UPDATE ... WHERE id = $1 AND
--                         "sentAt" IS NULL` needs (no contact, subject or body).
--                         Nothing else: it cannot read contacts, campaigns, the
--                         snapshot or the progress views, and cannot start,
--                         pause, cancel, repair or sweep.
--     plunk_sql_operator  start/preview, sweep, pause/resume, cancel, repair,
--                         campaign_progress_of;
--                         SELECT on the progress views, stuck_campaigns, the
--                         settings and sweep_state tables (when installed).
--   Grant them to login roles: GRANT plunk_sql_worker TO mailer_login;
--
-- SECURITY DEFINER, and why
-- -------------------------
-- Triggers and functions run as their caller unless SECURITY DEFINER. The
-- emails triggers must write plunk_sql.recipients, campaign_runs and campaigns
-- whoever writes an email (Plunk's own application role, the toolkit's worker
-- role): as SECURITY DEFINER they do, and no writer of emails needs any right
-- on the toolkit's tables. The same holds for the public entry points
-- (claim_batch, start_campaign, sweep, pause/resume/cancel/repair): each is the
-- one door to a state change, and a role gets the door, not the room. A worker
-- thus reads contacts only through claim_batch, i.e. only the recipients it
-- claims, of the campaign it names.
-- What makes SECURITY DEFINER safe here: every function pins
-- `search_path = pg_catalog, pg_temp` (pg_temp explicitly last, so a caller's
-- temporary objects never shadow a name) and qualifies every object; dynamic
-- SQL is built only from fixed fragments and %L literals (20_condition.sql);
-- trigger functions cannot be called directly; internal helpers
-- (apply_settlement, require_campaign, the compiler) are executable by nobody
-- but the owner, so a caller cannot move counters or read a campaigns row
-- through them. tests/test_privileges.py checks all of this.
--
-- Locks: none at run time. During migrate: DDL on the toolkit's own functions,
-- and GRANT on public.emails (a brief lock on its catalog entry).

-- plunk_sql.campaign_message(campaign_id): what a worker needs to render the
-- mail of a campaign it sends (subject, body, sender), without any right on
-- public.campaigns: only for a SENDING campaign started by plunk_sql, so a
-- worker cannot read drafts or other campaigns' content through it.
--   22004 null id; P0002 unknown campaign; 55000 not a SENDING toolkit campaign.
-- Locks: none (reads).
CREATE OR REPLACE FUNCTION plunk_sql.campaign_message(p_campaign_id text)
RETURNS TABLE (
    campaign_id text,
    project_id text,
    subject text,
    body text,
    from_address text,
    from_name text,
    reply_to text
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_campaign public.campaigns := plunk_sql.require_campaign(p_campaign_id);
BEGIN
    IF v_campaign.status::text <> 'SENDING'
        OR NOT EXISTS (SELECT 1 FROM plunk_sql.campaign_runs AS r WHERE r.campaign_id = p_campaign_id)
    THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = pg_catalog.format('campaign %s is %s: its message is only handed out while plunk_sql sends it',
                                        p_campaign_id, v_campaign.status);
    END IF;
    RETURN QUERY SELECT v_campaign.id, v_campaign."projectId", v_campaign.subject, v_campaign.body,
                        v_campaign."from", v_campaign."fromName", v_campaign."replyTo";
END
$$;

COMMENT ON FUNCTION plunk_sql.campaign_message(text) IS
    'Subject, body and sender of a SENDING plunk_sql campaign, for workers without rights on public.campaigns. '
    'Errors: 22004 null id, P0002 unknown campaign, 55000 not a SENDING toolkit campaign.';

-- plunk_sql.privilege_statements(): the statements that set up the roles and
-- grants, in order, for the functions that exist now. Each row is one
-- statement; `kind` says what it needs: 'role' (CREATEROLE), 'plunk' (owning
-- or holding GRANT OPTION on public.emails), 'toolkit' (owning plunk_sql).
-- Writes nothing.
CREATE OR REPLACE FUNCTION plunk_sql.privilege_statements()
RETURNS TABLE (kind text, statement text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Public entry points and triggers: run as their owner (see above).
    v_definer text[] := ARRAY[
        'plunk_sql.start_campaign(text)',
        'plunk_sql.preview_audience(text)',
        'plunk_sql.claim_batch(text, integer, interval)',
        'plunk_sql.campaign_message(text)',
        'plunk_sql.campaign_progress_of(text)',
        'plunk_sql.sweep()',
        'plunk_sql.pause_campaign(text)',
        'plunk_sql.resume_campaign(text)',
        'plunk_sql.cancel_campaign(text)',
        'plunk_sql.repair_campaign(text)',
        'plunk_sql.emails_after_insert()',
        'plunk_sql.emails_after_update()',
        'plunk_sql.emails_after_delete()',
        'plunk_sql._campaign_runs_after_delete()',
        'plunk_sql._guard_campaign_started()',  -- guard mode
        'plunk_sql.set_guard_mode(text, interval)'
    ];
    -- utc_now(): workers stamp "updatedAt" the way the toolkit does (harmless, no data).
    v_worker text[] := ARRAY['plunk_sql.claim_batch(text, integer, interval)',
                             'plunk_sql.campaign_message(text)',
                             'plunk_sql.campaign_progress_of(text)',
                             'plunk_sql.utc_now()'];
    v_operator text[] := ARRAY[
        'plunk_sql.start_campaign(text)',
        'plunk_sql.campaign_progress_of(text)',
        'plunk_sql.preview_audience(text)',
        'plunk_sql.sweep()',
        'plunk_sql.pause_campaign(text)',
        'plunk_sql.resume_campaign(text)',
        'plunk_sql.cancel_campaign(text)',
        'plunk_sql.repair_campaign(text)',
        'plunk_sql.set_guard_mode(text, interval)',
        'plunk_sql.utc_now()'
    ];
    -- Kept executable by PUBLIC: invoker-rights readers that only read what the
    -- caller may already read (setting() selects from plunk_sql.settings, so a
    -- caller without SELECT on it is refused by the table, not the function).
    v_public text[] := ARRAY['plunk_sql.setting(text)'];
    v_sig text;
    v_rel text;
BEGIN
    kind := 'role';
    FOREACH v_sig IN ARRAY ARRAY['plunk_sql_worker', 'plunk_sql_operator'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS r WHERE r.rolname = v_sig) THEN
            statement := pg_catalog.format('CREATE ROLE %I NOLOGIN', v_sig);
            RETURN NEXT;
        END IF;
    END LOOP;

    kind := 'toolkit';
    FOR v_sig IN
        SELECT p.oid::regprocedure::text
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = 'plunk_sql'::regnamespace
        ORDER BY 1
    LOOP
        statement := pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_sig);
        RETURN NEXT;
    END LOOP;
    FOREACH v_sig IN ARRAY v_definer LOOP
        IF pg_catalog.to_regprocedure(v_sig) IS NOT NULL THEN
            statement := pg_catalog.format('ALTER FUNCTION %s SECURITY DEFINER', v_sig);
            RETURN NEXT;
        END IF;
    END LOOP;
    FOREACH v_sig IN ARRAY v_public LOOP
        IF pg_catalog.to_regprocedure(v_sig) IS NOT NULL THEN
            statement := pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', v_sig);
            RETURN NEXT;
        END IF;
    END LOOP;
    statement := 'GRANT USAGE ON SCHEMA plunk_sql TO plunk_sql_worker, plunk_sql_operator';
    RETURN NEXT;
    FOREACH v_sig IN ARRAY v_worker LOOP
        IF pg_catalog.to_regprocedure(v_sig) IS NOT NULL THEN
            statement := pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO plunk_sql_worker', v_sig);
            RETURN NEXT;
        END IF;
    END LOOP;
    FOREACH v_sig IN ARRAY v_operator LOOP
        IF pg_catalog.to_regprocedure(v_sig) IS NOT NULL THEN
            statement := pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO plunk_sql_operator', v_sig);
            RETURN NEXT;
        END IF;
    END LOOP;
    FOREACH v_rel IN ARRAY ARRAY['plunk_sql.campaign_progress', 'plunk_sql.recipient_outcomes',
                                 'plunk_sql.stuck_campaigns', 'plunk_sql.settings',
                                 'plunk_sql.sweep_state', 'plunk_sql.guard_status',
                                 'plunk_sql.late_joiners'] LOOP
        IF pg_catalog.to_regclass(v_rel) IS NOT NULL THEN
            statement := pg_catalog.format('GRANT SELECT ON %s TO plunk_sql_operator', v_rel);
            RETURN NEXT;
        END IF;
    END LOOP;

    kind := 'plunk';
    statement := 'GRANT INSERT ON public.emails TO plunk_sql_worker';
    RETURN NEXT;
    statement := 'GRANT UPDATE (status, "sentAt", "deliveredAt", error, "messageId", "updatedAt") '
                 'ON public.emails TO plunk_sql_worker';
    RETURN NEXT;
    statement := 'GRANT SELECT (id, "campaignId", status, "sentAt") ON public.emails TO plunk_sql_worker';
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION plunk_sql.privilege_statements() IS
    'The REVOKE/ALTER/GRANT statements of the toolkit''s least-privilege setup (kind: role, toolkit, plunk), '
    'for the functions that exist now. Writes nothing; migrate runs them.';

-- Run them: roles only when this user may create roles, grants on
-- public.emails only when this user may grant them (owner or GRANT OPTION);
-- otherwise a NOTICE says what a superuser must run.
DO $$
DECLARE
    v_can_create_roles boolean;
    v_can_grant_emails boolean;
    v_stmt record;
    v_roles_exist boolean;
BEGIN
    SELECT r.rolsuper OR r.rolcreaterole INTO v_can_create_roles
    FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user;
    v_can_grant_emails := pg_catalog.pg_has_role(
            (SELECT c.relowner FROM pg_catalog.pg_class AS c WHERE c.oid = 'public.emails'::regclass), 'USAGE')
        OR pg_catalog.has_table_privilege('public.emails', 'INSERT WITH GRANT OPTION');

    FOR v_stmt IN SELECT * FROM plunk_sql.privilege_statements() LOOP
        IF v_stmt.kind = 'role' AND NOT v_can_create_roles THEN
            RAISE NOTICE 'plunk_sql: % may not create roles; a superuser runs: %;', current_user, v_stmt.statement;
            CONTINUE;
        END IF;
        v_roles_exist := EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS r WHERE r.rolname = 'plunk_sql_worker')
                     AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS r WHERE r.rolname = 'plunk_sql_operator');
        IF v_stmt.statement LIKE 'GRANT%' AND NOT v_roles_exist THEN
            RAISE NOTICE 'plunk_sql: roles missing, skipped: %;', v_stmt.statement;
            CONTINUE;
        END IF;
        IF v_stmt.kind = 'plunk' AND NOT v_can_grant_emails THEN
            RAISE NOTICE 'plunk_sql: % may not grant on public.emails; its owner runs: %;', current_user, v_stmt.statement;
            CONTINUE;
        END IF;
        BEGIN
            EXECUTE v_stmt.statement;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            -- Roles are cluster-wide: a migrate of another database created it meanwhile.
            NULL;
        END;
    END LOOP;
END
$$;
