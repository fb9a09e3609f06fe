-- plunk_sql 0004: the prefix of the toolkit's role names.
-- depends: 0003_run_kind
--
-- PostgreSQL role names are cluster-wide: two Plunk databases on one cluster
-- (staging and production on one RDS instance, say) would otherwise share
-- plunk_sql_worker and plunk_sql_operator, and a worker role of one could call
-- the toolkit functions of the other. `plunk-sql migrate --role-prefix P` sets
-- this row; sql/95_roles.sql creates and grants P_worker and P_operator.
--
-- Safe to re-run: the default is inserted only when the row is missing.
INSERT INTO plunk_sql.settings (key, value, description) VALUES
    ('role_prefix', 'plunk_sql',
     'Prefix of the toolkit''s NOLOGIN roles, <prefix>_worker and <prefix>_operator (role names '
     'are cluster-wide: give each database of a cluster its own). Set by plunk-sql migrate '
     '--role-prefix; a lower-case SQL identifier of at most 40 characters.')
ON CONFLICT (key) DO NOTHING;
