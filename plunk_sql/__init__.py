"""plunk_sql: correct-by-construction campaign sending for Plunk, inside PostgreSQL.

The database does the work (see sql/); this package migrates it and wraps it.
"""

__version__ = "0.1.0"
