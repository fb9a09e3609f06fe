"""plunk_sql: correct-by-construction campaign sending for Plunk, inside PostgreSQL.

The database does the work (see sql/); this package migrates it and wraps it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    # One source of truth: pyproject.toml's version, as installed (`pip install -e .` included).
    __version__ = version("plunk-sql")
except PackageNotFoundError:  # pragma: no cover - a checkout on sys.path without an install
    __version__ = "0+unknown"
