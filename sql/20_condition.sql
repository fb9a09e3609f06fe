-- The audience compiler: Plunk's condition JSON -> a SQL predicate over
-- `public.contacts AS c`.
--
-- Safety contract: the predicate text is built only from fixed SQL fragments
-- and values passed through format('%L') (literals) after being validated and
-- normalised here. No field name, key or value from the condition ever reaches
-- the SQL parser as code. Every malformed condition raises SQLSTATE 22023
-- (invalid_parameter_value) with a message naming the offending filter.
--
-- Every fragment is two-valued (never NULL): negated operators are the exact
-- complement of their positive form, including for contacts whose `data` lacks
-- the key.
--
-- Fields: email, subscribed, createdAt, updatedAt, data.<key>, event.<name>,
-- email.<activity>, segment.<id> (docs/audience-grammar.md has the table). Event, email
-- activity and membership tests are bare [NOT] EXISTS over public.events /
-- public.emails / public.segment_memberships scoped to the contact and the
-- project: semi/anti joins under AND, indexed probes under OR. The only
-- identifiers placed with %I come from fixed lists (contact columns, the
-- emails activity columns), never from the input. The compiler reads
-- public.segments and pg_catalog.pg_collation and takes no locks.

-- Deepest nesting of conditions accepted (a Condition inside a Group inside ...).
CREATE OR REPLACE FUNCTION plunk_sql.condition_max_depth()
RETURNS integer
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN 8;

COMMENT ON FUNCTION plunk_sql.condition_max_depth() IS
    'Deepest condition nesting compile_condition accepts; deeper input raises 22023.';

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

-- plunk_sql.condition_interval(filter): the validated "value unit" of a time
-- operator as an interval literal's text.
CREATE OR REPLACE FUNCTION plunk_sql.condition_interval(p_filter jsonb)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_unit text := p_filter ->> 'unit';
    v_amount numeric;
    -- About a century in each unit: enough for any audience, small enough
    -- that now() - interval never overflows.
    v_max numeric := CASE v_unit WHEN 'days' THEN 36500 WHEN 'hours' THEN 876000 WHEN 'minutes' THEN 52560000 END;
BEGIN
    IF pg_catalog.jsonb_typeof(p_filter -> 'unit') IS DISTINCT FROM 'string' OR v_max IS NULL THEN
        PERFORM plunk_sql.condition_error(p_filter, 'unit must be one of "days", "hours", "minutes"');
    END IF;
    IF pg_catalog.jsonb_typeof(p_filter -> 'value') IS DISTINCT FROM 'number' THEN
        PERFORM plunk_sql.condition_error(p_filter, 'value must be a number');
    END IF;
    v_amount := (p_filter ->> 'value')::numeric;
    IF v_amount < 0 OR v_amount > v_max THEN
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('value must be between 0 and %s %s', v_max, v_unit));
    END IF;
    RETURN pg_catalog.format('%s %s', v_amount, v_unit);
END
$$;

COMMENT ON FUNCTION plunk_sql.condition_interval(jsonb) IS
    'Validated interval text ("7 days") of a time filter; raises 22023 on a bad value or unit.';

-- plunk_sql.condition_timestamp(filter): the filter's value as a UTC timestamp.
CREATE OR REPLACE FUNCTION plunk_sql.condition_timestamp(p_filter jsonb)
RETURNS timestamp
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ts timestamp := plunk_sql.jsonb_utc_timestamp(p_filter -> 'value');
BEGIN
    IF v_ts IS NULL THEN
        PERFORM plunk_sql.condition_error(p_filter, 'value must be an ISO-8601 date (YYYY-MM-DD) or timestamp');
    END IF;
    RETURN v_ts;
END
$$;

COMMENT ON FUNCTION plunk_sql.condition_timestamp(jsonb) IS
    'The filter value as UTC timestamp; raises 22023 unless it is an ISO-8601 date or timestamp string.';

-- plunk_sql.condition_string(filter): the filter's value, which must be a string.
CREATE OR REPLACE FUNCTION plunk_sql.condition_string(p_filter jsonb)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.jsonb_typeof(p_filter -> 'value') IS DISTINCT FROM 'string' THEN
        PERFORM plunk_sql.condition_error(p_filter, 'value must be a string');
    END IF;
    RETURN p_filter ->> 'value';
END
$$;

COMMENT ON FUNCTION plunk_sql.condition_string(jsonb) IS
    'The filter value as text; raises 22023 unless it is a JSON string.';

-- plunk_sql.compile_time_column_filter(column, filter): createdAt/updatedAt.
CREATE OR REPLACE FUNCTION plunk_sql.compile_time_column_filter(p_column text, p_filter jsonb)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text := p_filter ->> 'operator';
    v_col text := pg_catalog.format('c.%I', p_column);
    v_day timestamp;
BEGIN
    CASE v_op
    WHEN 'equals', 'notEquals' THEN
        v_day := pg_catalog.date_trunc('day', plunk_sql.condition_timestamp(p_filter));
        RETURN pg_catalog.format(
            '%s(%s >= %L::timestamp AND %s < %L::timestamp)',
            CASE v_op WHEN 'notEquals' THEN 'NOT ' ELSE '' END,
            v_col, v_day, v_col, v_day + interval '1 day');
    WHEN 'greaterThan', 'lessThan', 'greaterThanOrEqual', 'lessThanOrEqual' THEN
        RETURN pg_catalog.format(
            '(%s %s %L::timestamp)', v_col,
            CASE v_op WHEN 'greaterThan' THEN '>' WHEN 'lessThan' THEN '<'
                      WHEN 'greaterThanOrEqual' THEN '>=' ELSE '<=' END,
            plunk_sql.condition_timestamp(p_filter));
    WHEN 'within' THEN
        RETURN pg_catalog.format(
            '(%s > plunk_sql.utc_now() - %L::interval)', v_col, plunk_sql.condition_interval(p_filter));
    WHEN 'olderThan' THEN
        RETURN pg_catalog.format(
            '(%s < plunk_sql.utc_now() - %L::interval)', v_col, plunk_sql.condition_interval(p_filter));
    ELSE
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('operator %s is not supported on field %s', coalesce(v_op, 'null'), p_column));
    END CASE;
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_time_column_filter(text, jsonb) IS
    'Predicate for a createdAt/updatedAt filter over contacts AS c; raises 22023 on bad input.';

-- plunk_sql.compile_data_filter(key, filter): a `data.<key>` filter.
CREATE OR REPLACE FUNCTION plunk_sql.compile_data_filter(p_key text, p_filter jsonb)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text := p_filter ->> 'operator';
    v_value jsonb := p_filter -> 'value';
    v_get text := pg_catalog.format('(c.data -> %L)', p_key);
    v_day timestamp;
    v_positive text;
BEGIN
    IF v_op IN ('equals', 'notEquals') THEN
        IF v_value IS NULL THEN
            PERFORM plunk_sql.condition_error(p_filter, 'value is required');
        END IF;
        IF pg_catalog.jsonb_typeof(v_value) = 'string' AND (v_value #>> '{}') ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' THEN
            -- A date compares the whole UTC day of the ISO date stored under the key.
            v_day := plunk_sql.condition_timestamp(p_filter);
            v_positive := pg_catalog.format(
                '(plunk_sql.jsonb_utc_timestamp(%s) >= %L::timestamp AND plunk_sql.jsonb_utc_timestamp(%s) < %L::timestamp)',
                v_get, v_day, v_get, v_day + interval '1 day');
        ELSE
            -- Containment uses Plunk's GIN index on contacts.data; the equality
            -- keeps arrays and objects exact (containment alone is a subset test).
            v_positive := pg_catalog.format(
                '(c.data @> %L::jsonb AND %s = %L::jsonb)',
                pg_catalog.jsonb_build_object(p_key, v_value), v_get, v_value);
        END IF;
    ELSIF v_op IN ('contains', 'notContains') THEN
        v_positive := pg_catalog.format(
            '(CASE WHEN pg_catalog.jsonb_typeof(%s) = ''string'' THEN pg_catalog.strpos(c.data ->> %L, %L) > 0 ELSE false END)',
            v_get, p_key, plunk_sql.condition_string(p_filter));
    ELSIF v_op IN ('greaterThan', 'lessThan', 'greaterThanOrEqual', 'lessThanOrEqual') THEN
        IF pg_catalog.jsonb_typeof(v_value) IS DISTINCT FROM 'number' THEN
            PERFORM plunk_sql.condition_error(p_filter, 'value must be a number');
        END IF;
        RETURN pg_catalog.format(
            '(CASE WHEN pg_catalog.jsonb_typeof(%s) = ''number'' THEN (c.data ->> %L)::numeric %s %L::numeric ELSE false END)',
            v_get, p_key,
            CASE v_op WHEN 'greaterThan' THEN '>' WHEN 'lessThan' THEN '<'
                      WHEN 'greaterThanOrEqual' THEN '>=' ELSE '<=' END,
            v_value #>> '{}');
    ELSIF v_op IN ('exists', 'notExists') THEN
        v_positive := pg_catalog.format(
            '(c.data ? %L AND pg_catalog.jsonb_typeof(%s) <> ''null'')', p_key, v_get);
    ELSIF v_op = 'within' THEN
        RETURN pg_catalog.format(
            'coalesce(plunk_sql.jsonb_utc_timestamp(%s) > plunk_sql.utc_now() - %L::interval, false)',
            v_get, plunk_sql.condition_interval(p_filter));
    ELSIF v_op = 'olderThan' THEN
        RETURN pg_catalog.format(
            'coalesce(plunk_sql.jsonb_utc_timestamp(%s) < plunk_sql.utc_now() - %L::interval, false)',
            v_get, plunk_sql.condition_interval(p_filter));
    ELSE
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('operator %s is not supported on data fields', coalesce(v_op, 'null')));
    END IF;

    IF v_op IN ('notEquals', 'notContains', 'notExists') THEN
        RETURN pg_catalog.format('(NOT coalesce(%s, false))', v_positive);
    END IF;
    RETURN pg_catalog.format('coalesce(%s, false)', v_positive);
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_data_filter(text, jsonb) IS
    'Predicate for a data.<key> filter over contacts AS c; raises 22023 on bad input.';

-- Longest predicate text compile_condition returns (a bound on the work a
-- condition, with the segments it inlines, can cause).
CREATE OR REPLACE FUNCTION plunk_sql.condition_max_length()
RETURNS integer
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN 1000000;

COMMENT ON FUNCTION plunk_sql.condition_max_length() IS
    'Longest predicate text (characters) compile_condition builds; a larger condition raises 22023.';

-- plunk_sql.condition_lower(expr): SQL text lower-casing a text expression for
-- the case-insensitive `email` field. Uses the ICU root collation when the
-- server has it, so non-ASCII letters fold the same in every database
-- whatever its locale (a C-locale database folds ASCII only otherwise).
-- p_expr is compiler-made SQL text (c.email or a %L literal), never input.
-- Locks: none (reads pg_collation).
CREATE OR REPLACE FUNCTION plunk_sql.condition_lower(p_expr text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
RETURN CASE
    WHEN EXISTS (
        SELECT 1 FROM pg_catalog.pg_collation AS k
        WHERE k.collname = 'und-x-icu' AND k.collnamespace = 'pg_catalog'::regnamespace
    )
    THEN pg_catalog.format('pg_catalog.lower(%s COLLATE pg_catalog."und-x-icu")', p_expr)
    ELSE pg_catalog.format('pg_catalog.lower(%s)', p_expr)
END;

COMMENT ON FUNCTION plunk_sql.condition_lower(text) IS
    'SQL text lower-casing a compiler-made expression (ICU root collation when available). Internal to the compiler.';

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
--
-- The rows tested are the contact's rows of the campaign's project:
--   event: public.events e WHERE e."contactId" = c.id AND e."projectId" = project
--          AND e.name = <name>; its time is e."createdAt".
--   email: public.emails e WHERE e."contactId" = c.id AND e."projectId" = project
--          AND e.<activity column> IS NOT NULL; its time is that column.
-- "Newer than now - X" is time > plunk_sql.utc_now() - X (now = transaction start).
--   triggered          EXISTS row
--   notTriggered       NOT EXISTS row                      (complement of triggered)
--   triggeredWithin    EXISTS row newer than now - X
--   notTriggeredWithin NOT EXISTS row newer than now - X   (complement of triggeredWithin)
--   triggeredOlderThan EXISTS row AND NOT EXISTS row newer than now - X
-- Each test is a bare [NOT] EXISTS, so under AND the planner turns it into a
-- semi/anti join over Plunk's indexes (events ("contactId", name, "createdAt"),
-- emails ("contactId", ...)); under OR it is an indexed probe, never a query
-- issued per contact. Two-valued by construction.
-- Locks: none.
CREATE OR REPLACE FUNCTION plunk_sql.compile_activity_filter(
    p_kind text,
    p_name text,
    p_filter jsonb,
    p_project_id text
)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text := p_filter ->> 'operator';
    v_rows text;
    v_time text;
    v_column text;
    v_recent text;
BEGIN
    IF p_kind = 'event' THEN
        v_rows := pg_catalog.format(
            'SELECT 1 FROM public.events AS e WHERE e."contactId" = c.id AND e."projectId" = %L AND e.name = %L',
            p_project_id, p_name);
        v_time := 'e."createdAt"';
    ELSE
        v_column := plunk_sql.condition_activity_column(p_name);
        IF v_column IS NULL THEN
            PERFORM plunk_sql.condition_error(
                p_filter,
                'unknown email activity: use opened, clicked, bounced, complained, sent or delivered');
        END IF;
        v_rows := pg_catalog.format(
            'SELECT 1 FROM public.emails AS e WHERE e."contactId" = c.id AND e."projectId" = %L AND e.%I IS NOT NULL',
            p_project_id, v_column);
        v_time := pg_catalog.format('e.%I', v_column);
    END IF;

    CASE v_op
    WHEN 'triggered' THEN
        RETURN pg_catalog.format('(EXISTS (%s))', v_rows);
    WHEN 'notTriggered' THEN
        RETURN pg_catalog.format('(NOT EXISTS (%s))', v_rows);
    WHEN 'triggeredWithin', 'notTriggeredWithin', 'triggeredOlderThan' THEN
        v_recent := pg_catalog.format(
            '%s AND %s > plunk_sql.utc_now() - %L::interval',
            v_rows, v_time, plunk_sql.condition_interval(p_filter));
        IF v_op = 'triggeredWithin' THEN
            RETURN pg_catalog.format('(EXISTS (%s))', v_recent);
        ELSIF v_op = 'notTriggeredWithin' THEN
            RETURN pg_catalog.format('(NOT EXISTS (%s))', v_recent);
        END IF;
        RETURN pg_catalog.format('(EXISTS (%s) AND NOT EXISTS (%s))', v_rows, v_recent);
    ELSE
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('operator %s is not supported on %s fields', v_op, p_kind));
    END CASE;
    RETURN NULL;  -- unreachable: condition_error raises
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_activity_filter(text, text, jsonb, text) IS
    'Predicate for an event.<name> / email.<activity> filter over contacts AS c (EXISTS over the '
    'contact''s events/emails of the project); raises 22023 on a bad operator, activity, value or unit.';

-- plunk_sql.compile_segment_filter(segment_id, filter, project_id, depth, segments):
-- a `segment.<id>` filter (memberOfSegment / notMemberOfSegment).
--   A STATIC segment, or one with "trackMembership": an active membership
--   (segment_memberships "exitedAt" IS NULL) of the contact.
--   A DYNAMIC segment without "trackMembership": its condition, compiled and
--   inlined one level deeper (p_segments carries the chain, to reject cycles).
--   notMemberOfSegment is the exact complement of memberOfSegment.
--   22023 unknown segment, segment of another project (never an empty set, never
--         another tenant's contacts), a cycle, a DYNAMIC segment without condition.
-- Locks: none (reads public.segments).
CREATE OR REPLACE FUNCTION plunk_sql.compile_segment_filter(
    p_segment_id text,
    p_filter jsonb,
    p_project_id text,
    p_depth integer,
    p_segments text[]
)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_op text := p_filter ->> 'operator';
    v_segment public.segments;
    v_positive text;
BEGIN
    IF v_op NOT IN ('memberOfSegment', 'notMemberOfSegment') THEN
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('operator %s is not supported on segment fields', v_op));
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
        v_positive := pg_catalog.format(
            '(EXISTS (SELECT 1 FROM public.segment_memberships AS m'
            ' WHERE m."contactId" = c.id AND m."segmentId" = %L AND m."exitedAt" IS NULL))',
            v_segment.id);
        IF v_op = 'notMemberOfSegment' THEN
            RETURN '(NOT ' || v_positive || ')';
        END IF;
        RETURN v_positive;
    END IF;

    IF v_segment.id = ANY (p_segments) THEN
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('segment %s refers to itself (cycle: %s)',
                                        v_segment.id,
                                        pg_catalog.array_to_string(p_segments || v_segment.id, ' -> ')));
    END IF;
    IF v_segment.condition IS NULL OR pg_catalog.jsonb_typeof(v_segment.condition) = 'null' THEN
        PERFORM plunk_sql.condition_error(
            p_filter, pg_catalog.format('dynamic segment %s has no condition', v_segment.id));
    END IF;
    v_positive := plunk_sql.compile_condition(
        v_segment.condition, p_project_id, p_depth + 1, p_segments || v_segment.id);
    IF v_op = 'notMemberOfSegment' THEN
        RETURN pg_catalog.format('(NOT coalesce(%s, false))', v_positive);
    END IF;
    RETURN v_positive;
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_segment_filter(text, jsonb, text, integer, text[]) IS
    'Predicate for a segment.<id> filter over contacts AS c: memberships (STATIC/trackMembership) or '
    'the inlined condition (DYNAMIC); raises 22023 for unknown, foreign or cyclic segments.';

-- plunk_sql.compile_filter(filter, project_id, depth, segments): one Filter.
-- p_segments carries the segment ids being inlined, to reject cycles.
CREATE OR REPLACE FUNCTION plunk_sql.compile_filter(
    p_filter jsonb,
    p_project_id text,
    p_depth integer,
    p_segments text[]
)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_field text;
    v_op text;
    v_email text;
BEGIN
    IF pg_catalog.jsonb_typeof(p_filter) IS DISTINCT FROM 'object' THEN
        PERFORM plunk_sql.condition_error(p_filter, 'a filter must be an object');
    END IF;
    IF pg_catalog.jsonb_typeof(p_filter -> 'field') IS DISTINCT FROM 'string' THEN
        PERFORM plunk_sql.condition_error(p_filter, 'field must be a string');
    END IF;
    IF pg_catalog.jsonb_typeof(p_filter -> 'operator') IS DISTINCT FROM 'string' THEN
        PERFORM plunk_sql.condition_error(p_filter, 'operator must be a string');
    END IF;
    v_field := p_filter ->> 'field';
    v_op := p_filter ->> 'operator';

    IF v_field = 'email' THEN
        -- Case-insensitive: both sides lower-cased (ICU root collation when available).
        v_email := plunk_sql.condition_lower('c.email');
        CASE v_op
        WHEN 'equals' THEN
            RETURN pg_catalog.format('(%s = %s)', v_email,
                plunk_sql.condition_lower(pg_catalog.quote_literal(plunk_sql.condition_string(p_filter))));
        WHEN 'notEquals' THEN
            RETURN pg_catalog.format('(%s <> %s)', v_email,
                plunk_sql.condition_lower(pg_catalog.quote_literal(plunk_sql.condition_string(p_filter))));
        WHEN 'contains' THEN
            RETURN pg_catalog.format('(pg_catalog.strpos(%s, %s) > 0)', v_email,
                plunk_sql.condition_lower(pg_catalog.quote_literal(plunk_sql.condition_string(p_filter))));
        WHEN 'notContains' THEN
            RETURN pg_catalog.format('(pg_catalog.strpos(%s, %s) = 0)', v_email,
                plunk_sql.condition_lower(pg_catalog.quote_literal(plunk_sql.condition_string(p_filter))));
        ELSE
            PERFORM plunk_sql.condition_error(p_filter, pg_catalog.format('operator %s is not supported on field email', v_op));
        END CASE;
    ELSIF v_field = 'subscribed' THEN
        IF v_op NOT IN ('equals', 'notEquals') THEN
            PERFORM plunk_sql.condition_error(p_filter, pg_catalog.format('operator %s is not supported on field subscribed', v_op));
        END IF;
        IF pg_catalog.jsonb_typeof(p_filter -> 'value') IS DISTINCT FROM 'boolean' THEN
            PERFORM plunk_sql.condition_error(p_filter, 'value must be a boolean');
        END IF;
        RETURN pg_catalog.format(
            '(c.subscribed %s %L::boolean)',
            CASE v_op WHEN 'equals' THEN '=' ELSE '<>' END,
            p_filter ->> 'value');
    ELSIF v_field IN ('createdAt', 'updatedAt') THEN
        RETURN plunk_sql.compile_time_column_filter(v_field, p_filter);
    ELSIF v_field LIKE 'data.%' THEN
        IF pg_catalog.length(v_field) = 5 THEN
            PERFORM plunk_sql.condition_error(p_filter, 'data field needs a key: data.<key>');
        END IF;
        RETURN plunk_sql.compile_data_filter(pg_catalog.substr(v_field, 6), p_filter);
    ELSIF v_field LIKE 'event.%' THEN
        IF pg_catalog.length(v_field) = 6 THEN
            PERFORM plunk_sql.condition_error(p_filter, 'event field needs a name: event.<name>');
        END IF;
        RETURN plunk_sql.compile_activity_filter('event', pg_catalog.substr(v_field, 7), p_filter, p_project_id);
    ELSIF v_field LIKE 'email.%' THEN
        RETURN plunk_sql.compile_activity_filter('email', pg_catalog.substr(v_field, 7), p_filter, p_project_id);
    ELSIF v_field LIKE 'segment.%' THEN
        IF pg_catalog.length(v_field) = 8 THEN
            PERFORM plunk_sql.condition_error(p_filter, 'segment field needs an id: segment.<id>');
        END IF;
        RETURN plunk_sql.compile_segment_filter(
            pg_catalog.substr(v_field, 9), p_filter, p_project_id, p_depth, p_segments);
    END IF;
    PERFORM plunk_sql.condition_error(p_filter, pg_catalog.format('unknown field %s', v_field));
    RETURN NULL;  -- unreachable: condition_error raises
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_filter(jsonb, text, integer, text[]) IS
    'Predicate text for one Filter over contacts AS c, values quoted with %L; raises 22023 on bad input.';

-- plunk_sql.compile_condition(condition, project_id, depth, segments): a
-- Condition {logic, groups}. Groups are joined by the logic; inside a group the
-- filters and the nested condition are ANDed.
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
    v_logic text;
    v_group jsonb;
    v_filter jsonb;
    v_parts text[];
    v_groups text[] := '{}';
    v_length bigint := 0;
    v_part text;
BEGIN
    IF p_project_id IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'null_value_not_allowed',
            SCHEMA = 'plunk_sql',
            MESSAGE = 'compile_condition: project id must not be null';
    END IF;
    IF p_depth >= plunk_sql.condition_max_depth() THEN
        PERFORM plunk_sql.condition_error(
            p_condition, pg_catalog.format('conditions nest deeper than %s levels', plunk_sql.condition_max_depth()));
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
        IF v_group ? 'filters' AND pg_catalog.jsonb_typeof(v_group -> 'filters') IS DISTINCT FROM 'array' THEN
            PERFORM plunk_sql.condition_error(v_group, 'filters must be an array');
        END IF;
        v_parts := '{}';
        FOR v_filter IN
            SELECT f FROM pg_catalog.jsonb_array_elements(coalesce(v_group -> 'filters', '[]')) AS f
        LOOP
            v_part := plunk_sql.compile_filter(v_filter, p_project_id, p_depth, p_segments);
            v_parts := v_parts || v_part;
            v_length := v_length + pg_catalog.length(v_part) + 7;
            IF v_length > plunk_sql.condition_max_length() THEN
                PERFORM plunk_sql.condition_error(
                    v_filter, pg_catalog.format('condition too large (compiles to more than %s characters)',
                                                plunk_sql.condition_max_length()));
            END IF;
        END LOOP;
        IF v_group ? 'conditions' AND pg_catalog.jsonb_typeof(v_group -> 'conditions') <> 'null' THEN
            v_part := plunk_sql.compile_condition(
                v_group -> 'conditions', p_project_id, p_depth + 1, p_segments);
            v_parts := v_parts || v_part;
            v_length := v_length + pg_catalog.length(v_part) + 7;
            IF v_length > plunk_sql.condition_max_length() THEN
                PERFORM plunk_sql.condition_error(
                    v_group, pg_catalog.format('condition too large (compiles to more than %s characters)',
                                               plunk_sql.condition_max_length()));
            END IF;
        END IF;
        IF pg_catalog.cardinality(v_parts) = 0 THEN
            PERFORM plunk_sql.condition_error(v_group, 'a group needs at least one filter or a nested condition');
        END IF;
        v_groups := v_groups || ('(' || pg_catalog.array_to_string(v_parts, ' AND ') || ')');
    END LOOP;

    RETURN '(' || pg_catalog.array_to_string(v_groups, ' ' || v_logic || ' ') || ')';
END
$$;

COMMENT ON FUNCTION plunk_sql.compile_condition(jsonb, text, integer, text[]) IS
    'Predicate text over public.contacts AS c for a Plunk condition (values only as %L literals); raises 22023 naming the offending filter.';

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
