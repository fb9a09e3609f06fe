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

-- plunk_sql._js_white(c): ECMAScript WhiteSpace or LineTerminator.
CREATE OR REPLACE FUNCTION plunk_sql._js_white(p_c text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.ascii(p_c) IN (9, 10, 11, 12, 13, 32, 160, 5760, 8232, 8233, 8239, 8287, 12288, 65279)
    OR pg_catalog.ascii(p_c) BETWEEN 8192 AND 8202;

COMMENT ON FUNCTION plunk_sql._js_white(text) IS
    'Whether a character is JavaScript white space or a line terminator (V8''s date tokenizer). Never raises.';

-- plunk_sql._js_date_scan(chars, pos): one token of V8's date tokenizer
-- (DateStringTokenizer::Scan) starting at chars[pos]: kind 'num' (val = the
-- first 9 significant digits, leading zeros skipped; len = all digits), 'sym'
-- (one of : - + . ), val its code), 'word' (a run of characters >= 'A' that
-- are not white space; wtype month / ampm / tz / sep / invalid and val from
-- V8's keyword table: first three letters, words longer than three only for
-- months), 'ws', 'unknown' (a parenthesized run or any other character) or
-- 'end'; next_pos is where the following token starts. Never raises.
CREATE OR REPLACE FUNCTION plunk_sql._js_date_scan(
    p_chars text[], p_pos integer,
    OUT kind text, OUT val integer, OUT len integer, OUT wtype text, OUT next_pos integer)
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n integer := coalesce(pg_catalog.array_length(p_chars, 1), 0);
    v_c text;
    v_j integer := p_pos;
    v_digits integer := 0;
    v_balance integer := 0;
    v_word text := '';
    v_pre text;
BEGIN
    val := 0; len := 0; wtype := '';
    IF p_pos > v_n THEN
        kind := 'end'; next_pos := p_pos;
        RETURN;
    END IF;
    v_c := p_chars[p_pos];
    IF pg_catalog.ascii(v_c) BETWEEN 48 AND 57 THEN
        WHILE v_j <= v_n AND p_chars[v_j] = '0' LOOP
            v_j := v_j + 1;
        END LOOP;
        WHILE v_j <= v_n AND pg_catalog.ascii(p_chars[v_j]) BETWEEN 48 AND 57 LOOP
            IF v_digits < 9 THEN
                val := val * 10 + pg_catalog.ascii(p_chars[v_j]) - 48;
            END IF;
            v_digits := v_digits + 1;
            v_j := v_j + 1;
        END LOOP;
        kind := 'num'; len := v_j - p_pos; next_pos := v_j;
        RETURN;
    END IF;
    IF v_c IN (':', '-', '+', '.', ')') THEN
        kind := 'sym'; val := pg_catalog.ascii(v_c); len := 1; next_pos := p_pos + 1;
        RETURN;
    END IF;
    IF plunk_sql._js_white(v_c) THEN
        kind := 'ws'; len := 1; next_pos := p_pos + 1;
        RETURN;
    END IF;
    IF pg_catalog.ascii(v_c) >= 65 THEN
        WHILE v_j <= v_n AND pg_catalog.ascii(p_chars[v_j]) >= 65 AND NOT plunk_sql._js_white(p_chars[v_j]) LOOP
            IF v_j - p_pos < 3 THEN
                -- V8 lowers with c | 0x20: only ASCII letters become letters.
                v_word := v_word || pg_catalog.chr(pg_catalog.ascii(p_chars[v_j]) | 32);
            END IF;
            v_j := v_j + 1;
        END LOOP;
        kind := 'word'; len := v_j - p_pos; next_pos := v_j;
        v_pre := v_word;
        SELECT k.t, k.v INTO wtype, val
        FROM (VALUES ('jan', 'month', 1), ('feb', 'month', 2), ('mar', 'month', 3), ('apr', 'month', 4),
                     ('may', 'month', 5), ('jun', 'month', 6), ('jul', 'month', 7), ('aug', 'month', 8),
                     ('sep', 'month', 9), ('oct', 'month', 10), ('nov', 'month', 11), ('dec', 'month', 12),
                     ('am', 'ampm', 0), ('pm', 'ampm', 12),
                     ('ut', 'tz', 0), ('utc', 'tz', 0), ('z', 'tz', 0), ('gmt', 'tz', 0),
                     ('cdt', 'tz', -5), ('cst', 'tz', -6), ('edt', 'tz', -4), ('est', 'tz', -5),
                     ('mdt', 'tz', -6), ('mst', 'tz', -7), ('pdt', 'tz', -7), ('pst', 'tz', -8),
                     ('t', 'sep', 0)) AS k(w, t, v)
        WHERE k.w = v_pre AND (len <= 3 OR k.t = 'month');
        IF wtype IS NULL THEN
            wtype := 'invalid'; val := 0;
        END IF;
        RETURN;
    END IF;
    IF v_c = '(' THEN
        LOOP
            IF v_j <= v_n AND p_chars[v_j] = ')' THEN
                v_balance := v_balance - 1;
            ELSIF v_j <= v_n AND p_chars[v_j] = '(' THEN
                v_balance := v_balance + 1;
            END IF;
            v_j := v_j + 1;
            EXIT WHEN NOT (v_balance > 0 AND v_j <= v_n);
        END LOOP;
        kind := 'unknown'; len := 1; next_pos := v_j;
        RETURN;
    END IF;
    kind := 'unknown'; len := 1; next_pos := p_pos + 1;
END
$$;

COMMENT ON FUNCTION plunk_sql._js_date_scan(text[], integer) IS
    'One token of V8''s date string tokenizer at chars[pos] (kind, val, len, wtype, next_pos). Never raises.';

-- plunk_sql.js_date_ms(text): new Date(text).getTime() as V8 (Node 20)
-- computes it with TZ=UTC (Plunk's API container sets no TZ): V8's
-- DateParser (src/date/dateparser*.{h,cc}) and ParseDateTimeString.
--   1. ES5 ISO 8601: [+-YYYYYY|YYYY][-MM[-DD]][THH:mm[:ss[.s...]][Z|+-hh:mm|+-hhmm]];
--      a date alone is UTC, a date-time without offset local time (= UTC).
--   2. Whatever the ISO reading leaves goes to the legacy parser: a number
--      followed by ':' is a time field ('::' adds zero seconds, '.' then
--      milliseconds); other numbers are date fields (read Y-M-D when the first
--      is no day 1..31, else M-D-Y; with a month name D-Y or Y-D; missing
--      fields are 1, so the year defaults to 2001; years 0..49 are 20xx and
--      50..99 19xx); a word whose first three letters name a month is the
--      month; UT/UTC/GMT/Z/EST/EDT/CST/CDT/MST/MDT/PST/PDT set the zone after a
--      number; AM/PM after a time; +hhmm, +hh, +hh:mm after a zone or time;
--      parentheses are skipped; words before the first number are ignored,
--      after it they make the date invalid, as do a sign or ')' after a number.
--   3. Day 1..31 rolls over (April 31 is May 1); years within +-1,000,000,
--      then TimeClip: |t| <= 8.64e15.
-- Returns the epoch milliseconds, NULL for an Invalid Date. Never raises.
CREATE OR REPLACE FUNCTION plunk_sql.js_date_ms(p_text text)
RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_chars text[] := pg_catalog.string_to_array(p_text, NULL);
    v_peek record;
    v_tok record;
    v_t record;
    v_day integer[] := '{}';
    v_named integer;
    v_iso boolean := false;
    v_time integer[] := '{}';
    v_hour_off integer;
    v_tz_sign integer;
    v_tz_hour integer;
    v_tz_min integer;
    v_has_num boolean;
    v_n integer;
    v_len integer;
    v_sign integer;
    v_dot boolean;
    v_h24 boolean;
    v_k integer;
    v_comp integer[];
    v_y bigint;
    v_mo integer;
    v_d integer;
    v_offset bigint;
    v_ms numeric;
BEGIN
    IF p_text IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, 1);

    -- 1. ES5 (ParseES5DateTime): leaves v_tok = the next token for the legacy parser.
    <<es5>>
    BEGIN
        IF v_peek.kind = 'sym' AND v_peek.val IN (43, 45) THEN
            v_tok := v_peek;
            SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_tok.next_pos);
            IF NOT (v_peek.kind = 'num' AND v_peek.len = 6) THEN
                EXIT es5;
            END IF;
            v_sign := CASE v_tok.val WHEN 43 THEN 1 ELSE -1 END;
            v_n := v_peek.val;
            SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
            IF v_sign < 0 AND v_n = 0 THEN
                EXIT es5;
            END IF;
            v_day := ARRAY[v_sign * v_n];
        ELSIF v_peek.kind = 'num' AND v_peek.len = 4 THEN
            v_day := ARRAY[v_peek.val];
            SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
        ELSE
            v_tok := v_peek;
            SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_tok.next_pos);
            EXIT es5;
        END IF;
        IF v_peek.kind = 'sym' AND v_peek.val = 45 THEN
            SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
            IF NOT (v_peek.kind = 'num' AND v_peek.len = 2 AND v_peek.val BETWEEN 1 AND 12) THEN
                v_tok := v_peek;
                SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_tok.next_pos);
                EXIT es5;
            END IF;
            v_day := v_day || v_peek.val;
            SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
            IF v_peek.kind = 'sym' AND v_peek.val = 45 THEN
                SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                IF NOT (v_peek.kind = 'num' AND v_peek.len = 2 AND v_peek.val BETWEEN 1 AND 31) THEN
                    v_tok := v_peek;
                    SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_tok.next_pos);
                    EXIT es5;
                END IF;
                v_day := v_day || v_peek.val;
                SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
            END IF;
        END IF;
        IF NOT (v_peek.kind = 'word' AND v_peek.wtype = 'sep') THEN
            IF v_peek.kind <> 'end' THEN
                v_tok := v_peek;
                SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_tok.next_pos);
                EXIT es5;
            END IF;
        ELSE
            SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
            IF NOT (v_peek.kind = 'num' AND v_peek.len = 2 AND v_peek.val BETWEEN 0 AND 24) THEN
                RETURN NULL;
            END IF;
            v_h24 := v_peek.val = 24;
            v_time := ARRAY[v_peek.val];
            SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
            IF NOT (v_peek.kind = 'sym' AND v_peek.val = 58) THEN
                RETURN NULL;
            END IF;
            SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
            IF NOT (v_peek.kind = 'num' AND v_peek.len = 2 AND v_peek.val BETWEEN 0 AND 59)
               OR (v_h24 AND v_peek.val > 0) THEN
                RETURN NULL;
            END IF;
            v_time := v_time || v_peek.val;
            SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
            IF v_peek.kind = 'sym' AND v_peek.val = 58 THEN
                SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                IF NOT (v_peek.kind = 'num' AND v_peek.len = 2 AND v_peek.val BETWEEN 0 AND 59)
                   OR (v_h24 AND v_peek.val > 0) THEN
                    RETURN NULL;
                END IF;
                v_time := v_time || v_peek.val;
                SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                IF v_peek.kind = 'sym' AND v_peek.val = 46 THEN
                    SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                    IF v_peek.kind <> 'num' OR (v_h24 AND v_peek.val > 0) THEN
                        RETURN NULL;
                    END IF;
                    v_time := v_time || plunk_sql._js_date_ms_digits(v_peek.val, v_peek.len);
                    SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                END IF;
            END IF;
            IF v_peek.kind = 'word' AND v_peek.wtype = 'tz' AND v_peek.len = 1 AND v_peek.val = 0 THEN
                SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                v_tz_sign := 1; v_tz_hour := 0; v_tz_min := 0;
            ELSIF v_peek.kind = 'sym' AND v_peek.val IN (43, 45) THEN
                v_tz_sign := CASE v_peek.val WHEN 43 THEN 1 ELSE -1 END;
                SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                IF v_peek.kind = 'num' AND v_peek.len = 4 THEN
                    IF v_peek.val / 100 > 23 OR v_peek.val % 100 > 59 THEN
                        RETURN NULL;
                    END IF;
                    v_tz_hour := v_peek.val / 100; v_tz_min := v_peek.val % 100;
                    SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                ELSE
                    IF NOT (v_peek.kind = 'num' AND v_peek.len = 2 AND v_peek.val BETWEEN 0 AND 23) THEN
                        RETURN NULL;
                    END IF;
                    v_tz_hour := v_peek.val;
                    SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                    IF NOT (v_peek.kind = 'sym' AND v_peek.val = 58) THEN
                        RETURN NULL;
                    END IF;
                    SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                    IF NOT (v_peek.kind = 'num' AND v_peek.len = 2 AND v_peek.val BETWEEN 0 AND 59) THEN
                        RETURN NULL;
                    END IF;
                    v_tz_min := v_peek.val;
                    SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                END IF;
            END IF;
            IF v_peek.kind <> 'end' THEN
                RETURN NULL;
            END IF;
        END IF;
        IF v_tz_hour IS NULL AND pg_catalog.cardinality(v_time) = 0 THEN
            v_tz_sign := 1; v_tz_hour := 0; v_tz_min := 0;
        END IF;
        v_iso := true;
        v_tok := v_peek;   -- the end
    END;

    -- 2. The legacy parser, from v_tok on.
    v_has_num := pg_catalog.cardinality(v_day) > 0;
    WHILE v_tok.kind <> 'end' LOOP
        v_k := pg_catalog.cardinality(v_time);
        IF v_tok.kind = 'num' THEN
            v_has_num := true;
            v_n := v_tok.val;
            IF v_peek.kind = 'sym' AND v_peek.val = 58 THEN
                SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                IF v_peek.kind = 'sym' AND v_peek.val = 58 THEN
                    SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                    IF v_k > 0 THEN
                        RETURN NULL;
                    END IF;
                    v_time := ARRAY[v_n, 0];
                ELSE
                    IF v_k >= 4 THEN
                        RETURN NULL;
                    END IF;
                    v_time := v_time || v_n;
                    IF v_peek.kind = 'sym' AND v_peek.val = 46 THEN
                        SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                    END IF;
                END IF;
            ELSE
                v_dot := v_peek.kind = 'sym' AND v_peek.val = 46;
                IF v_dot THEN
                    SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                END IF;
                IF v_dot AND ((v_k IN (1, 2) AND v_n BETWEEN 0 AND 59) OR (v_k = 3 AND v_n BETWEEN 0 AND 999)) THEN
                    v_time := v_time || v_n;
                    IF v_peek.kind <> 'num' THEN
                        RETURN NULL;
                    END IF;
                    v_t := v_peek;
                    SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_t.next_pos);
                    IF pg_catalog.cardinality(v_time) < 4 THEN
                        v_time := v_time || plunk_sql._js_date_ms_digits(v_t.val, v_t.len);
                    END IF;
                    v_time := v_time || pg_catalog.array_fill(0, ARRAY[4 - pg_catalog.cardinality(v_time)]);
                ELSIF v_tz_hour IS NOT NULL AND v_tz_min IS NULL AND v_n BETWEEN 0 AND 59 THEN
                    v_tz_min := v_n;
                ELSIF (v_k IN (1, 2) AND v_n BETWEEN 0 AND 59) OR (v_k = 3 AND v_n BETWEEN 0 AND 999) THEN
                    v_time := v_time || v_n;
                    v_time := v_time || pg_catalog.array_fill(0, ARRAY[4 - pg_catalog.cardinality(v_time)]);
                    IF NOT (v_peek.kind IN ('end', 'ws')
                            OR (v_peek.kind = 'word' AND v_peek.wtype = 'tz' AND v_peek.len = 1 AND v_peek.val = 0)
                            OR (v_peek.kind = 'sym' AND v_peek.val IN (43, 45))) THEN
                        RETURN NULL;
                    END IF;
                ELSE
                    IF pg_catalog.cardinality(v_day) >= 3 THEN
                        RETURN NULL;
                    END IF;
                    v_day := v_day || v_n;
                    IF v_peek.kind = 'sym' AND v_peek.val = 45 THEN
                        SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                    END IF;
                END IF;
            END IF;
        ELSIF v_tok.kind = 'word' THEN
            IF v_tok.wtype = 'ampm' AND v_k > 0 THEN
                v_hour_off := v_tok.val;
            ELSIF v_tok.wtype = 'month' THEN
                v_named := v_tok.val;
                IF v_peek.kind = 'sym' AND v_peek.val = 45 THEN
                    SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
                END IF;
            ELSIF v_tok.wtype = 'tz' AND v_has_num THEN
                v_tz_sign := CASE WHEN v_tok.val < 0 THEN -1 ELSE 1 END;
                v_tz_hour := pg_catalog.abs(v_tok.val);
                v_tz_min := 0;
            ELSIF v_has_num OR v_peek.kind = 'num' THEN
                RETURN NULL;   -- a word after a number, or glued to the first one
            END IF;
        ELSIF v_tok.kind = 'sym' AND v_tok.val IN (43, 45)
              AND ((v_tz_hour = 0 AND v_tz_min = 0) OR v_k > 0) THEN
            v_tz_sign := CASE v_tok.val WHEN 43 THEN 1 ELSE -1 END;
            v_n := 0;
            v_len := 0;
            IF v_peek.kind = 'num' THEN
                v_n := v_peek.val;
                v_len := v_peek.len;
                SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_peek.next_pos);
            END IF;
            v_has_num := true;
            IF v_peek.kind = 'sym' AND v_peek.val = 58 THEN
                v_tz_hour := v_n; v_tz_min := NULL;
            ELSIF v_len IN (1, 2) THEN
                v_tz_hour := v_n; v_tz_min := 0;
            ELSIF v_len IN (3, 4) THEN
                v_tz_hour := v_n / 100; v_tz_min := v_n % 100;
            ELSE
                RETURN NULL;
            END IF;
        ELSIF v_tok.kind = 'sym' AND v_tok.val IN (43, 45, 41) AND v_has_num THEN
            RETURN NULL;
        END IF;
        v_tok := v_peek;
        SELECT * INTO v_peek FROM plunk_sql._js_date_scan(v_chars, v_tok.next_pos);
    END LOOP;

    -- 3. DayComposer / TimeComposer / TimeZoneComposer::Write, MakeDay, TimeClip.
    IF pg_catalog.cardinality(v_day) < 1 THEN
        RETURN NULL;
    END IF;
    -- Missing fields are 1 (a missing year too: 2001). V8's index_ == 3 / == 1
    -- tests come after that fill, so they always hold / never do.
    v_comp := v_day || pg_catalog.array_fill(1, ARRAY[3 - pg_catalog.cardinality(v_day)]);
    IF v_named IS NULL THEN
        IF v_iso OR v_comp[1] NOT BETWEEN 1 AND 31 THEN
            v_y := v_comp[1]; v_mo := v_comp[2]; v_d := v_comp[3];
        ELSE
            v_mo := v_comp[1]; v_d := v_comp[2]; v_y := v_comp[3];
        END IF;
    ELSE
        v_mo := v_named;
        IF v_comp[1] NOT BETWEEN 1 AND 31 THEN
            v_y := v_comp[1]; v_d := v_comp[2];
        ELSE
            v_d := v_comp[1]; v_y := v_comp[2];
        END IF;
    END IF;
    IF NOT v_iso THEN
        v_y := v_y + CASE WHEN v_y BETWEEN 0 AND 49 THEN 2000 WHEN v_y BETWEEN 50 AND 99 THEN 1900 ELSE 0 END;
    END IF;
    IF v_mo NOT BETWEEN 1 AND 12 OR v_d NOT BETWEEN 1 AND 31 THEN
        RETURN NULL;
    END IF;
    v_time := v_time || pg_catalog.array_fill(0, ARRAY[4 - pg_catalog.cardinality(v_time)]);
    IF v_hour_off IS NOT NULL THEN
        IF v_time[1] NOT BETWEEN 0 AND 12 THEN
            RETURN NULL;
        END IF;
        v_time[1] := v_time[1] % 12 + v_hour_off;
    END IF;
    IF NOT (v_time[1] BETWEEN 0 AND 23 AND v_time[2] BETWEEN 0 AND 59 AND v_time[3] BETWEEN 0 AND 59
            AND v_time[4] BETWEEN 0 AND 999)
       AND (v_time[1] <> 24 OR v_time[2] <> 0 OR v_time[3] <> 0 OR v_time[4] <> 0) THEN
        RETURN NULL;
    END IF;
    IF v_tz_sign IS NOT NULL THEN
        -- V8 multiplies in unsigned 32 bits, then requires a Smi (32-bit on x64 Node).
        v_offset := (coalesce(v_tz_hour, 0)::bigint * 3600
                     + coalesce(v_tz_min, 0) * 60) % 4294967296;
        IF v_offset > 2147483647 THEN
            RETURN NULL;
        END IF;
        v_offset := v_offset * v_tz_sign;
    END IF;
    IF v_y NOT BETWEEN -1000000 AND 1000000 THEN
        RETURN NULL;   -- MakeDay: NaN
    END IF;
    v_ms := plunk_sql.js_days_from_civil(v_y, v_mo, v_d)::numeric * 86400000
        + v_time[1] * 3600000 + v_time[2] * 60000 + v_time[3] * 1000 + v_time[4];
    IF v_offset IS NULL THEN
        IF pg_catalog.abs(v_ms) > 8640000864000000 THEN
            RETURN NULL;   -- local time beyond the range DateCache::ToUTC accepts
        END IF;
    ELSE
        v_ms := v_ms - v_offset * 1000;
    END IF;
    IF pg_catalog.abs(v_ms) > 8640000000000000 THEN
        RETURN NULL;
    END IF;
    RETURN v_ms;
END
$$;

COMMENT ON FUNCTION plunk_sql.js_date_ms(text) IS
    'Epoch ms of new Date(text) as V8 (Node 20) parses it, ISO 8601 and the legacy forms, local time = UTC; '
    'NULL for an Invalid Date. Never raises.';

-- plunk_sql._js_date_ms_digits(n, len): V8's ReadMilliseconds: the first three
-- significant digits of a fraction of len digits whose value (first nine
-- significant digits) is n.
CREATE OR REPLACE FUNCTION plunk_sql._js_date_ms_digits(p_n integer, p_len integer)
RETURNS integer
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN p_len = 1 THEN p_n * 100
            WHEN p_len = 2 THEN p_n * 10
            WHEN p_len = 3 THEN p_n
            ELSE p_n / (10 ^ (LEAST(p_len, 9) - 3))::integer END;

COMMENT ON FUNCTION plunk_sql._js_date_ms_digits(integer, integer) IS
    'V8''s ReadMilliseconds: three significant digits of a fraction (value n of len digits). Never raises.';

-- plunk_sql.js_date_value(v): new Date(value).getTime() of a JSON value:
-- number -> itself (TimeClip), true 1, false/null 0, string as js_date_ms,
-- array as js_date_ms of String(array) ("2025,4" is a string like any
-- other), object NULL ("[object Object]"). NULL when invalid. Never raises.
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
    WHEN 'array' THEN
        RETURN plunk_sql.js_date_ms(plunk_sql.js_string(p_value));
    ELSE
        RETURN NULL;   -- "[object Object]" is no date
    END CASE;
END
$$;

COMMENT ON FUNCTION plunk_sql.js_date_value(jsonb) IS
    'Epoch ms of new Date(value) for a JSON value (strings and String(array) as V8 parses them); NULL Invalid Date. Never raises.';

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
