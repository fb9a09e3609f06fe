-- The recipient state machine, defined once (issue 14). Every statement that
-- writes plunk_sql.recipients.state makes one of these moves and no other;
-- tests/test_model.py records every (old, new) pair its workload produces and
-- checks it against this list, and docs/semantics.md's diagram is rendered
-- from it (tests/test_recipient_states.py). The columns that go with each
-- state are CHECK constraints on the table (migration 0009_recipient_checks).
--
-- Checked, not enforced: a row trigger on recipients whose WHEN clause was
-- generated from this list (allowed moves never entering PL/pgSQL) was
-- measured at +25 us per single-row settle (+6%, `python -m
-- bench.recipient_checks`, interleaved settles), on the path issue 14 must
-- make faster. The writers are few and all in sql/; tests/test_model.py and
-- any run with PLUNK_SQL_RECORD_MOVES=1 (tests/conftest.py) record every move
-- and fail on one this list does not allow.

-- plunk_sql.recipient_transitions(): every allowed move of a recipient, with
-- its cause and the function or trigger that makes it. Several causes may
-- share one (from, to) pair. Retirement ('run retired') moves no row of
-- recipients: the open row is archived as skipped in retired_recipients.
--   No errors. No locks.
CREATE OR REPLACE FUNCTION plunk_sql.recipient_transitions()
RETURNS TABLE (from_state plunk_sql.recipient_state, to_state plunk_sql.recipient_state, cause text, writer text)
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.from_state::plunk_sql.recipient_state, t.to_state::plunk_sql.recipient_state, t.cause, t.writer
    FROM (VALUES
        ('pending',   'claimed',   'claim',                                   'claim_batch'),
        ('pending',   'skipped',   'claim re-check: unsubscribed / contact deleted / suppressed', 'claim_batch'),
        ('claimed',   'pending',   'lease expired',                           'sweep'),
        ('claimed',   'pending',   'released by its worker',                  'release_claims'),
        ('claimed',   'in_flight', 'emails INSERT',                           'emails_after_insert'),
        ('claimed',   'sent',      'emails INSERT already final',             'emails_after_insert'),
        ('claimed',   'failed',    'emails INSERT already final',             'emails_after_insert'),
        ('pending',   'in_flight', 'emails INSERT without a claim, re-check passed (guard: Plunk''s sender)', 'emails_after_insert'),
        ('pending',   'sent',      'emails INSERT already final without a claim', 'emails_after_insert'),
        ('pending',   'failed',    'emails INSERT already final without a claim', 'emails_after_insert'),
        ('pending',   'in_flight', 'start: an email of the campaign already exists', '_adopt_existing_emails'),
        ('pending',   'sent',      'start: an email of the campaign already exists', '_adopt_existing_emails'),
        ('pending',   'failed',    'start: an email of the campaign already exists', '_adopt_existing_emails'),
        ('in_flight', 'sent',      'emails UPDATE: first final status',       'emails_after_update'),
        ('in_flight', 'failed',    'emails UPDATE: FAILED / SUPPRESSED (sweep: abandon timeout)', 'emails_after_update'),
        ('in_flight', 'skipped',   'email row deleted',                       'emails_after_delete, cancel_campaign'),
        ('in_flight', 'pending',   'released by its worker (unsent email deleted)', 'release_claims'),
        ('pending',   'skipped',   'cancelled (toolkit or Plunk)',            'cancel_campaign, _settle_cancelled'),
        ('claimed',   'skipped',   'cancelled (toolkit or Plunk)',            'cancel_campaign, _settle_cancelled'),
        ('pending',   'skipped',   'guard run finished',                      'sweep_guarded'),
        ('claimed',   'skipped',   'guard run finished',                      'sweep_guarded'),
        ('in_flight', 'skipped',   'guard run finished',                      'sweep_guarded'),
        ('pending',   'skipped',   'run retired',                             '_retire_run'),
        ('claimed',   'skipped',   'run retired',                             '_retire_run'),
        ('in_flight', 'skipped',   'run retired',                             '_retire_run')
    ) AS t (from_state, to_state, cause, writer)
$$;

COMMENT ON FUNCTION plunk_sql.recipient_transitions() IS
    'Every allowed recipient state move (from_state, to_state, cause, writer): the one definition of '
    'the state machine. Settled states (sent, failed, skipped) never move.';

-- plunk_sql.recipient_transition_allowed(from, to): whether a recipient may
-- move from one state to the other (false for a non-move). NULL in, NULL out.
--   No errors. No locks.
CREATE OR REPLACE FUNCTION plunk_sql.recipient_transition_allowed(
    p_from plunk_sql.recipient_state,
    p_to plunk_sql.recipient_state
)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
STRICT
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM plunk_sql.recipient_transitions() AS t
                   WHERE t.from_state = p_from AND t.to_state = p_to)
$$;

COMMENT ON FUNCTION plunk_sql.recipient_transition_allowed(plunk_sql.recipient_state, plunk_sql.recipient_state) IS
    'True when plunk_sql.recipient_transitions() allows a recipient to move from the first state to the second.';

