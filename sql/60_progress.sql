-- Progress and outcome views. Recreated on every migrate (DROP + CREATE inside
-- the migrate transaction), so their columns can change between versions.

DROP VIEW IF EXISTS plunk_sql.campaign_progress;
DROP VIEW IF EXISTS plunk_sql.recipient_outcomes;

-- One row per campaign the toolkit started. Settled counts are the sums of
-- the run's 33 counter slots (sql/48_counters.sql); open counts come from the
-- open-recipient index, so the cost is proportional to what is still open,
-- not to the snapshot size. Both are read in one snapshot and written in the
-- same transactions, so total = pending + claimed + in_flight + sent + failed
-- + skipped.
CREATE VIEW plunk_sql.campaign_progress AS
SELECT run.campaign_id,
       c.status::text AS status,
       run.paused_at IS NOT NULL AS paused,
       run.total,
       open.pending,
       open.claimed,
       open.in_flight,
       n.sent,
       n.failed,
       n.skipped,
       run.started_at,
       run.finished_at
FROM plunk_sql.campaign_runs AS run
JOIN public.campaigns AS c ON c.id = run.campaign_id
CROSS JOIN LATERAL (
    SELECT coalesce(pg_catalog.sum(s.sent), 0)::integer AS sent,
           coalesce(pg_catalog.sum(s.failed), 0)::integer AS failed,
           coalesce(pg_catalog.sum(s.skipped), 0)::integer AS skipped
    FROM plunk_sql.run_slots AS s
    WHERE s.campaign_id = run.campaign_id
) AS n
CROSS JOIN LATERAL (
    SELECT pg_catalog.count(*) FILTER (WHERE r.state = 'pending')::integer AS pending,
           pg_catalog.count(*) FILTER (WHERE r.state = 'claimed')::integer AS claimed,
           pg_catalog.count(*) FILTER (WHERE r.state = 'in_flight')::integer AS in_flight
    FROM plunk_sql.recipients AS r
    WHERE r.campaign_id = run.campaign_id
      AND r.state IN ('pending', 'claimed', 'in_flight')
) AS open;

COMMENT ON VIEW plunk_sql.campaign_progress IS
    'Per toolkit campaign: status, paused, total and pending/claimed/in_flight/sent/failed/skipped counts.';

-- Recipients by outcome and reason (for reconciliation: skipped by reason,
-- failures by error). Scans the campaign's recipients: a report, not a hot path.
CREATE VIEW plunk_sql.recipient_outcomes AS
SELECT r.campaign_id,
       r.state::text AS state,
       r.reason,
       pg_catalog.count(*)::integer AS recipients
FROM plunk_sql.recipients AS r
GROUP BY r.campaign_id, r.state, r.reason;

COMMENT ON VIEW plunk_sql.recipient_outcomes IS
    'Recipient count per campaign, state and reason (e.g. skipped/unsubscribed).';

-- plunk_sql.campaign_progress_of(campaign_id): the campaign_progress row of one
-- campaign, for roles without SELECT on the view: a worker watches the send it
-- works on (counts and status only, no contact or content). Empty when the
-- toolkit did not start the campaign. The columns are spelled out rather than
-- RETURNS SETOF the view: a function on the view's row type would block the
-- DROP VIEW at the top of this file on the next migrate.
--   22004 null id.
-- Locks: none (reads). Cost: the open-recipient index range of the campaign.
CREATE OR REPLACE FUNCTION plunk_sql.campaign_progress_of(p_campaign_id text)
RETURNS TABLE (
    campaign_id text,
    status text,
    paused boolean,
    total integer,
    pending integer,
    claimed integer,
    in_flight integer,
    sent integer,
    failed integer,
    skipped integer,
    started_at timestamptz,
    finished_at timestamptz
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_campaign_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            SCHEMA = 'plunk_sql',
            MESSAGE = 'campaign id must not be null';
    END IF;
    RETURN QUERY
    SELECT p.campaign_id, p.status, p.paused, p.total, p.pending, p.claimed, p.in_flight,
           p.sent, p.failed, p.skipped, p.started_at, p.finished_at
    FROM plunk_sql.campaign_progress AS p
    WHERE p.campaign_id = p_campaign_id;
END
$$;

COMMENT ON FUNCTION plunk_sql.campaign_progress_of(text) IS
    'The campaign_progress row of one campaign (empty if plunk_sql did not start it), for workers '
    'and operators alike. Errors: 22004 null id.';
