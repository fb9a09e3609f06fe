-- plunk_sql 0011: settings of the scheduled starts, which run outside the
-- sweep (issue 12; sql/72_scheduled_starts.sql, plunk_sql/cron.py).
-- depends: 0009_recipient_checks
--
-- Safe to re-run: settings are inserted without overwriting values an
-- operator changed.

INSERT INTO plunk_sql.settings (key, value, description) VALUES
    ('start_timeout', '1 minute',
     'Budget of one scheduled start (statement_timeout of each plunk_sql.start_next_scheduled() '
     'call by the pg_cron starts job and by plunk-sql sweep); a start over it is cancelled (57014), '
     'recorded in plunk_sql.start_attempts and retried with a backoff. Interval.'),
    ('starts_per_run', '25',
     'Most scheduled campaigns one run of the pg_cron starts job (or one plunk-sql sweep pass) '
     'starts; the rest wait for the next run. Integer 1..100. Applied to the job by plunk-sql migrate.')
ON CONFLICT (key) DO NOTHING;

UPDATE plunk_sql.settings
SET description = 'Most rows one sweep call handles per action (leases, abandoned emails, '
                  'finalizations); the rest waits for the next tick. Integer 1..100000.'
WHERE key = 'sweep_batch_size';
