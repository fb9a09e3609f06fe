-- JavaScript value semantics the audience compiler must reproduce.
--
-- Plunk's where-builder is TypeScript: it reads a condition with JSON.parse,
-- then coerces values the JavaScript way (String(value), value * 24 * 60 * 60
-- * 1000, new Date(value), date.toISOString()). These functions compute the
-- same results in SQL so the toolkit selects the contacts Plunk selects. All
-- are IMMUTABLE, never read tables, take no locks and never raise except where
-- their contract says so.

-- plunk_sql.js_number_text(x): Number.prototype.toString() of a double
-- ("1", "1.5", "1e+21", "1e-7", "NaN", "Infinity"). PostgreSQL prints the
-- shortest round-trip digits (extra_float_digits >= 1), the same digits as
-- JavaScript; only the layout differs.
CREATE OR REPLACE FUNCTION plunk_sql.js_number_text(p_x double precision)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
DECLARE
    v_m text[];
    v_digits text;
    v_point integer;   -- value = 0.<digits> * 10^v_point
    v_k integer;
    v_sign text := '';
    v_exp integer;
BEGIN
    IF p_x = 'NaN'::double precision THEN
        RETURN 'NaN';
    ELSIF p_x = 'Infinity'::double precision THEN
        RETURN 'Infinity';
    ELSIF p_x = '-Infinity'::double precision THEN
        RETURN '-Infinity';
    ELSIF p_x = 0 THEN
        RETURN '0';
    END IF;
    IF p_x < 0 THEN
        v_sign := '-';
    END IF;
    v_m := pg_catalog.regexp_match(pg_catalog.abs(p_x)::text, '^([0-9]+)(?:\.([0-9]+))?(?:e([+-][0-9]+))?$');
    v_digits := v_m[1] || coalesce(v_m[2], '');
    v_point := pg_catalog.length(v_m[1]) + coalesce(v_m[3]::integer, 0);
    -- strip leading zeros (0.001 -> digits 1, point -2) and trailing zeros
    WHILE pg_catalog.left(v_digits, 1) = '0' LOOP
        v_digits := pg_catalog.substr(v_digits, 2);
        v_point := v_point - 1;
    END LOOP;
    v_digits := pg_catalog.rtrim(v_digits, '0');
    v_k := pg_catalog.length(v_digits);
    IF v_k <= v_point AND v_point <= 21 THEN
        RETURN v_sign || v_digits || pg_catalog.repeat('0', v_point - v_k);
    ELSIF 0 < v_point AND v_point <= 21 THEN
        RETURN v_sign || pg_catalog.left(v_digits, v_point) || '.' || pg_catalog.substr(v_digits, v_point + 1);
    ELSIF -6 < v_point AND v_point <= 0 THEN
        RETURN v_sign || '0.' || pg_catalog.repeat('0', -v_point) || v_digits;
    END IF;
    v_exp := v_point - 1;
    RETURN v_sign || pg_catalog.left(v_digits, 1)
        || CASE WHEN v_k > 1 THEN '.' || pg_catalog.substr(v_digits, 2) ELSE '' END
        || 'e' || CASE WHEN v_exp >= 0 THEN '+' ELSE '-' END || pg_catalog.abs(v_exp)::text;
END
$$;

COMMENT ON FUNCTION plunk_sql.js_number_text(double precision) IS
    'JavaScript Number#toString() of a double. Never raises.';

-- plunk_sql.js_json_number(n): the double JSON.parse makes of a JSON number
-- (correctly rounded; beyond the double range: +-Infinity or +-0).
CREATE OR REPLACE FUNCTION plunk_sql.js_json_number(p_value jsonb)
RETURNS double precision
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n numeric := (p_value #>> '{}')::numeric;
BEGIN
    RETURN v_n::double precision;
EXCEPTION WHEN numeric_value_out_of_range THEN
    IF pg_catalog.abs(v_n) >= 1 THEN
        RETURN CASE WHEN v_n > 0 THEN 'Infinity'::double precision ELSE '-Infinity'::double precision END;
    END IF;
    RETURN 0;
END
$$;

COMMENT ON FUNCTION plunk_sql.js_json_number(jsonb) IS
    'The double JavaScript''s JSON.parse gives a JSON number (overflow +-Infinity, underflow 0). Never raises.';

-- plunk_sql.js_string_to_number(s): JavaScript's ToNumber of a string: trimmed
-- of JavaScript white space, "" -> 0, [+-]Infinity, 0x/0o/0b integers, decimal
-- literals; anything else NaN.
CREATE OR REPLACE FUNCTION plunk_sql.js_string_to_number(p_text text)
RETURNS double precision
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ws text := E'[\\u0009\\u000A\\u000B\\u000C\\u000D\\u0020\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000\\uFEFF]';
    v_s text := pg_catalog.regexp_replace(pg_catalog.regexp_replace(p_text, '^' || v_ws || '+', ''), v_ws || '+$', '');
    v_digits text;
    v_base integer;
    v_acc numeric := 0;
    v_ch text;
BEGIN
    IF v_s = '' THEN
        RETURN 0;
    ELSIF v_s IN ('Infinity', '+Infinity') THEN
        RETURN 'Infinity';
    ELSIF v_s = '-Infinity' THEN
        RETURN '-Infinity';
    ELSIF v_s ~ '^0[xX][0-9a-fA-F]+$' OR v_s ~ '^0[oO][0-7]+$' OR v_s ~ '^0[bB][01]+$' THEN
        v_base := CASE pg_catalog.lower(pg_catalog.substr(v_s, 2, 1)) WHEN 'x' THEN 16 WHEN 'o' THEN 8 ELSE 2 END;
        v_digits := pg_catalog.lower(pg_catalog.substr(v_s, 3));
        IF pg_catalog.length(v_digits) > 400 THEN
            RETURN 'Infinity';
        END IF;
        FOREACH v_ch IN ARRAY pg_catalog.regexp_split_to_array(v_digits, '') LOOP
            v_acc := v_acc * v_base + pg_catalog.strpos('0123456789abcdef', v_ch) - 1;
        END LOOP;
        RETURN plunk_sql.js_json_number(pg_catalog.to_jsonb(v_acc));
    ELSIF v_s ~ '^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$' THEN
        IF v_s ~ '[eE][+-]?[0-9]{7,}$' THEN
            -- an exponent this long is 0 or Infinity in any double
            RETURN CASE
                WHEN v_s ~ '^[+-]?[0.]*([eE]|$)' THEN 0
                WHEN v_s ~ '[eE]-' THEN 0
                WHEN pg_catalog.left(v_s, 1) = '-' THEN '-Infinity'::double precision
                ELSE 'Infinity'::double precision END;
        END IF;
        RETURN plunk_sql.js_json_number(pg_catalog.to_jsonb(v_s::numeric));
    END IF;
    RETURN 'NaN';
EXCEPTION WHEN numeric_value_out_of_range OR invalid_text_representation THEN
    RETURN 'NaN';
END
$$;

COMMENT ON FUNCTION plunk_sql.js_string_to_number(text) IS
    'JavaScript ToNumber of a string (Number("7") = 7, Number("") = 0, Number("x") = NaN). Never raises.';

-- plunk_sql.js_number(v): JavaScript's ToNumber of a JSON value, as in
-- `value * 24` (number itself, string parsed, true 1, false/null 0, [] 0,
-- [x] ToNumber(String(x)), other arrays and objects NaN).
CREATE OR REPLACE FUNCTION plunk_sql.js_number(p_value jsonb)
RETURNS double precision
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    CASE pg_catalog.jsonb_typeof(p_value)
    WHEN 'number' THEN
        RETURN plunk_sql.js_json_number(p_value);
    WHEN 'string' THEN
        RETURN plunk_sql.js_string_to_number(p_value #>> '{}');
    WHEN 'boolean' THEN
        RETURN CASE WHEN p_value = 'true'::jsonb THEN 1 ELSE 0 END;
    WHEN 'null' THEN
        RETURN 0;
    WHEN 'array' THEN
        IF pg_catalog.jsonb_array_length(p_value) = 0 THEN
            RETURN 0;
        ELSIF pg_catalog.jsonb_array_length(p_value) = 1 THEN
            RETURN plunk_sql.js_string_to_number(plunk_sql.js_string(p_value));
        END IF;
        RETURN 'NaN';
    ELSE
        RETURN 'NaN';
    END CASE;
END
$$;

COMMENT ON FUNCTION plunk_sql.js_number(jsonb) IS
    'JavaScript ToNumber of a JSON value (what value * 24 computes with). Never raises.';

-- plunk_sql.js_string(v): JavaScript's String(value) of a JSON value.
CREATE OR REPLACE FUNCTION plunk_sql.js_string(p_value jsonb)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE pg_catalog.jsonb_typeof(p_value)
        WHEN 'string' THEN p_value #>> '{}'
        WHEN 'number' THEN plunk_sql.js_number_text(plunk_sql.js_json_number(p_value))
        WHEN 'boolean' THEN p_value #>> '{}'
        WHEN 'null' THEN 'null'
        WHEN 'object' THEN '[object Object]'
        WHEN 'array' THEN (
            SELECT coalesce(pg_catalog.string_agg(
                       CASE WHEN pg_catalog.jsonb_typeof(x.e) = 'null' THEN '' ELSE plunk_sql.js_string(x.e) END,
                       ',' ORDER BY x.n), '')
            FROM pg_catalog.jsonb_array_elements(p_value) WITH ORDINALITY AS x(e, n))
    END;
END
$$;

COMMENT ON FUNCTION plunk_sql.js_string(jsonb) IS
    'JavaScript String(value) of a JSON value ("1e+21", "true", "null", "a,b", "[object Object]"). Never raises.';

-- plunk_sql.js_json(v): the JSON value after JSON.parse and JSON.stringify,
-- as Plunk hands it to Prisma: numbers become doubles (non-finite: null).
CREATE OR REPLACE FUNCTION plunk_sql.js_json(p_value jsonb)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_x double precision;
BEGIN
    CASE pg_catalog.jsonb_typeof(p_value)
    WHEN 'number' THEN
        v_x := plunk_sql.js_json_number(p_value);
        IF v_x IN ('Infinity'::double precision, '-Infinity'::double precision) THEN
            RETURN 'null'::jsonb;
        END IF;
        RETURN plunk_sql.js_number_text(v_x)::jsonb;
    WHEN 'array' THEN
        RETURN (SELECT coalesce(pg_catalog.jsonb_agg(plunk_sql.js_json(x.e) ORDER BY x.n), '[]'::jsonb)
                FROM pg_catalog.jsonb_array_elements(p_value) WITH ORDINALITY AS x(e, n));
    WHEN 'object' THEN
        RETURN (SELECT coalesce(pg_catalog.jsonb_object_agg(x.key, plunk_sql.js_json(x.value)), '{}'::jsonb)
                FROM pg_catalog.jsonb_each(p_value) AS x);
    ELSE
        RETURN p_value;
    END CASE;
END
$$;

COMMENT ON FUNCTION plunk_sql.js_json(jsonb) IS
    'A JSON value as JavaScript round-trips it (numbers to doubles, non-finite to null). Never raises.';

-- plunk_sql.js_days_from_civil(y, m, d): days since 1970-01-01 of a proleptic
-- Gregorian date (any year; d may exceed the month and rolls over, as in
-- JavaScript's MakeDay).
CREATE OR REPLACE FUNCTION plunk_sql.js_days_from_civil(p_y bigint, p_m integer, p_d integer)
RETURNS bigint
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (
    SELECT era * 146097 + doe - 719468 + (p_d - 1)
    FROM (SELECT y, era, y - era * 400 AS yoe FROM (
              SELECT y, pg_catalog.floor(y::numeric / 400)::bigint AS era
              FROM (SELECT p_y - CASE WHEN p_m <= 2 THEN 1 ELSE 0 END AS y) AS a) AS b) AS c,
         LATERAL (SELECT yoe * 365 + yoe / 4 - yoe / 100
                         + (153 * (CASE WHEN p_m > 2 THEN p_m - 3 ELSE p_m + 9 END) + 2) / 5 AS doe) AS d
);

COMMENT ON FUNCTION plunk_sql.js_days_from_civil(bigint, integer, integer) IS
    'Days since 1970-01-01 of the 1st of a month plus (day - 1) days, any year. Never raises.';

-- plunk_sql.js_date_ms(text): what new Date(text).getTime() gives, for the
-- formats the toolkit reads the way V8 does:
--   ISO 8601 as ECMAScript defines it: YYYY, YYYY-MM, YYYY-MM-DD (UTC), with
--   THH:mm[:ss[.sss...]] and Z or +-HH:mm / +-HHmm (none: local time, taken as
--   UTC, Plunk's container time zone), years +-YYYYYY; day 1..31 rolling over
--   (2025-02-30 is March 2), 24:00 allowed.
--   "YYYY-MM-DD HH:mm[:ss[.sss]]" (V8's fallback, local time = UTC).
-- Returns the epoch milliseconds; NULL when JavaScript gives an Invalid Date;
-- 'NaN' for a string JavaScript's legacy parser might read and the toolkit
-- does not (the compiler refuses those with 22023). Never raises.
CREATE OR REPLACE FUNCTION plunk_sql.js_date_ms(p_text text)
RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_m text[];
    v_y bigint;
    v_mo integer;
    v_d integer;
    v_h integer;
    v_mi integer;
    v_s integer;
    v_ms integer;
    v_off integer := 0;
    v_t numeric;
BEGIN
    v_m := pg_catalog.regexp_match(p_text,
        '^([+-][0-9]{6}|[0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?'
        '(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?$');
    IF v_m IS NULL OR (pg_catalog.strpos(p_text, ' ') > 0 AND (v_m[3] IS NULL OR v_m[8] IS NOT NULL
                                                              OR pg_catalog.length(v_m[1]) <> 4)) THEN
        IF p_text ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}(T|$)' OR p_text !~ '[0-9]' THEN
            RETURN NULL;   -- V8 gives Invalid Date for these
        END IF;
        RETURN 'NaN';
    END IF;
    IF v_m[1] = '-000000' THEN
        RETURN 'NaN';   -- invalid as ISO; V8's legacy parser reads it somehow
    END IF;
    v_y := v_m[1]::bigint;
    v_mo := coalesce(v_m[2], '01')::integer;
    v_d := coalesce(v_m[3], '01')::integer;
    v_h := coalesce(v_m[4], '0')::integer;
    v_mi := coalesce(v_m[5], '0')::integer;
    v_s := coalesce(v_m[6], '0')::integer;
    v_ms := pg_catalog.rpad(pg_catalog.left(coalesce(v_m[7], '0'), 3), 3, '0')::integer;
    IF v_mo NOT BETWEEN 1 AND 12 OR v_d NOT BETWEEN 1 AND 31 OR v_h > 24 OR v_mi > 59 OR v_s > 59
        OR (v_h = 24 AND (v_mi > 0 OR v_s > 0 OR v_ms > 0))
    THEN
        RETURN NULL;
    END IF;
    IF v_m[8] IS NOT NULL AND v_m[8] <> 'Z' THEN
        IF pg_catalog.substr(pg_catalog.replace(v_m[8], ':', ''), 2, 2)::integer > 23
            OR pg_catalog.substr(pg_catalog.replace(v_m[8], ':', ''), 4, 2)::integer > 59
        THEN
            RETURN NULL;
        END IF;
        v_off := (pg_catalog.substr(pg_catalog.replace(v_m[8], ':', ''), 2, 2)::integer * 60
                  + pg_catalog.substr(pg_catalog.replace(v_m[8], ':', ''), 4, 2)::integer)
                 * CASE WHEN pg_catalog.left(v_m[8], 1) = '-' THEN -1 ELSE 1 END;
    END IF;
    v_t := plunk_sql.js_days_from_civil(v_y, v_mo, v_d)::numeric * 86400000
        + v_h * 3600000 + v_mi * 60000 + v_s * 1000 + v_ms - v_off * 60000;
    IF pg_catalog.abs(v_t) > 8640000000000000 THEN
        RETURN NULL;
    END IF;
    RETURN v_t;
END
$$;

COMMENT ON FUNCTION plunk_sql.js_date_ms(text) IS
    'Epoch ms of new Date(text) for ISO 8601 (and "YYYY-MM-DD HH:mm") strings; NULL for an Invalid Date; '
    '''NaN'' for other strings (not read). Never raises.';

-- plunk_sql.js_date_value(v): new Date(value).getTime() of a JSON value:
-- number -> itself (TimeClip), true 1, false/null 0, string as js_date_ms;
-- NULL when invalid, 'NaN' when the toolkit does not read it (arrays).
CREATE OR REPLACE FUNCTION plunk_sql.js_date_value(p_value jsonb)
RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_x double precision;
BEGIN
    CASE pg_catalog.jsonb_typeof(p_value)
    WHEN 'number' THEN
        v_x := plunk_sql.js_json_number(p_value);
        IF v_x IN ('Infinity'::double precision, '-Infinity'::double precision) OR pg_catalog.abs(v_x) > 8.64e15 THEN
            RETURN NULL;
        END IF;
        RETURN pg_catalog.trunc(v_x::numeric);
    WHEN 'string' THEN
        RETURN plunk_sql.js_date_ms(p_value #>> '{}');
    WHEN 'boolean' THEN
        RETURN CASE WHEN p_value = 'true'::jsonb THEN 1 ELSE 0 END;
    WHEN 'null' THEN
        RETURN 0;
    WHEN 'object' THEN
        RETURN NULL;   -- "[object Object]" is no date
    ELSE
        RETURN 'NaN';
    END CASE;
END
$$;

COMMENT ON FUNCTION plunk_sql.js_date_value(jsonb) IS
    'Epoch ms of new Date(value) for a JSON value; NULL Invalid Date; ''NaN'' not read (arrays). Never raises.';

-- plunk_sql.js_iso(ms): Date#toISOString() ("2025-04-10T08:00:00.000Z";
-- years outside 0..9999 as +-YYYYYY). ms must be a valid JavaScript time.
CREATE OR REPLACE FUNCTION plunk_sql.js_iso(p_ms numeric)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_days bigint := pg_catalog.floor(p_ms / 86400000)::bigint;
    v_rest bigint := (p_ms - v_days::numeric * 86400000)::bigint;
    v_z bigint := v_days + 719468;
    v_era bigint := pg_catalog.floor(v_z::numeric / 146097)::bigint;
    v_doe bigint := v_z - v_era * 146097;
    v_yoe bigint := (v_doe - v_doe / 1460 + v_doe / 36524 - v_doe / 146096) / 365;
    v_doy bigint := v_doe - (365 * v_yoe + v_yoe / 4 - v_yoe / 100);
    v_mp bigint := (5 * v_doy + 2) / 153;
    v_d bigint := v_doy - (153 * v_mp + 2) / 5 + 1;
    v_mo bigint := CASE WHEN v_mp < 10 THEN v_mp + 3 ELSE v_mp - 9 END;
    v_y bigint := v_yoe + v_era * 400 + CASE WHEN v_mo <= 2 THEN 1 ELSE 0 END;
BEGIN
    RETURN CASE
            WHEN v_y BETWEEN 0 AND 9999 THEN pg_catalog.lpad(v_y::text, 4, '0')
            WHEN v_y < 0 THEN '-' || pg_catalog.lpad((-v_y)::text, 6, '0')
            ELSE '+' || pg_catalog.lpad(v_y::text, 6, '0') END
        || pg_catalog.format('-%s-%sT%s:%s:%s.%sZ',
               pg_catalog.lpad(v_mo::text, 2, '0'), pg_catalog.lpad(v_d::text, 2, '0'),
               pg_catalog.lpad((v_rest / 3600000)::text, 2, '0'),
               pg_catalog.lpad((v_rest / 60000 % 60)::text, 2, '0'),
               pg_catalog.lpad((v_rest / 1000 % 60)::text, 2, '0'),
               pg_catalog.lpad((v_rest % 1000)::text, 3, '0'));
END
$$;

COMMENT ON FUNCTION plunk_sql.js_iso(numeric) IS
    'JavaScript Date#toISOString() of epoch ms (extended years as +-YYYYYY). Never raises for valid times.';

-- plunk_sql.js_timestamp(ms): epoch ms as the UTC timestamp(3) Prisma sends;
-- ms must be a valid time of year 1 or later (PostgreSQL refuses year 0).
CREATE OR REPLACE FUNCTION plunk_sql.js_timestamp(p_ms numeric)
RETURNS timestamp
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN timestamp '1970-01-01'
    + pg_catalog.make_interval(days => pg_catalog.trunc(p_ms / 86400000)::integer,
                               secs => ((p_ms - pg_catalog.trunc(p_ms / 86400000) * 86400000) / 1000)::double precision);

COMMENT ON FUNCTION plunk_sql.js_timestamp(numeric) IS
    'Epoch milliseconds as a UTC timestamp without time zone. Never raises for years 1..275760.';
