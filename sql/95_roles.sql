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
-- * Two NOLOGIN roles, <prefix>_worker and <prefix>_operator (role_prefix
--   setting, default plunk_sql; role names are cluster-wide, see role_name()),
--   created when the migrating user may create roles (else `plunk-sql migrate`
--   prints the statements an administrator runs: `SELECT * FROM
--   plunk_sql.privilege_gaps()`; docs/deploying.md and docs/roles.md walk through it).
--   Below, plunk_sql_worker / plunk_sql_operator stand for the prefixed names:
--     plunk_sql_worker    claim_batch, release_claims (hand back what it never
--                         gave to SMTP), campaign_message (the subject/body of a
--                         SENDING toolkit campaign), campaign_progress_of (the
--                         counts of one campaign), utc_now; INSERT on public.emails; UPDATE of the
--                         delivery columns of public.emails; SELECT of the few
--                         emails columns an `UPDATE ... WHERE id = $1 AND
--                         "sentAt" IS NULL` needs (no contact, subject or body).
--                         Nothing else: it cannot read contacts, campaigns, the
--                         snapshot or the progress views, and cannot start,
--                         pause, cancel, repair or sweep.
--     plunk_sql_operator  start/preview, sweep and scheduled starts, pause/resume, cancel, repair,
--                         campaign_progress_of, privilege_gaps;
--                         SELECT on the progress views, stuck_campaigns, the
--                         settings and sweep_state tables (when installed) and
--                         yoyo's _yoyo_migration (plunk-sql doctor runs as it).
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
-- (count_settled, require_campaign, the compiler) are executable by nobody
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
            SCHEMA = 'plunk_sql',
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

-- plunk_sql.role_name(kind): the name of the toolkit's role of that kind,
-- '<role_prefix>_worker' or '<role_prefix>_operator'. The prefix is the
-- role_prefix setting (migration 0004, default 'plunk_sql'; `plunk-sql migrate
-- --role-prefix`). Role names are cluster-wide: two databases of one cluster
-- keep their roles apart only with different prefixes.
--   22023 kind is not 'worker' or 'operator', or role_prefix is not a
--   lower-case identifier of at most 40 characters.
-- Locks: none (reads plunk_sql.settings as the caller).
CREATE OR REPLACE FUNCTION plunk_sql.role_name(p_kind text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_prefix text;
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('worker', 'operator') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            SCHEMA = 'plunk_sql', COLUMN = 'kind',
            MESSAGE = pg_catalog.format('role kind must be worker or operator, got %L', p_kind);
    END IF;
    SELECT s.value INTO v_prefix FROM plunk_sql.settings AS s WHERE s.key = 'role_prefix';
    v_prefix := coalesce(v_prefix, 'plunk_sql');
    IF v_prefix !~ '^[a-z_][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            SCHEMA = 'plunk_sql', TABLE = 'settings', COLUMN = 'value',
            MESSAGE = pg_catalog.format('role_prefix %L is not a lower-case identifier of at most 40 characters', v_prefix);
    END IF;
    RETURN v_prefix || '_' || p_kind;
END
$$;

COMMENT ON FUNCTION plunk_sql.role_name(text) IS
    'Name of the toolkit''s worker or operator role (<role_prefix>_<kind>; role names are cluster-wide). '
    'Errors: 22023 unknown kind or invalid role_prefix.';

-- plunk_sql._privilege_plan(): every statement of the least-privilege setup,
-- in order, for the functions that exist now, with `in_effect` (the catalog
-- already says so) and `grantee` (the toolkit role it grants to, NULL for none).
-- `kind` says what running it needs: 'role' (CREATEROLE), 'plunk' (owning or
-- holding GRANT OPTION on public.emails), 'toolkit' (owning plunk_sql).
-- Writes nothing. Internal: read it through privilege_statements() /
-- privilege_gaps().
--   22023 invalid role_prefix (role_name).
-- Locks: none (catalog reads).
CREATE OR REPLACE FUNCTION plunk_sql._privilege_plan()
RETURNS TABLE (kind text, statement text, in_effect boolean, grantee text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_worker_role text := plunk_sql.role_name('worker');
    v_operator_role text := plunk_sql.role_name('operator');
    -- Public entry points and triggers: run as their owner (see above).
    v_definer text[] := ARRAY[
        'plunk_sql.start_campaign(text)',
        'plunk_sql.preview_audience(text)',
        'plunk_sql.audience_warnings(jsonb, text)',
        'plunk_sql.claim_batch(text, integer, interval)',
        'plunk_sql.release_claims(text, text[], text[])',
        'plunk_sql.campaign_message(text)',
        'plunk_sql.campaign_progress_of(text)',
        'plunk_sql.sweep()',
        'plunk_sql.start_next_scheduled()',
        'plunk_sql.pause_campaign(text)',
        'plunk_sql.resume_campaign(text)',
        'plunk_sql.cancel_campaign(text)',
        'plunk_sql.repair_campaign(text)',
        'plunk_sql.privilege_gaps()',
        'plunk_sql.emails_after_insert()',
        'plunk_sql.emails_after_update()',
        'plunk_sql.emails_after_delete()',
        'plunk_sql._campaign_runs_after_delete()',
        'plunk_sql._run_slots_settled()',  -- deferred: fires at commit, as the session's role
        'plunk_sql._guard_campaign_started()',  -- guard mode
        'plunk_sql.set_guard_mode(text, interval)'
    ];
    -- utc_now(): workers stamp "updatedAt" the way the toolkit does (harmless, no data).
    v_worker text[] := ARRAY['plunk_sql.claim_batch(text, integer, interval)',
                             'plunk_sql.release_claims(text, text[], text[])',
                             'plunk_sql.campaign_message(text)',
                             'plunk_sql.campaign_progress_of(text)',
                             'plunk_sql.utc_now()'];
    v_operator text[] := ARRAY[
        'plunk_sql.start_campaign(text)',
        'plunk_sql.campaign_progress_of(text)',
        'plunk_sql.preview_audience(text)',
        'plunk_sql.audience_warnings(jsonb, text)',
        'plunk_sql.sweep()',
        'plunk_sql.start_next_scheduled()',
        'plunk_sql.pause_campaign(text)',
        'plunk_sql.resume_campaign(text)',
        'plunk_sql.cancel_campaign(text)',
        'plunk_sql.repair_campaign(text)',
        'plunk_sql.privilege_gaps()',
        'plunk_sql.role_name(text)',
        'plunk_sql.set_guard_mode(text, interval)',
        'plunk_sql.utc_now()'
    ];
    -- Kept executable by PUBLIC: invoker-rights readers that only read what the
    -- caller may already read (setting() selects from plunk_sql.settings, so a
    -- caller without SELECT on it is refused by the table, not the function).
    v_public text[] := ARRAY['plunk_sql.setting(text)'];
    -- What the operator reads: progress, outcomes, stuck campaigns, settings, the
    -- sweep's bookkeeping, and yoyo's list of applied migrations (plunk-sql doctor).
    v_operator_rels text[] := ARRAY['plunk_sql.campaign_progress', 'plunk_sql.recipient_outcomes',
                                    'plunk_sql.stuck_campaigns', 'plunk_sql.settings',
                                    'plunk_sql.sweep_state', 'plunk_sql._yoyo_migration',
                                    'plunk_sql.guard_status', 'plunk_sql.late_joiners',
                                    'plunk_sql.retired_runs'];
    v_update_cols text[] := ARRAY['status', 'sentAt', 'deliveredAt', 'error', 'messageId', 'updatedAt'];
    v_select_cols text[] := ARRAY['id', 'campaignId', 'status', 'sentAt'];
    v_sig text;
    v_rel text;
    v_role text;
    v_exists boolean;
BEGIN
    kind := 'role';
    grantee := NULL;
    FOREACH v_role IN ARRAY ARRAY[v_worker_role, v_operator_role] LOOP
        statement := pg_catalog.format('CREATE ROLE %I NOLOGIN', v_role);
        in_effect := EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS r WHERE r.rolname = v_role);
        RETURN NEXT;
    END LOOP;

    kind := 'toolkit';
    FOR v_sig IN
        SELECT p.oid::regprocedure::text
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = 'plunk_sql'::regnamespace
        ORDER BY 1
    LOOP
        statement := pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_sig);
        -- Judged by the function's own ACL, never by effective privileges: a new
        -- function's default ACL (NULL) lets PUBLIC, and so every role, execute it.
        in_effect := v_sig = ANY (v_public)
                     OR (SELECT p.proacl IS NOT NULL
                                AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(p.proacl) AS a
                                                WHERE a.grantee = 0)
                         FROM pg_catalog.pg_proc AS p WHERE p.oid = v_sig::regprocedure);
        RETURN NEXT;
    END LOOP;
    FOREACH v_sig IN ARRAY v_definer LOOP
        IF pg_catalog.to_regprocedure(v_sig) IS NOT NULL THEN
            statement := pg_catalog.format('ALTER FUNCTION %s SECURITY DEFINER', v_sig);
            in_effect := (SELECT p.prosecdef FROM pg_catalog.pg_proc AS p
                          WHERE p.oid = pg_catalog.to_regprocedure(v_sig));
            RETURN NEXT;
        END IF;
    END LOOP;
    FOREACH v_sig IN ARRAY v_public LOOP
        IF pg_catalog.to_regprocedure(v_sig) IS NOT NULL THEN
            statement := pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', v_sig);
            -- An explicit grant even where the default ACL (NULL) already allows it:
            -- a fresh install then ends with the same ACL as an upgraded one.
            in_effect := EXISTS (SELECT 1 FROM pg_catalog.pg_proc AS p, pg_catalog.aclexplode(p.proacl) AS a
                                 WHERE p.oid = v_sig::regprocedure AND a.grantee = 0
                                   AND a.privilege_type = 'EXECUTE');
            RETURN NEXT;
        END IF;
    END LOOP;
    FOREACH v_role IN ARRAY ARRAY[v_worker_role, v_operator_role] LOOP
        v_exists := EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS r WHERE r.rolname = v_role);
        grantee := v_role;
        statement := pg_catalog.format('GRANT USAGE ON SCHEMA plunk_sql TO %I', v_role);
        in_effect := false;
        IF v_exists THEN
            in_effect := pg_catalog.has_schema_privilege(v_role, 'plunk_sql', 'USAGE');
        END IF;
        RETURN NEXT;
        FOREACH v_sig IN ARRAY CASE WHEN v_role = v_worker_role THEN v_worker ELSE v_operator END LOOP
            IF pg_catalog.to_regprocedure(v_sig) IS NOT NULL THEN
                statement := pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', v_sig, v_role);
                in_effect := false;
                IF v_exists THEN
                    -- The explicit grant, not the effective privilege (see the REVOKE above:
                    -- before it runs, PUBLIC's default EXECUTE would hide a missing grant).
                    in_effect := EXISTS (
                        SELECT 1 FROM pg_catalog.pg_proc AS p, pg_catalog.aclexplode(p.proacl) AS a
                        WHERE p.oid = v_sig::regprocedure AND a.privilege_type = 'EXECUTE'
                          AND a.grantee = (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = v_role));
                END IF;
                RETURN NEXT;
            END IF;
        END LOOP;
    END LOOP;
    grantee := v_operator_role;
    v_exists := EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS r WHERE r.rolname = v_operator_role);
    FOREACH v_rel IN ARRAY v_operator_rels LOOP
        IF pg_catalog.to_regclass(v_rel) IS NOT NULL THEN
            statement := pg_catalog.format('GRANT SELECT ON %s TO %I', v_rel, v_operator_role);
            in_effect := false;
            IF v_exists THEN
                in_effect := pg_catalog.has_table_privilege(v_operator_role, v_rel, 'SELECT');
            END IF;
            RETURN NEXT;
        END IF;
    END LOOP;

    kind := 'plunk';
    grantee := v_worker_role;
    v_exists := EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS r WHERE r.rolname = v_worker_role);
    statement := pg_catalog.format('GRANT INSERT ON public.emails TO %I', v_worker_role);
    in_effect := false;
    IF v_exists THEN
        in_effect := pg_catalog.has_table_privilege(v_worker_role, 'public.emails', 'INSERT');
    END IF;
    RETURN NEXT;
    statement := pg_catalog.format('GRANT UPDATE (%s) ON public.emails TO %I',
        (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ') FROM pg_catalog.unnest(v_update_cols) AS c),
        v_worker_role);
    in_effect := false;
    IF v_exists THEN
        in_effect := (SELECT pg_catalog.bool_and(pg_catalog.has_column_privilege(v_worker_role, 'public.emails', c, 'UPDATE'))
                      FROM pg_catalog.unnest(v_update_cols) AS c);
    END IF;
    RETURN NEXT;
    statement := pg_catalog.format('GRANT SELECT (%s) ON public.emails TO %I',
        (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ') FROM pg_catalog.unnest(v_select_cols) AS c),
        v_worker_role);
    in_effect := false;
    IF v_exists THEN
        in_effect := (SELECT pg_catalog.bool_and(pg_catalog.has_column_privilege(v_worker_role, 'public.emails', c, 'SELECT'))
                      FROM pg_catalog.unnest(v_select_cols) AS c);
    END IF;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION plunk_sql._privilege_plan() IS
    'Every statement of the least-privilege setup with in_effect and grantee. Internal. Errors: 22023 invalid role_prefix.';

-- plunk_sql.privilege_statements(): the statements that set up the roles and
-- grants, in order, for the functions that exist now (kind: role, toolkit,
-- plunk; see _privilege_plan). Writes nothing.
--   22023 invalid role_prefix.
-- Locks: none.
CREATE OR REPLACE FUNCTION plunk_sql.privilege_statements()
RETURNS TABLE (kind text, statement text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.kind, p.statement FROM plunk_sql._privilege_plan() AS p
$$;

COMMENT ON FUNCTION plunk_sql.privilege_statements() IS
    'The REVOKE/ALTER/GRANT statements of the toolkit''s least-privilege setup (kind: role, toolkit, plunk), '
    'for the functions that exist now. Writes nothing; migrate runs them.';

-- plunk_sql.privilege_gaps(): the statements of privilege_statements() that are
-- not in effect yet, i.e. what an administrator still has to run (kind 'role':
-- a role with CREATEROLE; 'plunk': the owner of public.emails; 'toolkit': the
-- owner of plunk_sql, or simply `plunk-sql migrate` again once the roles
-- exist). Empty when the setup is complete. `plunk-sql migrate` prints them and
-- `plunk-sql doctor` reports them. SECURITY DEFINER (see above) so the operator
-- role can call it; it reads catalogs and the role_prefix setting only.
--   22023 invalid role_prefix.
-- Locks: none.
CREATE OR REPLACE FUNCTION plunk_sql.privilege_gaps()
RETURNS TABLE (kind text, statement text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.kind, p.statement FROM plunk_sql._privilege_plan() AS p WHERE NOT p.in_effect
$$;

COMMENT ON FUNCTION plunk_sql.privilege_gaps() IS
    'Statements of the least-privilege setup not in effect yet (what an administrator still runs); '
    'empty when complete. Errors: 22023 invalid role_prefix.';

-- Run them: roles only when this user may create roles, grants on
-- public.emails only when this user may grant them (owner or GRANT OPTION),
-- grants only to roles that exist; what is skipped stays in privilege_gaps()
-- (migrate prints it) and gets a NOTICE.
DO $$
DECLARE
    v_can_create_roles boolean;
    v_can_grant_emails boolean;
    v_stmt record;
BEGIN
    SELECT r.rolsuper OR r.rolcreaterole INTO v_can_create_roles
    FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user;
    v_can_grant_emails := pg_catalog.pg_has_role(
            (SELECT c.relowner FROM pg_catalog.pg_class AS c WHERE c.oid = 'public.emails'::regclass), 'USAGE')
        OR pg_catalog.has_table_privilege('public.emails', 'INSERT WITH GRANT OPTION');

    -- The plan is computed once, up front: a row in effect then stays in effect, and
    -- whether a grantee exists is looked up again here (an earlier CREATE ROLE made it).
    FOR v_stmt IN SELECT * FROM plunk_sql._privilege_plan() LOOP
        IF v_stmt.in_effect THEN
            CONTINUE;
        END IF;
        IF v_stmt.kind = 'role' AND NOT v_can_create_roles THEN
            RAISE NOTICE 'plunk_sql: % may not create roles; an administrator runs: %;', current_user, v_stmt.statement;
            CONTINUE;
        END IF;
        IF v_stmt.grantee IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS r WHERE r.rolname = v_stmt.grantee) THEN
            RAISE NOTICE 'plunk_sql: role % missing, skipped: %;', v_stmt.grantee, v_stmt.statement;
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
