-- Small helpers shared by the toolkit's functions.
--
-- Every function pins search_path to pg_catalog, pg_temp and qualifies every
-- object, so a caller's schema cannot hijack a name.

-- plunk_sql.utc_now(): the transaction's start as UTC wall-clock time, the
-- form Plunk (Prisma) stores in its TIMESTAMP(3) columns. Never now()::timestamp,
-- which follows the session's TimeZone.
CREATE OR REPLACE FUNCTION plunk_sql.utc_now()
RETURNS timestamp
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.timezone('UTC', pg_catalog.now());

COMMENT ON FUNCTION plunk_sql.utc_now() IS
    'Transaction start as UTC timestamp without time zone (Prisma''s storage form).';

-- plunk_sql.parse_utc_timestamp(value text): an ISO-8601 date or timestamp as
-- UTC wall-clock time, or NULL when the text is not one. A value without an
-- offset is read as UTC. Strict shape check first: PostgreSQL would also
-- accept words like 'now', 'today' or 'epoch', which are not dates a contact has.
CREATE OR REPLACE FUNCTION plunk_sql.parse_utc_timestamp(p_value text)
RETURNS timestamp
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
AS $$
BEGIN
    IF p_value IS NULL
        OR p_value !~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?)?$'
    THEN
        RETURN NULL;
    END IF;
    RETURN pg_catalog.timezone('UTC', p_value::timestamptz);
EXCEPTION
    WHEN datetime_field_overflow OR invalid_datetime_format OR data_exception THEN
        RETURN NULL;
END
$$;

COMMENT ON FUNCTION plunk_sql.parse_utc_timestamp(text) IS
    'ISO-8601 date/timestamp text as UTC timestamp; NULL when not a valid ISO date. Never raises.';

-- plunk_sql.jsonb_utc_timestamp(value jsonb): the same for a JSON value; only
-- JSON strings can hold dates.
CREATE OR REPLACE FUNCTION plunk_sql.jsonb_utc_timestamp(p_value jsonb)
RETURNS timestamp
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE
    WHEN pg_catalog.jsonb_typeof(p_value) = 'string'
        THEN plunk_sql.parse_utc_timestamp(p_value #>> '{}')
END;

COMMENT ON FUNCTION plunk_sql.jsonb_utc_timestamp(jsonb) IS
    'A JSON string holding an ISO-8601 date as UTC timestamp; NULL for anything else. Never raises.';

-- plunk_sql.require_campaign(campaign_id text): the campaign row the public
-- functions work on, or the documented error. Takes no lock.
--   22004 campaign id is null; P0002 no such campaign.
CREATE OR REPLACE FUNCTION plunk_sql.require_campaign(p_campaign_id text)
RETURNS public.campaigns
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_campaign public.campaigns;
BEGIN
    IF p_campaign_id IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'null_value_not_allowed',
            SCHEMA = 'plunk_sql',
            MESSAGE = 'campaign id must not be null';
    END IF;
    SELECT * INTO v_campaign FROM public.campaigns AS c WHERE c.id = p_campaign_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'no_data_found',
            SCHEMA = 'plunk_sql', TABLE = 'campaigns',
            MESSAGE = pg_catalog.format('campaign %s does not exist', p_campaign_id);
    END IF;
    RETURN v_campaign;
END
$$;

COMMENT ON FUNCTION plunk_sql.require_campaign(text) IS
    'The campaigns row for an id, without locking it. Raises 22004 for a null id, P0002 for an unknown one.';
