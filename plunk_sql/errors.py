"""Exceptions of the toolkit, mapped from the SQLSTATEs its SQL functions raise.

| SQLSTATE | exception              | raised when                                            |
|----------|------------------------|--------------------------------------------------------|
| 22004    | NullArgument           | a required argument is NULL                            |
| 22023    | InvalidArgument        | bad argument (batch size, lease, ...)                  |
| 22023    | InvalidCondition       | ... when the message is about an audience/condition    |
| P0002    | NotFound               | unknown campaign (or segment)                          |
| 55000    | IllegalTransition      | the campaign/recipient is not in a state allowing it   |
| 23505    | DuplicateEmail         | a second email for a recipient of a toolkit campaign   |
| 23503    | NotARecipient          | an email for a contact outside the snapshot, or of another project |
"""

from __future__ import annotations

import psycopg


class PlunkSqlError(Exception):
    """Base class. `.sqlstate` and `.pg_error` (the psycopg error) when from the database."""

    sqlstate: str | None = None

    def __init__(self, message: str, pg_error: psycopg.Error | None = None) -> None:
        super().__init__(message)
        self.pg_error = pg_error


class NullArgument(PlunkSqlError):
    sqlstate = "22004"


class InvalidArgument(PlunkSqlError):
    sqlstate = "22023"


class InvalidCondition(InvalidArgument):
    """An audience that cannot be compiled: malformed condition, bad segment."""


class NotFound(PlunkSqlError):
    sqlstate = "P0002"


class IllegalTransition(PlunkSqlError):
    sqlstate = "55000"


class DuplicateEmail(PlunkSqlError):
    sqlstate = "23505"


class NotARecipient(PlunkSqlError):
    sqlstate = "23503"


_BY_SQLSTATE: dict[str, type[PlunkSqlError]] = {
    cls.sqlstate: cls
    for cls in (
        NullArgument,
        InvalidArgument,
        NotFound,
        IllegalTransition,
        DuplicateEmail,
        NotARecipient,
    )
    if cls.sqlstate
}


def from_pg(error: psycopg.Error) -> PlunkSqlError | psycopg.Error:
    """The toolkit exception for a psycopg error, or the error itself when it is not ours."""
    sqlstate = getattr(error, "sqlstate", None)
    cls = _BY_SQLSTATE.get(sqlstate or "")
    if cls is None:
        return error
    message = error.diag.message_primary or str(error)
    if cls is InvalidArgument and ("audience" in message or "segment" in message):
        cls = InvalidCondition
    exc = cls(message, error)
    exc.sqlstate = sqlstate
    return exc
