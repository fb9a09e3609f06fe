-- Plunk's own tables, as Prisma creates them (see shared plunk-facts.md), for
-- `plunk-sql migrate --with-plunk-tables` on an empty database: demos, tests
-- and new installs. Only what a campaign send touches. Idempotent: every
-- object is created only when missing, so it never alters a real Plunk schema.

DO $$
BEGIN
    IF to_regtype('public."CampaignStatus"') IS NULL THEN
        CREATE TYPE public."CampaignStatus" AS ENUM ('DRAFT', 'SCHEDULED', 'SENDING', 'SENT', 'CANCELLED');
    END IF;
    IF to_regtype('public."CampaignAudienceType"') IS NULL THEN
        CREATE TYPE public."CampaignAudienceType" AS ENUM ('ALL', 'FILTERED', 'SEGMENT');
    END IF;
    IF to_regtype('public."SegmentType"') IS NULL THEN
        CREATE TYPE public."SegmentType" AS ENUM ('DYNAMIC', 'STATIC');
    END IF;
    IF to_regtype('public."TemplateType"') IS NULL THEN
        CREATE TYPE public."TemplateType" AS ENUM ('TRANSACTIONAL', 'MARKETING', 'HEADLESS');
    END IF;
    IF to_regtype('public."EmailSourceType"') IS NULL THEN
        CREATE TYPE public."EmailSourceType" AS ENUM ('TRANSACTIONAL', 'CAMPAIGN', 'WORKFLOW', 'INBOUND');
    END IF;
    IF to_regtype('public."EmailStatus"') IS NULL THEN
        CREATE TYPE public."EmailStatus" AS ENUM (
            'PENDING', 'SENDING', 'SENT', 'DELIVERED', 'RECEIVED', 'OPENED', 'CLICKED',
            'BOUNCED', 'COMPLAINED', 'FAILED', 'SUPPRESSED'
        );
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS public.projects (
    id text NOT NULL,
    name text NOT NULL,
    public text NOT NULL,
    secret text NOT NULL,
    disabled boolean NOT NULL DEFAULT false,
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" timestamp(3) NOT NULL,
    CONSTRAINT projects_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS projects_public_key ON public.projects (public);
CREATE UNIQUE INDEX IF NOT EXISTS projects_secret_key ON public.projects (secret);

CREATE TABLE IF NOT EXISTS public.contacts (
    id text NOT NULL,
    email text NOT NULL,
    data jsonb,
    subscribed boolean NOT NULL DEFAULT true,
    "projectId" text NOT NULL,
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" timestamp(3) NOT NULL,
    CONSTRAINT contacts_pkey PRIMARY KEY (id),
    CONSTRAINT "contacts_projectId_fkey" FOREIGN KEY ("projectId")
        REFERENCES public.projects (id) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE UNIQUE INDEX IF NOT EXISTS "contacts_projectId_email_key" ON public.contacts ("projectId", email);
CREATE INDEX IF NOT EXISTS "contacts_projectId_idx" ON public.contacts ("projectId");
CREATE INDEX IF NOT EXISTS "contacts_projectId_subscribed_idx" ON public.contacts ("projectId", subscribed);
CREATE INDEX IF NOT EXISTS contacts_data_idx ON public.contacts USING gin (data);

CREATE TABLE IF NOT EXISTS public.segments (
    id text NOT NULL,
    name text NOT NULL,
    description text,
    type public."SegmentType" NOT NULL DEFAULT 'DYNAMIC',
    condition jsonb,
    "trackMembership" boolean NOT NULL DEFAULT false,
    "memberCount" integer NOT NULL DEFAULT 0,
    "projectId" text NOT NULL,
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" timestamp(3) NOT NULL,
    CONSTRAINT segments_pkey PRIMARY KEY (id),
    CONSTRAINT "segments_projectId_fkey" FOREIGN KEY ("projectId")
        REFERENCES public.projects (id) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX IF NOT EXISTS "segments_projectId_idx" ON public.segments ("projectId");

CREATE TABLE IF NOT EXISTS public.segment_memberships (
    "contactId" text NOT NULL,
    "segmentId" text NOT NULL,
    "enteredAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "exitedAt" timestamp(3),
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" timestamp(3) NOT NULL,
    CONSTRAINT segment_memberships_pkey PRIMARY KEY ("contactId", "segmentId"),
    CONSTRAINT "segment_memberships_contactId_fkey" FOREIGN KEY ("contactId")
        REFERENCES public.contacts (id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "segment_memberships_segmentId_fkey" FOREIGN KEY ("segmentId")
        REFERENCES public.segments (id) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX IF NOT EXISTS "segment_memberships_segmentId_exitedAt_idx"
    ON public.segment_memberships ("segmentId", "exitedAt");

CREATE TABLE IF NOT EXISTS public.campaigns (
    id text NOT NULL,
    name text NOT NULL,
    description text,
    status public."CampaignStatus" NOT NULL DEFAULT 'DRAFT',
    subject text NOT NULL,
    body text NOT NULL,
    "from" text NOT NULL,
    "fromName" text,
    "replyTo" text,
    type public."TemplateType" NOT NULL DEFAULT 'MARKETING',
    "audienceType" public."CampaignAudienceType" NOT NULL DEFAULT 'ALL',
    "audienceCondition" jsonb,
    "segmentId" text,
    "scheduledFor" timestamp(3),
    "totalRecipients" integer NOT NULL DEFAULT 0,
    "sentCount" integer NOT NULL DEFAULT 0,
    "deliveredCount" integer NOT NULL DEFAULT 0,
    "openedCount" integer NOT NULL DEFAULT 0,
    "clickedCount" integer NOT NULL DEFAULT 0,
    "bouncedCount" integer NOT NULL DEFAULT 0,
    "complainedCount" integer NOT NULL DEFAULT 0,
    "unsubscribedCount" integer NOT NULL DEFAULT 0,
    "projectId" text NOT NULL,
    "sentAt" timestamp(3),
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" timestamp(3) NOT NULL,
    CONSTRAINT campaigns_pkey PRIMARY KEY (id),
    CONSTRAINT "campaigns_projectId_fkey" FOREIGN KEY ("projectId")
        REFERENCES public.projects (id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "campaigns_segmentId_fkey" FOREIGN KEY ("segmentId")
        REFERENCES public.segments (id) ON DELETE SET NULL ON UPDATE CASCADE
);
CREATE INDEX IF NOT EXISTS "campaigns_projectId_idx" ON public.campaigns ("projectId");
-- Plunk v2's own campaigns indexes (no (status, "scheduledFor") index).
CREATE INDEX IF NOT EXISTS "campaigns_scheduledFor_idx" ON public.campaigns ("scheduledFor");
CREATE INDEX IF NOT EXISTS "campaigns_projectId_status_idx" ON public.campaigns ("projectId", status);

CREATE TABLE IF NOT EXISTS public.emails (
    id text NOT NULL,
    "contactId" text NOT NULL,
    subject text NOT NULL,
    body text NOT NULL,
    "from" text NOT NULL,
    "fromName" text,
    "replyTo" text,
    "sourceType" public."EmailSourceType" NOT NULL,
    "campaignId" text,
    "templateId" text,
    "workflowExecutionId" text,
    status public."EmailStatus" NOT NULL DEFAULT 'PENDING',
    "sentAt" timestamp(3),
    "deliveredAt" timestamp(3),
    "openedAt" timestamp(3),
    "clickedAt" timestamp(3),
    "bouncedAt" timestamp(3),
    "complainedAt" timestamp(3),
    opens integer NOT NULL DEFAULT 0,
    clicks integer NOT NULL DEFAULT 0,
    error text,
    "messageId" text,
    "projectId" text NOT NULL,
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" timestamp(3) NOT NULL,
    CONSTRAINT emails_pkey PRIMARY KEY (id),
    CONSTRAINT "emails_contactId_fkey" FOREIGN KEY ("contactId")
        REFERENCES public.contacts (id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "emails_campaignId_fkey" FOREIGN KEY ("campaignId")
        REFERENCES public.campaigns (id) ON DELETE SET NULL ON UPDATE CASCADE,
    CONSTRAINT "emails_projectId_fkey" FOREIGN KEY ("projectId")
        REFERENCES public.projects (id) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE UNIQUE INDEX IF NOT EXISTS "emails_messageId_key" ON public.emails ("messageId");
CREATE INDEX IF NOT EXISTS "emails_projectId_idx" ON public.emails ("projectId");
CREATE INDEX IF NOT EXISTS "emails_contactId_idx" ON public.emails ("contactId");
CREATE INDEX IF NOT EXISTS "emails_campaignId_idx" ON public.emails ("campaignId");
CREATE INDEX IF NOT EXISTS "emails_campaignId_status_idx" ON public.emails ("campaignId", status);
CREATE INDEX IF NOT EXISTS "emails_status_idx" ON public.emails (status);
CREATE INDEX IF NOT EXISTS "emails_projectId_createdAt_idx" ON public.emails ("projectId", "createdAt");
CREATE INDEX IF NOT EXISTS "emails_projectId_status_idx" ON public.emails ("projectId", status);
CREATE INDEX IF NOT EXISTS "emails_contactId_createdAt_idx" ON public.emails ("contactId", "createdAt");
CREATE INDEX IF NOT EXISTS "emails_contactId_openedAt_idx" ON public.emails ("contactId", "openedAt");
CREATE INDEX IF NOT EXISTS "emails_contactId_clickedAt_idx" ON public.emails ("contactId", "clickedAt");
CREATE INDEX IF NOT EXISTS "emails_templateId_idx" ON public.emails ("templateId");
CREATE INDEX IF NOT EXISTS "emails_workflowExecutionId_idx" ON public.emails ("workflowExecutionId");
CREATE INDEX IF NOT EXISTS "emails_sourceType_idx" ON public.emails ("sourceType");

CREATE TABLE IF NOT EXISTS public.events (
    id text NOT NULL,
    name text NOT NULL,
    data jsonb,
    "projectId" text NOT NULL,
    "contactId" text,
    "emailId" text,
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT events_pkey PRIMARY KEY (id),
    CONSTRAINT "events_projectId_fkey" FOREIGN KEY ("projectId")
        REFERENCES public.projects (id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "events_contactId_fkey" FOREIGN KEY ("contactId")
        REFERENCES public.contacts (id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "events_emailId_fkey" FOREIGN KEY ("emailId")
        REFERENCES public.emails (id) ON DELETE SET NULL ON UPDATE CASCADE
);
CREATE INDEX IF NOT EXISTS "events_projectId_name_idx" ON public.events ("projectId", name);
CREATE INDEX IF NOT EXISTS "events_contactId_name_createdAt_idx" ON public.events ("contactId", name, "createdAt");
CREATE INDEX IF NOT EXISTS "events_projectId_createdAt_idx" ON public.events ("projectId", "createdAt");
