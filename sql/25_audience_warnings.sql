-- plunk_sql.audience_warnings(condition, project_id): the filters of a
-- condition that select what Plunk selects but surely not what the user
-- meant. The audience stays Plunk's (docs/audience.md); this only explains it.

-- plunk_sql.filter_warnings(filter): the warnings of one filter (no rows when
-- it behaves as it reads). Never raises on a valid filter.
CREATE OR REPLACE FUNCTION plunk_sql.filter_warnings(p_filter jsonb)
RETURNS SETOF text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_field text := p_filter ->> 'field';
    v_op text := p_filter ->> 'operator';
    v_value jsonb := p_filter -> 'value';
    v_text text := plunk_sql.js_string(p_filter -> 'value');
    v_day record;
BEGIN
    IF v_op IN ('within', 'olderThan', 'triggeredWithin', 'triggeredOlderThan', 'notTriggeredWithin')
        AND pg_catalog.jsonb_typeof(v_value) IS DISTINCT FROM 'number'
    THEN
        RETURN NEXT pg_catalog.format('the time amount %s is not a number: Plunk reads it as %s',
                                      v_value, plunk_sql.js_number_text(plunk_sql.js_number(v_value)));
    END IF;
    IF v_field LIKE 'segment.%' THEN
        IF v_op <> 'memberOfSegment' THEN
            IF v_op <> 'notMemberOfSegment' THEN
                RETURN NEXT pg_catalog.format('operator %s on a segment field means notMemberOfSegment in Plunk', v_op);
            END IF;
        END IF;
        RETURN;
    END IF;
    IF v_field = 'email' THEN
        IF pg_catalog.jsonb_typeof(v_value) IS DISTINCT FROM 'string' THEN
            RETURN NEXT pg_catalog.format('the value %s is not a string: Plunk matches its text "%s"', v_value, v_text);
        END IF;
        IF v_text ~ '[%_\\]' THEN
            RETURN NEXT '% and _ are wildcards (and \ an escape) in Plunk''s email filters (ILIKE): "'
                || v_text || '" is a pattern, not literal text';
        END IF;
    ELSIF v_field = 'subscribed' THEN
        IF pg_catalog.jsonb_typeof(v_value) IS DISTINCT FROM 'boolean' THEN
            RETURN NEXT pg_catalog.format('only the JSON boolean true counts as true: %s reads as false', v_value);
        END IF;
    ELSIF v_field IN ('createdAt', 'updatedAt') THEN
        v_day := plunk_sql.condition_day(v_value);
        IF v_op IN ('equals', 'notEquals') AND v_day.start_ms IS NULL THEN
            RETURN NEXT pg_catalog.format('%s is not a YYYY-MM-DD date: %s compares the exact millisecond', v_value, v_op);
        ELSIF v_day.start_ms IS NOT NULL AND pg_catalog.length(v_value #>> '{}') > 10 AND v_op IN ('equals', 'notEquals') THEN
            RETURN NEXT pg_catalog.format('only the date %s of %s counts (time and offset ignored, as in Plunk)',
                                          pg_catalog.left(v_value #>> '{}', 10), v_value);
        END IF;
        IF v_day.start_ms IS NOT NULL AND plunk_sql.js_iso(v_day.start_ms) NOT LIKE pg_catalog.left(v_value #>> '{}', 10) || '%' THEN
            RETURN NEXT pg_catalog.format('%s is no calendar day: JavaScript rolls it over to %s',
                                          pg_catalog.left(v_value #>> '{}', 10), pg_catalog.left(plunk_sql.js_iso(v_day.start_ms), 10));
        END IF;
    ELSIF v_field LIKE 'data.%' THEN
        IF pg_catalog.strpos(pg_catalog.substr(v_field, 6), '.') > 0 THEN
            RETURN NEXT pg_catalog.format('%s is a nested path (%s), not one key with dots',
                                          v_field, pg_catalog.array_to_string(
                                              pg_catalog.regexp_split_to_array(pg_catalog.substr(v_field, 6), '\.'), ' -> '));
        END IF;
        IF v_op IN ('notEquals', 'notContains') THEN
            RETURN NEXT pg_catalog.format('contacts without %s (or with no data) match neither %s nor its opposite', v_field, v_op);
        END IF;
        v_day := plunk_sql.condition_day(v_value);
        IF v_op IN ('equals', 'notEquals') AND v_day.start_ms IS NOT NULL THEN
            RETURN NEXT pg_catalog.format(
                'a date is compared as a string with "%s" <= value < "%s": a stored "%s" is not on that day',
                v_day.start_text, v_day.next_text, pg_catalog.left(v_value #>> '{}', 10));
        END IF;
        IF v_op IN ('contains', 'notContains') AND v_text ~ '[%_\\]' THEN
            RETURN NEXT '% and _ are wildcards (and \ an escape) in Plunk''s contains: "' || v_text || '" is a pattern';
        END IF;
        IF v_op IN ('contains', 'notContains') AND pg_catalog.jsonb_typeof(v_value) IS DISTINCT FROM 'string' THEN
            RETURN NEXT pg_catalog.format('the value %s is not a string: Plunk looks for its text "%s"', v_value, v_text);
        END IF;
        IF v_op IN ('greaterThan', 'lessThan', 'greaterThanOrEqual', 'lessThanOrEqual')
            AND pg_catalog.jsonb_typeof(v_value) = 'string'
        THEN
            RETURN NEXT pg_catalog.format('a string bound compares strings as strings (not numbers or dates): %s', v_value);
        END IF;
        IF v_op IN ('within', 'olderThan') THEN
            RETURN NEXT 'within/olderThan on a data field compare any string with an ISO timestamp as text '
                '(a bare date or a word can match)';
        END IF;
    END IF;
END
$$;

COMMENT ON FUNCTION plunk_sql.filter_warnings(jsonb) IS
    'Why a valid filter may select other contacts than its wording suggests (Plunk''s own semantics).';

-- plunk_sql.condition_warnings(condition): the warnings of every filter and
-- group of a (valid) condition, nested conditions included.
CREATE OR REPLACE FUNCTION plunk_sql.condition_warnings(p_condition jsonb)
RETURNS TABLE (filter jsonb, warning text)
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_group jsonb;
    v_filter jsonb;
    v_nested jsonb;
BEGIN
    FOR v_group IN SELECT g FROM pg_catalog.jsonb_array_elements(p_condition -> 'groups') AS g LOOP
        v_nested := v_group -> 'conditions';
        IF pg_catalog.jsonb_array_length(v_group -> 'filters') = 0
            AND (v_nested IN ('null'::jsonb, 'false'::jsonb, '""'::jsonb)
                 OR (pg_catalog.jsonb_typeof(v_nested) = 'number' AND (v_nested #>> '{}')::numeric = 0))
        THEN
            filter := v_group;
            warning := 'a group with no filters and no nested condition matches every contact';
            RETURN NEXT;
        END IF;
        FOR v_filter IN SELECT f FROM pg_catalog.jsonb_array_elements(v_group -> 'filters') AS f LOOP
            filter := v_filter;
            FOR warning IN SELECT w FROM plunk_sql.filter_warnings(v_filter) AS w LOOP
                RETURN NEXT;
            END LOOP;
        END LOOP;
        IF pg_catalog.jsonb_typeof(v_nested) = 'object' THEN
            RETURN QUERY SELECT * FROM plunk_sql.condition_warnings(v_nested);
        END IF;
    END LOOP;
END
$$;

COMMENT ON FUNCTION plunk_sql.condition_warnings(jsonb) IS
    'Warnings of every filter of a valid condition (see audience_warnings).';

-- plunk_sql.audience_warnings(condition, project_id): (filter, warning) for
-- each filter or group of the condition whose audience, Plunk's, is probably
-- not what was meant: % and _ wildcards in email and contains, dates compared
-- as strings, non-boolean subscribed values, non-number time amounts, contacts
-- lacking a key excluded by notEquals/notContains, other operators on segment
-- fields meaning notMemberOfSegment, groups matching everyone. Segments
-- referenced are not expanded.
--   22023 the condition is refused (as by preview_audience).
-- Locks: none (reads public.segments through the compiler).
CREATE OR REPLACE FUNCTION plunk_sql.audience_warnings(condition jsonb, project_id text)
RETURNS TABLE (filter jsonb, warning text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM plunk_sql.compile_condition(condition, project_id);
    RETURN QUERY SELECT * FROM plunk_sql.condition_warnings(condition);
END
$$;

COMMENT ON FUNCTION plunk_sql.audience_warnings(jsonb, text) IS
    'Surprising-but-Plunk filters of a condition, with why; the audience is unchanged. Errors: 22023 invalid condition.';
