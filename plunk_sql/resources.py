"""Where the SQL lives: inside the wheel (plunk_sql/_sql, plunk_sql/_migrations)
or, in a checkout, at the repository's top-level sql/ and migrations/."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _locate(packaged: str, checkout: str) -> Path:
    for candidate in (_PACKAGE / packaged, _PACKAGE.parent / checkout):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"plunk_sql: cannot find the {checkout}/ directory")


def sql_dir() -> Path:
    return _locate("_sql", "sql")


def migrations_dir() -> Path:
    return _locate("_migrations", "migrations")


def function_files() -> list[Path]:
    """The toolkit's functions, triggers and views, applied in name order on every migrate."""
    return sorted(sql_dir().glob("[0-9][0-9]_*.sql"))


def plunk_tables_file() -> Path:
    return sql_dir() / "plunk_tables.sql"
