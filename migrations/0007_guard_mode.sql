-- plunk_sql 0007: guard mode (issue 15): follow and finish the sends Plunk's own
-- code starts, without any change to Plunk.
-- depends: 0003_run_kind
--
-- State only; the trigger, the sweep action and the views live in
-- sql/85_guard.sql. Safe to re-run: every object is created only when
-- missing, and defaults never overwrite a value an operator changed.

INSERT INTO plunk_sql.settings (key, value, description) VALUES
    ('guard_mode', 'off',
     'on: when Plunk''s own code moves a campaign the toolkit did not start from DRAFT or SCHEDULED '
     'to SENDING, the toolkit snapshots its audience in that transaction, follows its emails without '
     'ever refusing them, and the sweep finishes what Plunk leaves open (docs/guard-mode.md). off: '
     'nothing of the kind (runs already guarded are still followed and finished). on | off.'),
    ('guard_quiet_period', '5 minutes',
     'Guard mode: a guarded campaign is finished by the sweep only once none of its emails is '
     'PENDING or SENDING and none was created for this long (Plunk''s batch jobs are done). Interval.')
ON CONFLICT (key) DO NOTHING;

-- One row per guarded run (campaign_runs.kind = 'guard'): what Plunk said at
-- the start and how the run ended. Deleted with its run.
CREATE TABLE IF NOT EXISTS plunk_sql.guard_runs (
    campaign_id text PRIMARY KEY
        REFERENCES plunk_sql.campaign_runs (campaign_id) ON DELETE CASCADE,
    -- Plunk's own "totalRecipients" in the statement that started the send
    -- (its count, made just before, in another transaction).
    plunk_total integer NOT NULL,
    snapshot_at timestamptz NOT NULL DEFAULT now(),
    -- Set once by plunk_sql.sweep_guarded(): when, the campaign status it
    -- left, who had ended the send ('sweep': the toolkit set SENT; 'plunk':
    -- Plunk had already set SENT, CANCELLED or DRAFT), and how many snapshot
    -- recipients it settled as skipped then.
    finalized_at timestamptz,
    final_status text,
    ended_by text CHECK (ended_by IN ('sweep', 'plunk')),
    settled_at_end integer
);

-- Emails Plunk created for contacts outside the snapshot (late joiners: they
-- entered the audience after the send started). Recorded beside the snapshot,
-- never in it: campaign_runs.total and invariant 1 stay about the snapshot.
CREATE TABLE IF NOT EXISTS plunk_sql.guard_late_joiners (
    campaign_id text NOT NULL
        REFERENCES plunk_sql.campaign_runs (campaign_id) ON DELETE CASCADE,
    email_id text NOT NULL,
    contact_id text NOT NULL,
    -- 'late joiner'; 'after end' when the email came after the sweep had
    -- finalized the run (it may then also be a recipient settled at the end).
    kind text NOT NULL DEFAULT 'late joiner' CHECK (kind IN ('late joiner', 'after end')),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, email_id)
);

-- Sends guard mode could not follow: the snapshot failed (an audience the
-- compiler refuses, e.g. another project's segment or one over the cost
-- bound; any other error). The campaign was left to Plunk; doctor lists these.
-- One row per campaign, the latest failure.
CREATE TABLE IF NOT EXISTS plunk_sql.guard_failures (
    campaign_id text PRIMARY KEY
        REFERENCES public.campaigns (id) ON DELETE CASCADE,
    failed_at timestamptz NOT NULL DEFAULT now(),
    sqlstate text NOT NULL,
    message text NOT NULL
);
