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

-- name: sweep
SELECT action, campaign_id, affected FROM plunk_sql.sweep();

-- name: pause_campaign
SELECT plunk_sql.pause_campaign(%(campaign_id)s);

-- name: resume_campaign
SELECT plunk_sql.resume_campaign(%(campaign_id)s);

-- name: cancel_campaign
SELECT plunk_sql.cancel_campaign(%(campaign_id)s) AS status;

-- name: repair_campaign
SELECT plunk_sql.repair_campaign(%(campaign_id)s) AS status;

-- name: has_sweep
SELECT to_regprocedure('plunk_sql.sweep()') IS NOT NULL;

-- Reference worker (plunk_sql.worker) ------------------------------------

-- name: campaign_for_send
SELECT c.id, c.status::text AS status, c.subject, c.body, c."from" AS from_address,
       c."fromName" AS from_name, c."replyTo" AS reply_to, c."projectId" AS project_id
FROM public.campaigns AS c
WHERE c.id = %(campaign_id)s;

-- name: insert_emails
-- One statement per claimed batch: the emails trigger links each row to its
-- recipient (claimed -> in_flight) in one set-based step.
INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType", "campaignId",
                           status, "projectId", "updatedAt")
SELECT u.id, u.contact_id, u.subject, u.body, %(from_address)s, 'CAMPAIGN', %(campaign_id)s,
       'PENDING', %(project_id)s, plunk_sql.utc_now()
FROM unnest(%(ids)s::text[], %(contact_ids)s::text[], %(subjects)s::text[], %(bodies)s::text[])
     AS u (id, contact_id, subject, body);

-- name: emails_sending
UPDATE public.emails AS e
SET status = 'SENDING', "updatedAt" = plunk_sql.utc_now()
WHERE e.id = ANY(%(ids)s::text[]) AND e.status::text = 'PENDING';

-- name: emails_sent
-- As Plunk's email worker: only the first delivery report sets "sentAt".
UPDATE public.emails AS e
SET status = 'SENT', "sentAt" = plunk_sql.utc_now(), "messageId" = u.message_id,
    "updatedAt" = plunk_sql.utc_now()
FROM unnest(%(ids)s::text[], %(message_ids)s::text[]) AS u (id, message_id)
WHERE e.id = u.id AND e."sentAt" IS NULL;

-- name: emails_failed
UPDATE public.emails AS e
SET status = 'FAILED', error = u.error, "updatedAt" = plunk_sql.utc_now()
FROM unnest(%(ids)s::text[], %(errors)s::text[]) AS u (id, error)
WHERE e.id = u.id AND e.status::text IN ('PENDING', 'SENDING');
