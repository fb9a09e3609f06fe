"""Exceptions of the toolkit, mapped from the errors its SQL functions raise.

The mapping is structural, never by message text. Every error the toolkit raises carries
`SCHEMA = 'plunk_sql'` (psycopg: `diag.schema_name`); an error without it is not the toolkit's
(PostgreSQL's own, or Plunk's, e.g. a 23505 from one of Plunk's Prisma unique indexes) and
propagates unchanged. Errors sharing a SQLSTATE are told apart by the other diagnostic fields
the raise site sets (`CONSTRAINT`, `TABLE`, `COLUMN`): 22023 stays the code for every invalid
argument, and `CONSTRAINT = 'audience'` marks the audience compiler's.

CATALOGUE is the one list of what the toolkit raises; docs/reference/errors.md is rendered from
it and tests/test_error_catalogue.py checks every RAISE in sql/ against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

TOOLKIT_SCHEMA = "plunk_sql"


class PlunkSqlError(Exception):
    """Base class. `.sqlstate` and `.pg_error` (the psycopg error) when from the database."""

    sqlstate: str | None = None

    def __init__(self, message: str, pg_error: psycopg.Error | None = None) -> None:
        super().__init__(message)
        self.pg_error = pg_error


class NullArgument(PlunkSqlError):
    """A required argument is NULL."""

    sqlstate = "22004"


class InvalidArgument(PlunkSqlError):
    """An argument out of its range (batch size, lease, ...)."""

    sqlstate = "22023"


class InvalidCondition(InvalidArgument):
    """An audience that cannot be compiled: malformed condition, bad segment."""


class InvalidSetting(InvalidArgument):
    """A value written to plunk_sql.settings that its key does not accept."""


class NotFound(PlunkSqlError):
    """No campaign with that id."""

    sqlstate = "P0002"


class MissingSetting(PlunkSqlError):
    """plunk_sql.setting(key) for a key that is not in plunk_sql.settings (migrate again)."""

    sqlstate = "P0002"


class IllegalTransition(PlunkSqlError):
    """The campaign or recipient is not in a state allowing the call."""

    sqlstate = "55000"


class RecipientsLocked(PlunkSqlError):
    """cancel_campaign gave up: workers kept the campaign's recipients locked. Retry."""

    sqlstate = "55P03"


class DuplicateEmail(PlunkSqlError):
    """A second email for a recipient of a toolkit campaign."""

    sqlstate = "23505"


class NotARecipient(PlunkSqlError):
    """An email for a contact outside the snapshot, or filed under another project."""

    sqlstate = "23503"


@dataclass(frozen=True)
class ErrorKind:
    """One kind of error the toolkit raises: its SQLSTATE, the diagnostic fields its raise sites
    set besides `SCHEMA = 'plunk_sql'` (None: the field is not set), and its exception."""

    sqlstate: str
    exception: type[PlunkSqlError]
    meaning: str
    constraint: str | None = None
    table: str | None = None
    column: str | None = None

    def matches(self, constraint: str | None, table: str | None, column: str | None) -> bool:
        return (self.constraint, self.table, self.column) == (constraint, table, column)


CATALOGUE: tuple[ErrorKind, ...] = (
    ErrorKind("22004", NullArgument, "a required argument is NULL"),
    ErrorKind(
        "22023", InvalidArgument, "claim_batch: batch_size not in 1..10000", column="batch_size"
    ),
    ErrorKind("22023", InvalidArgument, "claim_batch: lease not in (0, 1 day]", column="lease"),
    ErrorKind("22023", InvalidArgument, "role_name: kind is not worker or operator", column="kind"),
    ErrorKind(
        "22023",
        InvalidCondition,
        "the campaign's audience cannot be compiled (malformed condition, missing or foreign"
        " segment, unsupported audienceType)",
        constraint="audience",
    ),
    ErrorKind(
        "22023",
        InvalidSetting,
        "a value written to plunk_sql.settings that its key does not accept",
        table="settings",
        column="value",
    ),
    ErrorKind("P0002", NotFound, "no campaign with that id", table="campaigns"),
    ErrorKind("P0002", MissingSetting, "plunk_sql.setting(key): no such setting", table="settings"),
    ErrorKind(
        "55000",
        IllegalTransition,
        "the campaign (or recipient) is not in a state that allows the call",
    ),
    ErrorKind(
        "55P03",
        RecipientsLocked,
        "cancel_campaign: workers kept the campaign's recipients locked; retry",
    ),
    ErrorKind(
        "23505",
        DuplicateEmail,
        "a second email for a recipient of a campaign plunk_sql started",
        constraint="one_email_per_recipient",
    ),
    ErrorKind(
        "23503",
        NotARecipient,
        "an email for a contact outside the campaign's snapshot",
        constraint="email_contact_is_recipient",
    ),
    ErrorKind(
        "23503",
        NotARecipient,
        "an email filed under another project than its campaign's",
        constraint="email_project_is_campaign_project",
    ),
)


def kind_of(error: psycopg.Error) -> ErrorKind | None:
    """The catalogue entry of a psycopg error, or None when the toolkit did not raise it."""
    diag = error.diag
    if diag.schema_name != TOOLKIT_SCHEMA:
        return None
    for kind in CATALOGUE:
        if kind.sqlstate == error.sqlstate and kind.matches(
            diag.constraint_name, diag.table_name, diag.column_name
        ):
            return kind
    return None


def from_pg(error: psycopg.Error) -> PlunkSqlError | psycopg.Error:
    """The toolkit exception for a psycopg error, or the error itself when it is not ours."""
    kind = kind_of(error)
    if kind is None:
        return error
    exc = kind.exception(error.diag.message_primary or str(error), error)
    exc.sqlstate = kind.sqlstate
    return exc
