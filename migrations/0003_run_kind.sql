-- plunk_sql 0003: who drives a run.
-- depends: 0002_settings
--
-- 'toolkit': started by plunk_sql.start_campaign; the toolkit enforces its
-- invariants and refuses statements that would break them.
-- 'guard': a send started by Plunk's own code and followed in guard mode; the
-- toolkit records and finishes it but never refuses Plunk's statements.
-- Every behaviour that differs between the two keys off this column, never off
-- a guess about who wrote a row.
--
-- Safe to re-run: the column (and its check) is added only when missing.
ALTER TABLE plunk_sql.campaign_runs
    ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'toolkit'
        CONSTRAINT campaign_runs_kind_check CHECK (kind IN ('toolkit', 'guard'));
