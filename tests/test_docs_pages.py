"""The generated docs pages are current, and every SQL function carries its contract comment.
`make docs-pages` (PLUNK_SQL_WRITE_DOCS=1) rewrites the pages instead of comparing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.docs_pages import (
    ERROR_CATALOGUE,
    FUNCTIONS_QUERY,
    SEMANTICS,
    SQL_REFERENCE,
    SQL_REFERENCE_SERVER_MAJOR,
    render_error_catalogue,
    render_semantics,
    render_sql_reference,
)


def _current(path: Path, rendered: str) -> None:
    if os.environ.get("PLUNK_SQL_WRITE_DOCS") == "1":
        path.write_text(rendered)
    assert path.read_text() == rendered, f"{path} is stale: run `make docs-pages`"


def test_sql_reference__every_function_has_a_contract_comment(conn):
    missing = [
        f"plunk_sql.{name}({args})"
        for name, args, _result, comment, _trigger, _callers in conn.execute(
            FUNCTIONS_QUERY
        ).fetchall()
        if not (comment or "").strip()
    ]
    assert missing == [], "functions without COMMENT ON FUNCTION: " + ", ".join(missing)


def test_sql_reference__docs_page_is_current(conn):
    major = conn.info.server_version // 10000
    if major != SQL_REFERENCE_SERVER_MAJOR:
        pytest.skip(f"the page is rendered on PostgreSQL {SQL_REFERENCE_SERVER_MAJOR}, not {major}")
    _current(SQL_REFERENCE, render_sql_reference(conn))


def test_error_catalogue__docs_page_is_current():
    _current(ERROR_CATALOGUE, render_error_catalogue())


def test_state_machine__docs_diagram_is_the_one_definition(conn):
    # docs/semantics.md's recipient edges are plunk_sql.recipient_transitions(), line for line.
    _current(SEMANTICS, render_semantics(conn))
