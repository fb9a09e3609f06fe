-- Benchmark-only procedures (schema bench, never part of the toolkit).
--
-- The "against Plunk" comparison runs each algorithm server-side, serially, in
-- one session, committing where Plunk's code commits (every Prisma call is its
-- own transaction), so the comparison measures database work, not a client.
-- Per email, both sides do the same statements: one INSERT (Prisma create),
-- one UPDATE to SENDING, one UPDATE to SENT ... WHERE "sentAt" IS NULL.
-- They differ only in how the audience is walked and how completion is found.
-- No SET clause: a procedure with one cannot COMMIT.

CREATE SCHEMA IF NOT EXISTS bench;

-- Plunk's seed-version algorithm (and, p_patched, the upstream patch).
--   startSending: count the audience into "totalRecipients", SENDING, "sentAt".
--   processBatch: re-run the audience query with a keyset cursor on contact id
--                 (LIMIT p_batch), insert one emails row per contact.
--   email worker: SENDING, then SENT; then the completion check:
--     seed:    "sentCount" = count(*) of SENT emails; SENT when >= "totalRecipients";
--     patched: probe for an open (PENDING/SENDING) email first, count only when
--              none is open; "totalRecipients" is rewritten to the emails created.
CREATE OR REPLACE PROCEDURE bench.plunk_send(
    p_campaign text, p_predicate text, p_batch integer, p_patched boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    v_project text;
    v_cursor text := '';
    v_ids text[];
    v_email_ids text[];
    v_total integer;
    v_created integer := 0;
    v_sent bigint;
    v_i integer;
    v_done boolean := false;
BEGIN
    SELECT c."projectId" INTO v_project FROM public.campaigns AS c WHERE c.id = p_campaign;
    EXECUTE 'SELECT count(*) FROM public.contacts AS c WHERE ' || p_predicate INTO v_total;
    UPDATE public.campaigns AS c
    SET status = 'SENDING', "totalRecipients" = v_total, "sentCount" = 0,
        "sentAt" = timezone('UTC', now()), "updatedAt" = timezone('UTC', now())
    WHERE c.id = p_campaign;
    COMMIT;
    LOOP
        EXECUTE pg_catalog.format(
            'SELECT array_agg(s.id ORDER BY s.id) FROM (SELECT c.id FROM public.contacts AS c'
            ' WHERE %s AND c.id > $1 ORDER BY c.id LIMIT $2) AS s', p_predicate)
            INTO v_ids USING v_cursor, p_batch;
        EXIT WHEN v_ids IS NULL;
        v_cursor := v_ids[pg_catalog.array_length(v_ids, 1)];
        v_email_ids := '{}';
        FOR v_i IN 1 .. pg_catalog.array_length(v_ids, 1) LOOP
            v_email_ids := v_email_ids || pg_catalog.md5(p_campaign || v_ids[v_i])::uuid::text;
            INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",
                                       "campaignId", status, "projectId", "updatedAt")
            VALUES (v_email_ids[v_i], v_ids[v_i], 'Hello', '<p>Hi</p>', 'news@example.com',
                    'CAMPAIGN', p_campaign, 'PENDING', v_project, timezone('UTC', now()));
            COMMIT;
        END LOOP;
        v_created := v_created + pg_catalog.array_length(v_ids, 1);
        IF p_patched AND pg_catalog.array_length(v_ids, 1) < p_batch THEN
            -- Last batch: upstream rewrites the total to the emails created.
            UPDATE public.campaigns AS c SET "totalRecipients" = v_created,
                "updatedAt" = timezone('UTC', now()) WHERE c.id = p_campaign;
            COMMIT;
        END IF;
        FOR v_i IN 1 .. pg_catalog.array_length(v_email_ids, 1) LOOP
            UPDATE public.emails AS e SET status = 'SENDING', "updatedAt" = timezone('UTC', now())
            WHERE e.id = v_email_ids[v_i];
            COMMIT;
            UPDATE public.emails AS e
            SET status = 'SENT', "sentAt" = timezone('UTC', now()),
                "messageId" = v_email_ids[v_i], "updatedAt" = timezone('UTC', now())
            WHERE e.id = v_email_ids[v_i] AND e."sentAt" IS NULL;
            COMMIT;
            IF p_patched THEN
                UPDATE public.campaigns AS c SET "sentCount" = c."sentCount" + 1,
                    "updatedAt" = timezone('UTC', now()) WHERE c.id = p_campaign;
                IF NOT EXISTS (SELECT 1 FROM public.emails AS e
                               WHERE e."campaignId" = p_campaign
                                 AND e.status IN ('PENDING', 'SENDING')) THEN
                    SELECT count(*) INTO v_sent FROM public.emails AS e
                    WHERE e."campaignId" = p_campaign AND e.status = 'SENT';
                    UPDATE public.campaigns AS c SET status = 'SENT', "updatedAt" = timezone('UTC', now())
                    WHERE c.id = p_campaign AND v_sent >= c."totalRecipients";
                END IF;
            ELSE
                SELECT count(*) INTO v_sent FROM public.emails AS e
                WHERE e."campaignId" = p_campaign AND e.status = 'SENT';
                UPDATE public.campaigns AS c
                SET "sentCount" = v_sent,
                    status = CASE WHEN v_sent >= c."totalRecipients" THEN 'SENT' ELSE c.status END,
                    "updatedAt" = timezone('UTC', now())
                WHERE c.id = p_campaign;
            END IF;
            COMMIT;
        END LOOP;
    END LOOP;
END
$$;

-- The same per-email work through the toolkit: one snapshot, claim_batch
-- instead of re-running the audience, completion found by the triggers.
CREATE OR REPLACE PROCEDURE bench.toolkit_send(p_campaign text, p_batch integer)
LANGUAGE plpgsql
AS $$
DECLARE
    v_project text;
    v_ids text[];
    v_email_ids text[];
    v_i integer;
BEGIN
    SELECT c."projectId" INTO v_project FROM public.campaigns AS c WHERE c.id = p_campaign;
    PERFORM plunk_sql.start_campaign(p_campaign);
    COMMIT;
    LOOP
        SELECT array_agg(b.contact_id) INTO v_ids
        FROM plunk_sql.claim_batch(p_campaign, p_batch, '10 minutes') AS b;
        COMMIT;
        EXIT WHEN v_ids IS NULL;
        v_email_ids := '{}';
        FOR v_i IN 1 .. pg_catalog.array_length(v_ids, 1) LOOP
            v_email_ids := v_email_ids || pg_catalog.md5(p_campaign || v_ids[v_i])::uuid::text;
            INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",
                                       "campaignId", status, "projectId", "updatedAt")
            VALUES (v_email_ids[v_i], v_ids[v_i], 'Hello', '<p>Hi</p>', 'news@example.com',
                    'CAMPAIGN', p_campaign, 'PENDING', v_project, timezone('UTC', now()));
            COMMIT;
        END LOOP;
        FOR v_i IN 1 .. pg_catalog.array_length(v_email_ids, 1) LOOP
            UPDATE public.emails AS e SET status = 'SENDING', "updatedAt" = timezone('UTC', now())
            WHERE e.id = v_email_ids[v_i];
            COMMIT;
            UPDATE public.emails AS e
            SET status = 'SENT', "sentAt" = timezone('UTC', now()),
                "messageId" = v_email_ids[v_i], "updatedAt" = timezone('UTC', now())
            WHERE e.id = v_email_ids[v_i] AND e."sentAt" IS NULL;
            COMMIT;
        END LOOP;
    END LOOP;
END
$$;
