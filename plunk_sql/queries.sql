-- Named queries used by the Python wrappers. Each block starts with
-- `-- name: <name>` and ends where the next one starts. Placeholders are
-- psycopg's %(name)s. Keep SQL here, not in Python strings.

-- name: start_campaign
SELECT plunk_sql.start_campaign(%(campaign_id)s) AS total;

-- name: preview_audience
SELECT plunk_sql.preview_audience(%(campaign_id)s) AS recipients;

-- name: claim_batch
SELECT contact_id, email, data
FROM plunk_sql.claim_batch(%(campaign_id)s, %(batch_size)s, %(lease)s::interval);

-- name: campaign_progress
SELECT campaign_id, status, paused, total, pending, claimed, in_flight, sent, failed, skipped,
       started_at, finished_at
FROM plunk_sql.campaign_progress
WHERE campaign_id = %(campaign_id)s;

-- name: all_campaign_progress
SELECT campaign_id, status, paused, total, pending, claimed, in_flight, sent, failed, skipped,
       started_at, finished_at
FROM plunk_sql.campaign_progress
ORDER BY started_at DESC;

-- name: recipient_outcomes
SELECT state, reason, recipients
FROM plunk_sql.recipient_outcomes
WHERE campaign_id = %(campaign_id)s
ORDER BY state, reason NULLS FIRST;
