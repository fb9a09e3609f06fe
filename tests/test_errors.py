"""One error catalogue: every RAISE in sql/ is in plunk_sql.errors.CATALOGUE, and the client
maps errors by their diagnostic fields, never by message text."""

from __future__ import annotations

import psycopg
import pytest

from plunk_sql import errors
from plunk_sql.api import Client
from tests.docs_pages import kind_of_site, raise_sites


def test_error_catalogue__every_raise_site_is_a_catalogued_kind():
    sites = raise_sites()
    assert len(sites) > 30
    unknown = [
        s.where + f": {s.sqlstate} schema={s.schema} constraint={s.constraint}"
        f" table={s.table} column={s.column}"
        for s in sites
        if kind_of_site(s) is None and not _is_cancel_sentinel(s)
    ]
    assert not unknown, (
        "RAISE sites that are not in plunk_sql.errors.CATALOGUE (each needs ERRCODE, "
        "SCHEMA = 'plunk_sql' and the diagnostic fields of its kind):\n" + "\n".join(unknown)
    )


def _is_cancel_sentinel(site: object) -> bool:
    # cancel_campaign raises and catches a P0001 of its own, recognised by its constraint name;
    # it never reaches a caller, so it is no kind of the catalogue.
    return (
        getattr(site, "function", "") == "cancel_campaign"
        and getattr(site, "sqlstate", "") == "P0001"
        and getattr(site, "constraint", None) == "started_concurrently"
    )


def test_error_catalogue__every_kind_is_raised_somewhere():
    raised = {kind_of_site(s) for s in raise_sites()}
    assert [k for k in errors.CATALOGUE if k not in raised] == []


@pytest.fixture
def client(db_url):
    with Client.connect(db_url) as c:
        yield c


def test_errors__invalid_arguments_share_22023_and_differ_by_diag_fields(client, plunk, conn):
    pid = plunk.project()
    bad = plunk.campaign(pid, audience="FILTERED", condition={"logic": "AND", "groups": "x"})
    with pytest.raises(errors.InvalidCondition) as audience:
        client.start(bad)
    cid = plunk.campaign(pid)
    client.start(cid)
    with pytest.raises(errors.InvalidArgument) as lease:
        client.claim(cid, lease=__import__("datetime").timedelta(days=2))
    assert not isinstance(lease.value, errors.InvalidCondition)
    assert audience.value.sqlstate == lease.value.sqlstate == "22023"
    assert lease.value.pg_error is not None and lease.value.pg_error.diag.column_name == "lease"
    with pytest.raises(psycopg.errors.InvalidParameterValue) as setting:
        conn.execute("UPDATE plunk_sql.settings SET value = '' WHERE key = 'sweep_schedule'")
    assert isinstance(errors.from_pg(setting.value), errors.InvalidSetting)


def test_errors__a_missing_setting_is_not_a_missing_campaign(conn):
    with pytest.raises(psycopg.errors.NoDataFound) as missing:
        conn.execute("SELECT plunk_sql.setting('no_such_key')")
    mapped = errors.from_pg(missing.value)
    assert isinstance(mapped, errors.MissingSetting)
    assert not isinstance(mapped, errors.NotFound)


def test_errors__plunks_own_unique_violation_is_not_a_duplicate_email(conn, plunk):
    pid = plunk.project()
    contacts = plunk.contacts(pid, 2)
    cid = plunk.campaign(pid)
    plunk.start(cid)
    plunk.claim(cid)
    emails = plunk.create_emails(cid, pid, contacts)
    conn.execute('UPDATE public.emails SET "messageId" = %s WHERE id = %s', ("m-1", emails[0]))
    with pytest.raises(psycopg.errors.UniqueViolation) as plunks:
        conn.execute('UPDATE public.emails SET "messageId" = %s WHERE id = %s', ("m-1", emails[1]))
    assert errors.from_pg(plunks.value) is plunks.value  # Plunk's index, not the toolkit's rule
    with pytest.raises(psycopg.errors.UniqueViolation) as ours:
        plunk.create_emails(cid, pid, contacts[:1])
    assert isinstance(errors.from_pg(ours.value), errors.DuplicateEmail)


def test_errors__a_toolkit_sqlstate_from_postgresql_itself_is_not_mapped(conn):
    with pytest.raises(psycopg.errors.NoDataFound) as plain:
        conn.execute("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'no_data_found'; END $$")
    assert errors.from_pg(plain.value) is plain.value
