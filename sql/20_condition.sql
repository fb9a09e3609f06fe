-- The audience compiler: Plunk's condition JSON -> a SQL predicate over
-- `public.contacts AS c` that selects exactly the contacts Plunk v2's own
-- where-builder (SegmentService.buildConditionClause, run through Prisma on
-- PostgreSQL) selects. docs/audience.md has the field x operator table.
--
-- Safety contract: the predicate text is built only from fixed SQL fragments,
-- values passed through format('%L') (literals) and numbers the compiler
-- computed itself. No field name, key or value from the condition ever reaches
-- the SQL parser as code. Every condition Plunk refuses (its validator, or its
-- where-builder failing later) raises SQLSTATE 22023 (invalid_parameter_value)
-- with a message naming the offending filter; so does a condition over the
-- cost limits below and a segment of another project (the two deliberate
-- divergences from Plunk).
--
-- Three-valued on purpose: the fragments are the SQL Prisma generates, so a
-- `data.` test on a contact lacking the path is NULL (neither equals nor
-- notEquals holds) and stays NULL under NOT, exactly as in Plunk.
--
-- Event, email-activity and membership tests are aggregates over the
-- contact's rows: each filter adds a column like
-- coalesce(bool_or(e.name = 'signup' AND e."createdAt" >= t), false) to one
-- per-contact subquery per table (public.events / public.emails scoped to the
-- contact and the project, public.segment_memberships to the contact), and the
-- whole condition is evaluated over those one-row subqueries:
--   EXISTS (SELECT 1 FROM (SELECT <columns> FROM public.emails AS e
--                          WHERE e."contactId" = c.id AND ...) AS em, ...
--           WHERE <condition over c and em.fN>)
-- So a contact costs one indexed scan per table whatever the number of
-- filters, and planning is linear in the condition (a semi/anti join per
-- filter planned in about cubic time, and a subplan per filter cost one index
-- probe per filter and contact). Only identifiers from fixed lists (the
-- emails activity columns) are placed with %I. The compiler reads
-- public.segments and takes no locks.

-- Cost limits (a condition over one raises 22023 naming the limit). They bound
-- the planning and execution work of any accepted condition, segments inlined.
CREATE OR REPLACE FUNCTION plunk_sql.condition_max_depth()
RETURNS integer
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN 8;

COMMENT ON FUNCTION plunk_sql.condition_max_depth() IS
    'Deepest condition nesting compile_condition accepts (segments inlined); deeper input raises 22023.';

CREATE OR REPLACE FUNCTION plunk_sql.condition_max_filters()
RETURNS integer
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN 200;

COMMENT ON FUNCTION plunk_sql.condition_max_filters() IS
    'Most filters plus groups one audience may hold, inlined segments included; more raises 22023.';

CREATE OR REPLACE FUNCTION plunk_sql.condition_max_activity_filters()
RETURNS integer
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN 100;

COMMENT ON FUNCTION plunk_sql.condition_max_activity_filters() IS
    'Most event./email./membership probes one audience may hold (each is a subquery per contact); more raises 22023.';

-- plunk_sql.condition_error(filter, reason): raise the compiler's error.
CREATE OR REPLACE FUNCTION plunk_sql.condition_error(p_what jsonb, p_reason text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_text text := pg_catalog.left(coalesce(p_what::text, 'null'), 300);
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'invalid_parameter_value',
        SCHEMA = 'plunk_sql', CONSTRAINT = 'audience',
        MESSAGE = pg_catalog.format('invalid audience filter %s: %s', v_text, p_reason);
END
$$;

COMMENT ON FUNCTION plunk_sql.condition_error(jsonb, text) IS
    'Raises 22023 "invalid audience filter <json>: <reason>". Used by the condition compiler.';

-- plunk_sql.condition_now_ms(): JavaScript's Date.now() for this transaction
-- (its start, whole milliseconds).
CREATE OR REPLACE FUNCTION plunk_sql.condition_now_ms()
RETURNS numeric
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.floor(EXTRACT(epoch FROM plunk_sql.utc_now()) * 1000);

COMMENT ON FUNCTION plunk_sql.condition_now_ms() IS
    'Transaction start as epoch milliseconds (the compiler''s "now").';

-- plunk_sql.condition_cutoff_ms(filter, for_column): now - value unit as Plunk
-- computes it: new Date(Date.now() - value * 24 * 60 * 60 * 1000) with
-- JavaScript's coercion of value ("7" is 7, true 1, null 0) and double
-- arithmetic, step by step. for_column: the cutoff is compared with a
-- timestamp column, which PostgreSQL cannot do before year 1.
--   22023 a unit other than days/hours/minutes (Plunk's getMilliseconds
--         throws), an amount that is no number, or a cutoff that is no valid
--         date (Plunk's Date or PostgreSQL fails).
CREATE OR REPLACE FUNCTION plunk_sql.condition_cutoff_ms(p_filter jsonb, p_for_column boolean)
RETURNS numeric
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_unit text := CASE WHEN pg_catalog.jsonb_typeof(p_filter -> 'unit') = 'string' THEN p_filter ->> 'unit' END;
    v_x double precision := plunk_sql.js_number(p_filter -> 'value');
    v_t double precision;
BEGIN
    IF v_unit IS NULL OR v_unit NOT IN ('days', 'hours', 'minutes') THEN
        PERFORM plunk_sql.condition_error(
            p_filter, 'unit must be "days", "hours" or "minutes" (Plunk''s where-builder fails on any other)');
    END IF;
    IF v_x = 'NaN'::double precision OR pg_catalog.abs(v_x) > 1e290 THEN
        PERFORM plunk_sql.condition_error(
            p_filter, 'value is no usable time amount (JavaScript reads it as NaN or it overflows a date)');
    END IF;
    v_t := CASE v_unit
        WHEN 'days' THEN v_x * 24 * 60 * 60 * 1000
        WHEN 'hours' THEN v_x * 60 * 60 * 1000
        ELSE v_x * 60 * 1000 END;
    v_t := plunk_sql.condition_now_ms()::double precision - v_t;
    IF pg_catalog.abs(v_t) > 8.64e15 OR (p_for_column AND v_t < -62135596800000) THEN
        PERFORM plunk_sql.condition_error(
            p_filter, 'now minus this amount is no valid date (Plunk''s where-builder fails)');
    END IF;
    RETURN pg_catalog.trunc(v_t::numeric);
END
$$;

COMMENT ON FUNCTION plunk_sql.condition_cutoff_ms(jsonb, boolean) IS
    'Epoch ms of now - value unit, computed as Plunk''s JavaScript does; raises 22023 on a bad unit or amount.';

-- plunk_sql.condition_date_ms(filter): new Date(value).getTime() for a
-- comparison with a timestamp column.
-- Strings are read as V8 reads them (ISO 8601 and its legacy forms such as
-- "April 1, 2025" or "Tue Apr 01 2025 10:00:00 GMT+0200": js_date_ms).
--   22023 an Invalid Date (Prisma refuses it) or a date before year 1
--         (PostgreSQL refuses it).
CREATE OR REPLACE FUNCTION plunk_sql.condition_date_ms(p_filter jsonb)
RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ms numeric := plunk_sql.js_date_value(p_filter -> 'value');
BEGIN
    IF v_ms IS NULL THEN
        PERFORM plunk_sql.condition_error(p_filter, 'value is an invalid date (Plunk''s where-builder fails)');
    ELSIF v_ms < -62135596800000 THEN
        PERFORM plunk_sql.condition_error(
            p_filter, 'value is a date before year 1 (PostgreSQL refuses it, so Plunk fails)');
    END IF;
    RETURN v_ms;
END
$$;

COMMENT ON FUNCTION plunk_sql.condition_date_ms(jsonb) IS
    'Epoch ms of new Date(value) for a timestamp comparison; raises 22023 when Plunk would fail.';

-- plunk_sql.condition_day(value): the UTC day of a date-like string as Plunk's
-- isDateString/getDateRange read it: NULL unless the value is a string that
-- starts YYYY-MM-DD followed by its end or "T" and is a valid JavaScript date;
-- else (start_text, start_ms, next_text) where start_text is
-- "YYYY-MM-DDT00:00:00.000Z" as written, start_ms that instant (rolled over
-- like JavaScript: 2025-02-30 is March 2) and next_text the next day's.
CREATE OR REPLACE FUNCTION plunk_sql.condition_day(p_value jsonb, OUT start_text text, OUT start_ms numeric, OUT next_text text)
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_text text;
    v_ms numeric;
BEGIN
    IF pg_catalog.jsonb_typeof(p_value) IS DISTINCT FROM 'string' THEN
        RETURN;
    END IF;
    v_text := p_value #>> '{}';
    IF v_text !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}(T|$)' THEN
        RETURN;
    END IF;
    v_ms := plunk_sql.js_date_ms(v_text);
    IF v_ms IS NULL THEN
        RETURN;
    END IF;
    start_text := pg_catalog.left(v_text, 10) || 'T00:00:00.000Z';
    start_ms := plunk_sql.js_date_ms(pg_catalog.left(v_text, 10));
    next_text := pg_catalog.split_part(plunk_sql.js_iso(start_ms + 86400000), 'T', 1) || 'T00:00:00.000Z';
END
$$;

COMMENT ON FUNCTION plunk_sql.condition_day(jsonb) IS
    'Plunk''s day range of a date-like string value (NULLs when the value is not date-like). Never raises.';

-- plunk_sql.compile_time_column_filter(column, filter): createdAt/updatedAt,
-- as Prisma compares a DateTime column with new Date(value):
--   equals / notEquals, date-like value: the whole UTC day [start, next) / outside it;
--   equals / notEquals, other value: the exact millisecond;
--   greaterThan ... lessThanOrEqual: against new Date(value);
--   within: >= now - X (inclusive); olderThan: < now - X.
CREATE OR REPLACE FUNCTION plunk_sql.compile_time_column_filter(p_column text, p_filter jsonb)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text := p_filter ->> 'operator';
    v_col text := pg_catalog.format('c.%I', p_column);
    v_day record;
    v_ms numeric;
BEGIN
    CASE v_op
    WHEN 'equals', 'notEquals' THEN
        v_day := plunk_sql.condition_day(p_filter -> 'value');
        IF v_day.start_ms IS NOT NULL THEN
            IF v_day.start_ms < -62135596800000 THEN
                PERFORM plunk_sql.condition_error(
                    p_filter, 'value is a date before year 1 (PostgreSQL refuses it, so Plunk fails)');
            END IF;
            RETURN pg_catalog.format(
                CASE v_op WHEN 'equals' THEN '(%1$s >= plunk_sql.js_timestamp(%2$s) AND %1$s < plunk_sql.js_timestamp(%3$s))'
                          ELSE '(%1$s < plunk_sql.js_timestamp(%2$s) OR %1$s >= plunk_sql.js_timestamp(%3$s))' END,
                v_col, v_day.start_ms, v_day.start_ms + 86400000);
        END IF;
        v_ms := plunk_sql.condition_date_ms(p_filter);
        RETURN pg_catalog.format(
            CASE v_op WHEN 'equals' THEN '(%s = plunk_sql.js_timestamp(%s))'
                      ELSE '(NOT %s = plunk_sql.js_timestamp(%s))' END,
            v_col, v_ms);
    WHEN 'greaterThan', 'lessThan', 'greaterThanOrEqual', 'lessThanOrEqual' THEN
        RETURN pg_catalog.format(
            '(%s %s plunk_sql.js_timestamp(%s))', v_col,
            CASE v_op WHEN 'greaterThan' THEN '>' WHEN 'lessThan' THEN '<'
                      WHEN 'greaterThanOrEqual' THEN '>=' ELSE '<=' END,
            plunk_sql.condition_date_ms(p_filter));
    WHEN 'within' THEN
        RETURN pg_catalog.format('(%s >= plunk_sql.js_timestamp(%s))', v_col, plunk_sql.condition_cutoff_ms(p_filter, true));
    WHEN 'olderThan' THEN
        RETURN pg_catalog.format('(%s < plunk_sql.js_timestamp(%s))', v_col, plunk_sql.condition_cutoff_ms(p_filter, true));
    ELSE
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('operator %s does not apply to field %s (Plunk''s where-builder fails)',
                                        v_op, p_column));
    END CASE;
    RETURN NULL;  -- unreachable: condition_error raises
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_time_column_filter(text, jsonb) IS
    'Predicate for a createdAt/updatedAt filter over contacts AS c; raises 22023 where Plunk fails.';

-- plunk_sql.compile_data_filter(path, filter): a `data.<a>.<b>` filter; path is
-- the field after "data." split on "." (a nested JSON path, as Plunk splits
-- it). E is c.data #> path (NULL when the path is missing or data is NULL), the
-- SQL Prisma generates for each operator:
--   equals x            E = JSON(x)            (date-like x: a JSON string in [day, next day))
--   notEquals x         NOT E = JSON(x)        (date-like x: a JSON string outside it)
--   contains s          E #>> '{}' LIKE '%' || String(s) || '%' AND E is a string
--                       (% and _ in s are wildcards, as in Plunk); notContains: NOT that
--   greaterThan x ...   E > JSON(x) AND E has x's JSON type (x a number or string only)
--   exists / notExists  E is present and not JSON null / the opposite
--   within / olderThan  E is a JSON string >= / < the ISO string of now - X
-- JSON(x) is x as JavaScript round-trips it (numbers as doubles).
CREATE OR REPLACE FUNCTION plunk_sql.compile_data_filter(p_path text[], p_filter jsonb)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text := p_filter ->> 'operator';
    v_value jsonb := p_filter -> 'value';
    v_e text := pg_catalog.format('(c.data #> %L::text[])', p_path);
    v_t text := pg_catalog.format('(c.data #>> %L::text[])', p_path);
    v_day record;
    v_bound jsonb;
BEGIN
    CASE v_op
    WHEN 'equals', 'notEquals' THEN
        v_day := plunk_sql.condition_day(v_value);
        IF v_day.start_ms IS NOT NULL THEN
            RETURN pg_catalog.format(
                CASE v_op
                WHEN 'equals' THEN '(pg_catalog.jsonb_typeof(%1$s) = ''string'' AND %1$s >= %2$L::jsonb AND %1$s < %3$L::jsonb)'
                ELSE '(pg_catalog.jsonb_typeof(%1$s) = ''string'' AND (%1$s < %2$L::jsonb OR %1$s >= %3$L::jsonb))' END,
                v_e, pg_catalog.to_jsonb(v_day.start_text), pg_catalog.to_jsonb(v_day.next_text));
        END IF;
        RETURN pg_catalog.format(
            CASE v_op WHEN 'equals' THEN '(%s = %L::jsonb)' ELSE '(NOT %s = %L::jsonb)' END,
            v_e, plunk_sql.js_json(v_value));
    WHEN 'contains', 'notContains' THEN
        RETURN pg_catalog.format(
            CASE v_op WHEN 'contains' THEN '(%s LIKE %L AND pg_catalog.jsonb_typeof(%s) = ''string'')'
                      ELSE '(NOT (%s LIKE %L AND pg_catalog.jsonb_typeof(%s) = ''string''))' END,
            v_t, '%' || plunk_sql.js_string(v_value) || '%', v_e);
    WHEN 'greaterThan', 'lessThan', 'greaterThanOrEqual', 'lessThanOrEqual' THEN
        IF pg_catalog.jsonb_typeof(v_value) NOT IN ('number', 'string') THEN
            PERFORM plunk_sql.condition_error(
                p_filter, 'value must be a number or a string to compare with (Prisma refuses any other)');
        END IF;
        v_bound := plunk_sql.js_json(v_value);
        IF pg_catalog.jsonb_typeof(v_bound) = 'null' THEN
            PERFORM plunk_sql.condition_error(p_filter, 'value overflows a JavaScript number (Prisma refuses it)');
        END IF;
        RETURN pg_catalog.format(
            '(%1$s %2$s %3$L::jsonb AND pg_catalog.jsonb_typeof(%1$s) = %4$L)', v_e,
            CASE v_op WHEN 'greaterThan' THEN '>' WHEN 'lessThan' THEN '<'
                      WHEN 'greaterThanOrEqual' THEN '>=' ELSE '<=' END,
            v_bound, pg_catalog.jsonb_typeof(v_bound));
    WHEN 'exists' THEN
        RETURN pg_catalog.format('(%1$s IS NOT NULL AND %1$s <> ''null''::jsonb)', v_e);
    WHEN 'notExists' THEN
        RETURN pg_catalog.format('(%1$s IS NULL OR %1$s = ''null''::jsonb)', v_e);
    WHEN 'within', 'olderThan' THEN
        RETURN pg_catalog.format(
            '(%1$s %2$s %3$L::jsonb AND pg_catalog.jsonb_typeof(%1$s) = ''string'')', v_e,
            CASE v_op WHEN 'within' THEN '>=' ELSE '<' END,
            pg_catalog.to_jsonb(plunk_sql.js_iso(plunk_sql.condition_cutoff_ms(p_filter, false))));
    ELSE
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('operator %s does not apply to data fields (Plunk''s where-builder fails)', v_op));
    END CASE;
    RETURN NULL;  -- unreachable: condition_error raises
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_data_filter(text[], jsonb) IS
    'Predicate for a data.<path> filter over contacts AS c (the SQL Prisma builds); raises 22023 where Plunk fails.';

-- plunk_sql.compile_email_filter(filter): the `email` field, as Prisma's
-- mode: 'insensitive' builds it: ILIKE String(value) (equals) or
-- '%' || String(value) || '%' (contains), % and _ unescaped, case folded by
-- the database's own collation; notEquals / notContains: NOT that.
--   22023 another operator, or an equals pattern ending in a lone backslash
--         (PostgreSQL refuses it, so Plunk fails).
CREATE OR REPLACE FUNCTION plunk_sql.compile_email_filter(p_filter jsonb)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text := p_filter ->> 'operator';
    v_text text := plunk_sql.js_string(p_filter -> 'value');
BEGIN
    IF v_op IN ('equals', 'notEquals') AND v_text ~ '(^|[^\\])(\\\\)*\\$' THEN
        PERFORM plunk_sql.condition_error(
            p_filter, 'value ends in an escape character (PostgreSQL refuses the ILIKE pattern, so Plunk fails)');
    END IF;
    CASE v_op
    WHEN 'equals' THEN
        RETURN pg_catalog.format('(c.email ILIKE %L)', v_text);
    WHEN 'notEquals' THEN
        RETURN pg_catalog.format('(NOT c.email ILIKE %L)', v_text);
    WHEN 'contains' THEN
        RETURN pg_catalog.format('(c.email ILIKE %L)', '%' || v_text || '%');
    WHEN 'notContains' THEN
        RETURN pg_catalog.format('(NOT c.email ILIKE %L)', '%' || v_text || '%');
    ELSE
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('operator %s does not apply to field email (Plunk''s where-builder fails)', v_op));
    END CASE;
    RETURN NULL;  -- unreachable: condition_error raises
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_email_filter(jsonb) IS
    'Predicate for the email field over contacts AS c (ILIKE as Prisma builds it); raises 22023 where Plunk fails.';

-- plunk_sql.condition_activity_column(activity): the emails column whose being
-- set means the activity happened, or NULL for an unknown activity.
CREATE OR REPLACE FUNCTION plunk_sql.condition_activity_column(p_activity text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE p_activity
    WHEN 'opened' THEN 'openedAt' WHEN 'open' THEN 'openedAt'
    WHEN 'clicked' THEN 'clickedAt' WHEN 'click' THEN 'clickedAt'
    WHEN 'bounced' THEN 'bouncedAt' WHEN 'bounce' THEN 'bouncedAt'
    WHEN 'complained' THEN 'complainedAt' WHEN 'complaint' THEN 'complainedAt'
    WHEN 'sent' THEN 'sentAt'
    WHEN 'delivered' THEN 'deliveredAt' WHEN 'delivery' THEN 'deliveredAt'
END;

COMMENT ON FUNCTION plunk_sql.condition_activity_column(text) IS
    'emails column of an email.<activity> field (opened/open -> openedAt, ...); NULL when unknown.';

-- plunk_sql.compile_activity_filter(kind, name, filter, project_id): an
-- `event.<name>` (kind 'event') or `email.<activity>` (kind 'email') filter.
--   event: the contact's public.events e with e.name = <name>; time e."createdAt".
--   email: the contact's public.emails e with e.<column> IS NOT NULL; time that column.
-- Both also scoped to the project (rows Plunk writes always are; a row filed
-- under another tenant never counts). "Recent" is time >= now - X (inclusive).
--   triggered          some row             (coalesce(bool_or(row test), false))
--   notTriggered       no row
--   triggeredWithin    some recent row
--   notTriggeredWithin no recent row
--   triggeredOlderThan some row AND no recent row
-- Locks: none.
-- plunk_sql.condition_agg(aggs, kind, test, project_id): the SQL of "some row
-- of the contact passes test" for kind 'em' (public.emails e), 'ev'
-- (public.events e) or 'sm' (public.segment_memberships m).
-- Aggregate mode (aggs does not start with '!exists'): the column reference
-- ("em.f3") of coalesce(bool_or(test), false), added to aggs unless the same
-- one is there already; condition_wrap computes it.
-- EXISTS mode (aggs = {'!exists'}): a plain EXISTS subquery, which the planner
-- turns into a semi-join (fastest for a handful of such filters).
CREATE OR REPLACE FUNCTION plunk_sql.condition_agg(
    INOUT p_aggs text[], p_kind text, p_test text, p_project_id text, OUT p_ref text)
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_expr text := pg_catalog.format('coalesce(bool_or(%s), false)', p_test);
    v_i integer;
BEGIN
    IF p_aggs[1] = '!exists' THEN
        p_ref := CASE p_kind
            WHEN 'em' THEN pg_catalog.format(
                '(EXISTS (SELECT 1 FROM public.emails AS e WHERE e."contactId" = c.id AND e."projectId" = %L AND %s))',
                p_project_id, p_test)
            WHEN 'ev' THEN pg_catalog.format(
                '(EXISTS (SELECT 1 FROM public.events AS e WHERE e."contactId" = c.id AND e."projectId" = %L AND %s))',
                p_project_id, p_test)
            ELSE pg_catalog.format(
                '(EXISTS (SELECT 1 FROM public.segment_memberships AS m WHERE m."contactId" = c.id AND %s))', p_test) END;
        RETURN;
    END IF;
    v_i := pg_catalog.array_position(p_aggs, p_kind || ':' || v_expr);
    IF v_i IS NULL THEN
        p_aggs := p_aggs || (p_kind || ':' || v_expr);
        v_i := pg_catalog.cardinality(p_aggs);
    END IF;
    p_ref := pg_catalog.format('%s.f%s', p_kind, v_i);
END
$$;

COMMENT ON FUNCTION plunk_sql.condition_agg(text[], text, text, text) IS
    'SQL of one event/email/membership test: a per-contact aggregate reference or an EXISTS. Internal.';

-- Most event/email/membership tests a condition compiles to plain EXISTS
-- subqueries (semi/anti joins); above this the per-contact aggregate form is
-- used, whose planning and execution stay linear in the number of filters.
CREATE OR REPLACE FUNCTION plunk_sql.condition_exists_max()
RETURNS integer
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN 4;

COMMENT ON FUNCTION plunk_sql.condition_exists_max() IS
    'Distinct activity tests up to which the compiler emits EXISTS semi-joins rather than per-contact aggregates.';

CREATE OR REPLACE FUNCTION plunk_sql.compile_activity_filter(
    p_kind text,
    p_name text,
    p_filter jsonb,
    p_project_id text,
    INOUT p_aggs text[],
    OUT p_sql text
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text := p_filter ->> 'operator';
    v_kind text;
    v_any text;       -- the row exists
    v_recent text;    -- it exists with its time >= now - X
    v_ref_any text;
    v_ref_recent text;
    v_column text;
BEGIN
    IF p_kind = 'event' THEN
        v_kind := 'ev';
        v_any := pg_catalog.format('e.name = %L', p_name);
        IF v_op IN ('triggeredWithin', 'notTriggeredWithin', 'triggeredOlderThan') THEN
            v_recent := pg_catalog.format('e.name = %L AND e."createdAt" >= plunk_sql.js_timestamp(%s)',
                                          p_name, plunk_sql.condition_cutoff_ms(p_filter, true));
        END IF;
    ELSE
        v_kind := 'em';
        v_column := plunk_sql.condition_activity_column(p_name);
        IF v_column IS NULL THEN
            PERFORM plunk_sql.condition_error(
                p_filter,
                'unknown email activity (Plunk''s where-builder fails): use opened, clicked, bounced, complained, sent or delivered');
        END IF;
        v_any := pg_catalog.format('e.%I IS NOT NULL', v_column);
        IF v_op IN ('triggeredWithin', 'notTriggeredWithin', 'triggeredOlderThan') THEN
            v_recent := pg_catalog.format('e.%I >= plunk_sql.js_timestamp(%s)',
                                          v_column, plunk_sql.condition_cutoff_ms(p_filter, true));
        END IF;
    END IF;
    IF v_op NOT IN ('triggered', 'notTriggered', 'triggeredWithin', 'notTriggeredWithin', 'triggeredOlderThan') THEN
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('operator %s does not apply to %s fields (Plunk''s where-builder fails)', v_op, p_kind));
    END IF;
    IF v_op IN ('triggered', 'notTriggered', 'triggeredOlderThan') THEN
        SELECT x.p_aggs, x.p_ref INTO p_aggs, v_ref_any
        FROM plunk_sql.condition_agg(p_aggs, v_kind, v_any, p_project_id) AS x;
    END IF;
    IF v_recent IS NOT NULL THEN
        SELECT x.p_aggs, x.p_ref INTO p_aggs, v_ref_recent
        FROM plunk_sql.condition_agg(p_aggs, v_kind, v_recent, p_project_id) AS x;
    END IF;
    p_sql := CASE v_op
        WHEN 'triggered' THEN v_ref_any
        WHEN 'notTriggered' THEN '(NOT ' || v_ref_any || ')'
        WHEN 'triggeredWithin' THEN v_ref_recent
        WHEN 'notTriggeredWithin' THEN '(NOT ' || v_ref_recent || ')'
        ELSE '(' || v_ref_any || ' AND NOT ' || v_ref_recent || ')' END;
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_activity_filter(text, text, jsonb, text, text[]) IS
    'Predicate for an event.<name> / email.<activity> filter: a per-contact aggregate over the '
    'contact''s events/emails of the project (see condition_agg); raises 22023 where Plunk fails.';

-- plunk_sql.condition_charge(cost, filters, probes, what): add to the running
-- cost {filters, probes} of one audience; 22023 naming the limit when over.
CREATE OR REPLACE FUNCTION plunk_sql.condition_charge(p_cost integer[], p_filters integer, p_probes integer, p_what jsonb)
RETURNS integer[]
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cost integer[] := ARRAY[p_cost[1] + p_filters, p_cost[2] + p_probes];
BEGIN
    IF v_cost[1] > plunk_sql.condition_max_filters() THEN
        PERFORM plunk_sql.condition_error(p_what, pg_catalog.format(
            'condition over the cost limit: more than %s filters and groups (plunk_sql.condition_max_filters(), segments inlined)',
            plunk_sql.condition_max_filters()));
    END IF;
    IF v_cost[2] > plunk_sql.condition_max_activity_filters() THEN
        PERFORM plunk_sql.condition_error(p_what, pg_catalog.format(
            'condition over the cost limit: more than %s event, email and membership filters (plunk_sql.condition_max_activity_filters(), segments inlined)',
            plunk_sql.condition_max_activity_filters()));
    END IF;
    RETURN v_cost;
END
$$;

COMMENT ON FUNCTION plunk_sql.condition_charge(integer[], integer, integer, jsonb) IS
    'Running cost of an audience; raises 22023 naming condition_max_filters / condition_max_activity_filters when over.';

-- plunk_sql.compile_segment_filter(segment_id, filter, project_id, depth,
-- segments, cost): a `segment.<id>` filter. memberOfSegment is membership;
-- every other operator builds Plunk's notMemberOfSegment form.
--   A STATIC segment, or one with "trackMembership": an active membership
--   (segment_memberships "exitedAt" IS NULL) of the contact.
--   A DYNAMIC segment without "trackMembership": its condition, compiled and
--   inlined one level deeper (p_segments carries the chain, to reject cycles);
--   notMemberOfSegment is NOT of it (three-valued, as Prisma's NOT).
--   22023 unknown segment, segment of another project (a deliberate divergence:
--         Plunk looks it up by id alone), a cycle, a DYNAMIC segment without a
--         valid condition.
-- Locks: none (reads public.segments).
CREATE OR REPLACE FUNCTION plunk_sql.compile_segment_filter(
    p_segment_id text,
    p_filter jsonb,
    p_project_id text,
    p_depth integer,
    p_segments text[],
    INOUT p_cost integer[],
    INOUT p_aggs text[],
    OUT p_sql text
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text := p_filter ->> 'operator';
    v_segment public.segments;
    v_positive text;
BEGIN
    IF p_segment_id = ANY (p_segments) THEN
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('segment %s refers to itself (cycle: %s)',
                                        p_segment_id,
                                        pg_catalog.array_to_string(p_segments || p_segment_id, ' -> ')));
    END IF;
    SELECT * INTO v_segment FROM public.segments AS s WHERE s.id = p_segment_id;
    IF NOT FOUND THEN
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('segment %s does not exist', p_segment_id));
    END IF;
    IF v_segment."projectId" IS DISTINCT FROM p_project_id THEN
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('segment %s belongs to another project', p_segment_id));
    END IF;

    IF v_segment.type::text = 'STATIC' OR v_segment."trackMembership" THEN
        p_cost := plunk_sql.condition_charge(p_cost, 0, 1, p_filter);
        SELECT x.p_aggs, x.p_ref INTO p_aggs, v_positive
        FROM plunk_sql.condition_agg(p_aggs, 'sm', pg_catalog.format(
            'm."segmentId" = %L AND m."exitedAt" IS NULL', v_segment.id), p_project_id) AS x;
    ELSE
        IF v_segment.condition IS NULL OR pg_catalog.jsonb_typeof(v_segment.condition) = 'null' THEN
            PERFORM plunk_sql.condition_error(
                p_filter, pg_catalog.format('dynamic segment %s has no condition', v_segment.id));
        END IF;
        SELECT x.p_cost, x.p_aggs, x.p_sql INTO p_cost, p_aggs, v_positive
        FROM plunk_sql.compile_condition_cost(
            v_segment.condition, p_project_id, p_depth + 1, p_segments || v_segment.id, p_cost, p_aggs) AS x;
    END IF;
    IF v_op = 'memberOfSegment' THEN
        p_sql := v_positive;
    ELSE
        p_sql := '(NOT ' || v_positive || ')';
    END IF;
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_segment_filter(text, jsonb, text, integer, text[], integer[], text[]) IS
    'Predicate for a segment.<id> filter over contacts AS c: memberships (STATIC/trackMembership) or '
    'the inlined condition (DYNAMIC); raises 22023 for unknown, foreign or cyclic segments.';

-- plunk_sql.condition_check_filter(filter): Plunk's validateFilter.
--   22023 not an object, no non-empty string field, an operator outside the 19,
--         memberOfSegment/notMemberOfSegment on a non-segment field, a
--         missing value for the 13 operators that need one, a missing or
--         falsy unit for the 5 time operators.
CREATE OR REPLACE FUNCTION plunk_sql.condition_check_filter(p_filter jsonb)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text;
    v_unit jsonb;
BEGIN
    IF pg_catalog.jsonb_typeof(p_filter) IS DISTINCT FROM 'object' THEN
        PERFORM plunk_sql.condition_error(p_filter, 'a filter must be an object');
    END IF;
    IF pg_catalog.jsonb_typeof(p_filter -> 'field') IS DISTINCT FROM 'string' OR p_filter ->> 'field' = '' THEN
        PERFORM plunk_sql.condition_error(p_filter, 'field must be a non-empty string');
    END IF;
    v_op := CASE WHEN pg_catalog.jsonb_typeof(p_filter -> 'operator') = 'string' THEN p_filter ->> 'operator' END;
    IF v_op IS NULL OR v_op NOT IN (
        'equals', 'notEquals', 'contains', 'notContains', 'greaterThan', 'lessThan',
        'greaterThanOrEqual', 'lessThanOrEqual', 'exists', 'notExists', 'within', 'olderThan',
        'triggered', 'triggeredWithin', 'triggeredOlderThan', 'notTriggered', 'notTriggeredWithin',
        'memberOfSegment', 'notMemberOfSegment')
    THEN
        PERFORM plunk_sql.condition_error(p_filter, 'operator is not one of Plunk''s 19 operators');
    END IF;
    IF v_op IN ('memberOfSegment', 'notMemberOfSegment') THEN
        IF p_filter ->> 'field' NOT LIKE 'segment.%' THEN
            PERFORM plunk_sql.condition_error(p_filter, 'memberOfSegment/notMemberOfSegment need a segment.<id> field');
        END IF;
        RETURN;
    END IF;
    IF v_op NOT IN ('exists', 'notExists', 'triggered', 'notTriggered') AND NOT p_filter ? 'value' THEN
        PERFORM plunk_sql.condition_error(p_filter, pg_catalog.format('operator %s requires a value', v_op));
    END IF;
    IF v_op IN ('within', 'olderThan', 'triggeredWithin', 'triggeredOlderThan', 'notTriggeredWithin') THEN
        v_unit := p_filter -> 'unit';
        IF v_unit IS NULL OR v_unit IN ('null'::jsonb, 'false'::jsonb, '""'::jsonb)
            OR (pg_catalog.jsonb_typeof(v_unit) = 'number' AND (v_unit #>> '{}')::numeric = 0)
        THEN
            PERFORM plunk_sql.condition_error(p_filter, pg_catalog.format('operator %s requires a unit', v_op));
        END IF;
    END IF;
END
$$;

COMMENT ON FUNCTION plunk_sql.condition_check_filter(jsonb) IS
    'Plunk''s validateFilter: raises 22023 naming the filter when Plunk''s validator refuses it.';

-- plunk_sql.compile_filter(filter, project_id, depth, segments, cost): one
-- Filter, dispatched on its field as Plunk's buildFilterCondition does:
-- segment., event., email., data. prefixes, then email, subscribed,
-- createdAt, updatedAt; any other field: 22023 (Plunk's where-builder fails).
CREATE OR REPLACE FUNCTION plunk_sql.compile_filter(
    p_filter jsonb,
    p_project_id text,
    p_depth integer,
    p_segments text[],
    INOUT p_cost integer[],
    INOUT p_aggs text[],
    OUT p_sql text
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_field text;
    v_op text;
BEGIN
    PERFORM plunk_sql.condition_check_filter(p_filter);
    p_cost := plunk_sql.condition_charge(p_cost, 1, 0, p_filter);
    v_field := p_filter ->> 'field';
    v_op := p_filter ->> 'operator';

    IF v_field LIKE 'segment.%' THEN
        SELECT x.p_cost, x.p_aggs, x.p_sql INTO p_cost, p_aggs, p_sql
        FROM plunk_sql.compile_segment_filter(
            pg_catalog.substr(v_field, 9), p_filter, p_project_id, p_depth, p_segments, p_cost, p_aggs) AS x;
    ELSIF v_field LIKE 'event.%' THEN
        p_cost := plunk_sql.condition_charge(p_cost, 0, 1, p_filter);
        SELECT x.p_aggs, x.p_sql INTO p_aggs, p_sql
        FROM plunk_sql.compile_activity_filter('event', pg_catalog.substr(v_field, 7), p_filter, p_project_id, p_aggs) AS x;
    ELSIF v_field LIKE 'email.%' THEN
        p_cost := plunk_sql.condition_charge(p_cost, 0, 1, p_filter);
        SELECT x.p_aggs, x.p_sql INTO p_aggs, p_sql
        FROM plunk_sql.compile_activity_filter('email', pg_catalog.substr(v_field, 7), p_filter, p_project_id, p_aggs) AS x;
    ELSIF v_field LIKE 'data.%' THEN
        p_sql := plunk_sql.compile_data_filter(
            pg_catalog.regexp_split_to_array(pg_catalog.substr(v_field, 6), '\.'), p_filter);
    ELSIF v_field = 'email' THEN
        p_sql := plunk_sql.compile_email_filter(p_filter);
    ELSIF v_field = 'subscribed' THEN
        IF v_op NOT IN ('equals', 'notEquals') THEN
            PERFORM plunk_sql.condition_error(
                p_filter, pg_catalog.format('operator %s does not apply to field subscribed (Plunk''s where-builder fails)', v_op));
        END IF;
        -- Plunk: equals -> subscribed = (value === true); notEquals -> subscribed = (value !== true)
        p_sql := pg_catalog.format('(c.subscribed = %s)',
            CASE WHEN (p_filter -> 'value' = 'true'::jsonb) = (v_op = 'equals') THEN 'true' ELSE 'false' END);
    ELSIF v_field IN ('createdAt', 'updatedAt') THEN
        p_sql := plunk_sql.compile_time_column_filter(v_field, p_filter);
    ELSE
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('unknown field %s (Plunk''s where-builder fails)', v_field));
    END IF;
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_filter(jsonb, text, integer, text[], integer[], text[]) IS
    'Predicate text for one Filter over contacts AS c, values quoted with %L; raises 22023 where Plunk refuses or fails.';

-- plunk_sql.compile_condition_cost(condition, project_id, depth, segments,
-- cost): a Condition {logic, groups} with the running cost. Plunk's
-- validateCondition/validateGroup, then buildConditionClause: a group's
-- filters and its nested condition (when `conditions` is truthy) are ANDed; a
-- group with neither (filters [] and conditions null/false/0/"") matches every
-- contact; groups are joined by the logic.
CREATE OR REPLACE FUNCTION plunk_sql.compile_condition_cost(
    p_condition jsonb,
    p_project_id text,
    p_depth integer,
    p_segments text[],
    INOUT p_cost integer[],
    INOUT p_aggs text[],
    OUT p_sql text
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_logic text;
    v_group jsonb;
    v_filter jsonb;
    v_parts text[];
    v_groups text[] := '{}';
    v_part text;
    v_nested jsonb;
BEGIN
    IF p_project_id IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'null_value_not_allowed',
            SCHEMA = 'plunk_sql',
            MESSAGE = 'compile_condition: project id must not be null';
    END IF;
    IF p_depth >= plunk_sql.condition_max_depth() THEN
        PERFORM plunk_sql.condition_error(
            p_condition, pg_catalog.format('condition over the cost limit: nests deeper than %s levels (plunk_sql.condition_max_depth(), segments inlined)',
                                           plunk_sql.condition_max_depth()));
    END IF;
    IF pg_catalog.jsonb_typeof(p_condition) IS DISTINCT FROM 'object' THEN
        PERFORM plunk_sql.condition_error(p_condition, 'a condition must be an object {"logic", "groups"}');
    END IF;
    v_logic := p_condition ->> 'logic';
    IF pg_catalog.jsonb_typeof(p_condition -> 'logic') IS DISTINCT FROM 'string' OR v_logic NOT IN ('AND', 'OR') THEN
        PERFORM plunk_sql.condition_error(p_condition, 'logic must be "AND" or "OR"');
    END IF;
    IF pg_catalog.jsonb_typeof(p_condition -> 'groups') IS DISTINCT FROM 'array'
        OR pg_catalog.jsonb_array_length(p_condition -> 'groups') = 0
    THEN
        PERFORM plunk_sql.condition_error(p_condition, 'groups must be a non-empty array');
    END IF;

    FOR v_group IN SELECT g FROM pg_catalog.jsonb_array_elements(p_condition -> 'groups') AS g LOOP
        IF pg_catalog.jsonb_typeof(v_group) IS DISTINCT FROM 'object' THEN
            PERFORM plunk_sql.condition_error(v_group, 'a group must be an object {"filters", "conditions"?}');
        END IF;
        IF pg_catalog.jsonb_typeof(v_group -> 'filters') IS DISTINCT FROM 'array' THEN
            PERFORM plunk_sql.condition_error(v_group, 'filters must be an array');
        END IF;
        IF pg_catalog.jsonb_array_length(v_group -> 'filters') = 0 AND NOT v_group ? 'conditions' THEN
            PERFORM plunk_sql.condition_error(v_group, 'a group needs at least one filter or a conditions key');
        END IF;
        p_cost := plunk_sql.condition_charge(p_cost, 1, 0, v_group);
        v_parts := '{}';
        FOR v_filter IN SELECT f FROM pg_catalog.jsonb_array_elements(v_group -> 'filters') AS f LOOP
            SELECT x.p_cost, x.p_aggs, x.p_sql INTO p_cost, p_aggs, v_part
            FROM plunk_sql.compile_filter(v_filter, p_project_id, p_depth, p_segments, p_cost, p_aggs) AS x;
            v_parts := v_parts || v_part;
        END LOOP;
        v_nested := v_group -> 'conditions';
        -- JavaScript truthiness: null, false, 0 and "" are no nested condition
        IF v_nested IS NOT NULL AND v_nested NOT IN ('null'::jsonb, 'false'::jsonb, '""'::jsonb)
            AND NOT (pg_catalog.jsonb_typeof(v_nested) = 'number' AND (v_nested #>> '{}')::numeric = 0)
        THEN
            SELECT x.p_cost, x.p_aggs, x.p_sql INTO p_cost, p_aggs, v_part
            FROM plunk_sql.compile_condition_cost(v_nested, p_project_id, p_depth + 1, p_segments, p_cost, p_aggs) AS x;
            v_parts := v_parts || v_part;
        END IF;
        IF pg_catalog.cardinality(v_parts) = 0 THEN
            v_groups := v_groups || 'true'::text;
        ELSE
            v_groups := v_groups || ('(' || pg_catalog.array_to_string(v_parts, ' AND ') || ')');
        END IF;
    END LOOP;

    p_sql := '(' || pg_catalog.array_to_string(v_groups, ' ' || v_logic || ' ') || ')';
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_condition_cost(jsonb, text, integer, text[], integer[], text[]) IS
    'compile_condition with the running cost {filters, probes} and per-contact aggregates; raises 22023 naming the filter or the limit.';

-- plunk_sql.condition_wrap(sql, aggs, project_id): the condition text over
-- contacts AS c, its per-contact aggregates (condition_agg) computed in one
-- subquery per table: EXISTS (SELECT 1 FROM (...) AS em, (...) AS ev, (...) AS sm
-- WHERE <sql>), which holds exactly when <sql> is true.
CREATE OR REPLACE FUNCTION plunk_sql.condition_wrap(p_sql text, p_aggs text[], p_project_id text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_from text[] := '{}';
    v_kind text;
    v_cols text;
BEGIN
    IF pg_catalog.cardinality(p_aggs) = 0 OR p_aggs[1] = '!exists' THEN
        RETURN p_sql;
    END IF;
    FOREACH v_kind IN ARRAY ARRAY['em', 'ev', 'sm'] LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('%s AS f%s', pg_catalog.substr(a.x, 4), a.n), ', ' ORDER BY a.n)
        INTO v_cols
        FROM pg_catalog.unnest(p_aggs) WITH ORDINALITY AS a(x, n)
        WHERE pg_catalog.left(a.x, 3) = v_kind || ':';
        CONTINUE WHEN v_cols IS NULL;
        v_from := v_from || CASE v_kind
            WHEN 'em' THEN pg_catalog.format(
                '(SELECT %s FROM public.emails AS e WHERE e."contactId" = c.id AND e."projectId" = %L) AS em',
                v_cols, p_project_id)
            WHEN 'ev' THEN pg_catalog.format(
                '(SELECT %s FROM public.events AS e WHERE e."contactId" = c.id AND e."projectId" = %L) AS ev',
                v_cols, p_project_id)
            ELSE pg_catalog.format(
                '(SELECT %s FROM public.segment_memberships AS m WHERE m."contactId" = c.id) AS sm', v_cols) END;
    END LOOP;
    RETURN pg_catalog.format('(EXISTS (SELECT 1 FROM %s WHERE %s))', pg_catalog.array_to_string(v_from, ', '), p_sql);
END
$$;

COMMENT ON FUNCTION plunk_sql.condition_wrap(text, text[], text) IS
    'Wraps a compiled condition and its per-contact aggregates into one predicate over contacts AS c. Internal.';

-- plunk_sql.compile_condition(condition, project_id, depth, segments): the
-- predicate text over public.contacts AS c for a Plunk condition.
--   22023 anything Plunk's validator refuses or its where-builder fails on, a
--         segment of another project, a condition over the cost limits;
--   22004 null project id.
CREATE OR REPLACE FUNCTION plunk_sql.compile_condition(
    p_condition jsonb,
    p_project_id text,
    p_depth integer DEFAULT 0,
    p_segments text[] DEFAULT '{}'
)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sql text;
    v_aggs text[];
BEGIN
    SELECT x.p_sql, x.p_aggs INTO v_sql, v_aggs
    FROM plunk_sql.compile_condition_cost(p_condition, p_project_id, p_depth, p_segments, ARRAY[0, 0], '{}') AS x;
    IF pg_catalog.cardinality(v_aggs) BETWEEN 1 AND plunk_sql.condition_exists_max() THEN
        -- A handful of activity tests: plain EXISTS (semi/anti joins) plan fast and run fastest.
        SELECT x.p_sql INTO v_sql
        FROM plunk_sql.compile_condition_cost(p_condition, p_project_id, p_depth, p_segments, ARRAY[0, 0],
                                              ARRAY['!exists']) AS x;
        RETURN v_sql;
    END IF;
    RETURN plunk_sql.condition_wrap(v_sql, v_aggs, p_project_id);
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_condition(jsonb, text, integer, text[]) IS
    'Predicate text over public.contacts AS c for a Plunk condition (values only as %L literals); raises 22023 naming the offending filter or limit.';

-- Superseded compiler entry points of earlier releases (other signatures).
DROP FUNCTION IF EXISTS plunk_sql.compile_filter(jsonb, text, integer, text[]);
DROP FUNCTION IF EXISTS plunk_sql.compile_filter(jsonb, text, integer, text[], integer[]);
DROP FUNCTION IF EXISTS plunk_sql.compile_segment_filter(text, jsonb, text, integer, text[], integer[]);
DROP FUNCTION IF EXISTS plunk_sql.compile_condition_cost(jsonb, text, integer, text[], integer[]);
DROP FUNCTION IF EXISTS plunk_sql.compile_activity_filter(text, text, jsonb, text);
DROP FUNCTION IF EXISTS plunk_sql.compile_activity_filter(text, text, jsonb, text[]);
DROP FUNCTION IF EXISTS plunk_sql.condition_agg(text[], text, text);
DROP FUNCTION IF EXISTS plunk_sql.compile_segment_filter(text, jsonb, text, integer, text[]);
DROP FUNCTION IF EXISTS plunk_sql.compile_data_filter(text, jsonb);
DROP FUNCTION IF EXISTS plunk_sql.condition_interval(jsonb);
DROP FUNCTION IF EXISTS plunk_sql.condition_timestamp(jsonb);
DROP FUNCTION IF EXISTS plunk_sql.condition_string(jsonb);
DROP FUNCTION IF EXISTS plunk_sql.condition_lower(text);
DROP FUNCTION IF EXISTS plunk_sql.condition_max_length();

-- plunk_sql.audience_predicate(campaign): the whole WHERE text of a campaign's
-- audience over contacts AS c: its project, consent unless TRANSACTIONAL, and
-- the ALL / SEGMENT / FILTERED audience.
--   22023 a segment that is missing, of another project, or without condition;
--         an invalid condition.
CREATE OR REPLACE FUNCTION plunk_sql.audience_predicate(p_campaign public.campaigns)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_base text := pg_catalog.format('c."projectId" = %L', p_campaign."projectId");
    v_segment public.segments;
BEGIN
    IF p_campaign.type::text <> 'TRANSACTIONAL' THEN
        v_base := v_base || ' AND c.subscribed';
    END IF;

    CASE p_campaign."audienceType"::text
    WHEN 'ALL' THEN
        RETURN v_base;
    WHEN 'FILTERED' THEN
        IF p_campaign."audienceCondition" IS NULL
            OR pg_catalog.jsonb_typeof(p_campaign."audienceCondition") = 'null'
        THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                SCHEMA = 'plunk_sql', CONSTRAINT = 'audience',
                MESSAGE = pg_catalog.format('campaign %s has a FILTERED audience but no audienceCondition', p_campaign.id);
        END IF;
        RETURN v_base || ' AND ' || plunk_sql.compile_condition(p_campaign."audienceCondition", p_campaign."projectId");
    WHEN 'SEGMENT' THEN
        SELECT * INTO v_segment FROM public.segments AS s WHERE s.id = p_campaign."segmentId";
        IF NOT FOUND THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                SCHEMA = 'plunk_sql', CONSTRAINT = 'audience',
                MESSAGE = pg_catalog.format('campaign %s targets segment %s, which does not exist',
                                            p_campaign.id, coalesce(p_campaign."segmentId", 'null'));
        END IF;
        IF v_segment."projectId" <> p_campaign."projectId" THEN
            -- Plunk looks segments up by id alone; never let another tenant's
            -- segment define (or widen) this audience.
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                SCHEMA = 'plunk_sql', CONSTRAINT = 'audience',
                MESSAGE = pg_catalog.format('campaign %s targets segment %s, which belongs to another project',
                                            p_campaign.id, v_segment.id);
        END IF;
        IF v_segment.type::text = 'STATIC' THEN
            RETURN v_base || pg_catalog.format(
                ' AND EXISTS (SELECT 1 FROM public.segment_memberships AS m'
                ' WHERE m."contactId" = c.id AND m."segmentId" = %L AND m."exitedAt" IS NULL)',
                v_segment.id);
        END IF;
        IF v_segment.condition IS NULL OR pg_catalog.jsonb_typeof(v_segment.condition) = 'null' THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                SCHEMA = 'plunk_sql', CONSTRAINT = 'audience',
                MESSAGE = pg_catalog.format('dynamic segment %s has no condition', v_segment.id);
        END IF;
        RETURN v_base || ' AND ' || plunk_sql.compile_condition(
            v_segment.condition, p_campaign."projectId", 0, ARRAY[v_segment.id]);
    ELSE
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            SCHEMA = 'plunk_sql', CONSTRAINT = 'audience',
            MESSAGE = pg_catalog.format('campaign %s has unsupported audienceType %s',
                                        p_campaign.id, p_campaign."audienceType");
    END CASE;
END
$$;

COMMENT ON FUNCTION plunk_sql.audience_predicate(public.campaigns) IS
    'WHERE text over public.contacts AS c selecting a campaign''s audience now; raises 22023 for an invalid audience.';
