"""Least privilege (sql/95_roles.sql): what the worker and operator roles can and cannot do,
that nothing in plunk_sql is executable by PUBLIC, and that every function pins search_path."""

from __future__ import annotations

import contextlib
import os
import uuid

import psycopg
import pytest

from tests.factories import Plunk, new_id

OPERATOR_ONLY = [
    "plunk_sql.start_campaign(text)",
    "plunk_sql.preview_audience(text)",
    "plunk_sql.audience_warnings(jsonb, text)",
    "plunk_sql.sweep()",
    "plunk_sql.start_next_scheduled()",
    "plunk_sql.pause_campaign(text)",
    "plunk_sql.resume_campaign(text)",
    "plunk_sql.cancel_campaign(text)",
    "plunk_sql.repair_campaign(text)",
    "plunk_sql.privilege_gaps()",
    "plunk_sql.role_name(text)",
    "plunk_sql.set_guard_mode(text, interval)",
]
INTERNAL = [
    "plunk_sql.require_campaign(text)",
    "plunk_sql._count(text, smallint, integer, integer, integer, integer, integer)",
    "plunk_sql.count_moves(text, smallint[], smallint[], plunk_sql.recipient_state[])",
    "plunk_sql.count_settled(text, smallint[], plunk_sql.recipient_state[])",
    "plunk_sql._finish_if_settled(text)",
    "plunk_sql.notify_finished(text)",
    "plunk_sql.audience_predicate(public.campaigns)",
    "plunk_sql.compile_condition(jsonb, text, integer, text[])",
]


@contextlib.contextmanager
def as_role(db_url: str, role: str, search_path: str | None = None):
    """An autocommit connection whose current_user is `role` (superuser SET ROLE)."""
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(f'SET ROLE "{role}"')
        if search_path:
            c.execute(f"SET search_path = {search_path}")
        yield c


def call_sql(signature: str) -> str:
    """A call of a function by signature with harmless arguments."""
    name, args = signature.split("(", 1)
    args = args.rstrip(")")
    if not args:
        return f"SELECT {name}()"
    values = {
        "text": "'x'",
        "integer": "1",
        "interval": "'1 minute'::interval",
        "jsonb": "'{}'::jsonb",
        "text[]": "'{}'::text[]",
        "smallint": "1::smallint",
        "smallint[]": "'{}'::smallint[]",
        "plunk_sql.recipient_state[]": "'{}'::plunk_sql.recipient_state[]",
        "boolean": "true",
        "public.campaigns": "NULL::public.campaigns",
    }
    return f"SELECT {name}({', '.join(values[a.strip()] for a in args.split(','))})"


def existing(conn: psycopg.Connection, signatures: list[str]) -> list[str]:
    return [
        s
        for s in signatures
        if conn.execute("SELECT to_regprocedure(%s) IS NOT NULL", (s,)).fetchone()[0]
    ]


def make_world(plunk: Plunk):
    """A SENDING campaign of 5 contacts plus a second project's contacts and campaign."""
    project = plunk.project()
    contacts = plunk.contacts(project, 5)
    campaign = plunk.campaign(project)
    plunk.start(campaign)
    other = plunk.project("other")
    plunk.contacts(other, 3, prefix="other")
    other_campaign = plunk.campaign(other)
    plunk.start(other_campaign)
    return project, contacts, campaign, other_campaign


@pytest.fixture
def sending(plunk):
    return make_world(plunk)


@pytest.fixture(scope="module")
def shared(pg_server, template_db):
    """One database for the read-only denial cases (each asserts that nothing changed)."""
    name = f"plunk_sql_priv_{os.getpid()}"
    with pg_server.admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = pg_server.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        world = make_world(Plunk(conn))
    yield url, world
    with pg_server.admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def insert_emails(c: psycopg.Connection, campaign: str, project: str, contacts: list[str]):
    ids = [new_id() for _ in contacts]
    c.execute(
        'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
        ' "campaignId", "projectId", "updatedAt")'
        " SELECT e, k, 's', 'b', 'f@example.com', 'CAMPAIGN', %s, %s, '2026-01-01'"
        " FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[])) AS u(e, k)",
        (campaign, project, ids, contacts),
    )
    return ids


def test_privileges__roles_exist_nologin(conn):
    rows = conn.execute(
        "SELECT rolname, rolcanlogin FROM pg_roles"
        " WHERE rolname IN ('plunk_sql_worker', 'plunk_sql_operator') ORDER BY 1"
    ).fetchall()
    assert rows == [("plunk_sql_operator", False), ("plunk_sql_worker", False)]


def test_privileges__worker_claims_creates_and_settles(db_url, conn, plunk, sending):
    project, contacts, campaign, _ = sending
    with as_role(db_url, "plunk_sql_worker") as w:
        got = w.execute(
            "SELECT contact_id, email FROM plunk_sql.claim_batch(%s, 10, '1 minute')", (campaign,)
        ).fetchall()
        assert sorted(r[0] for r in got) == sorted(contacts)
        ids = insert_emails(w, campaign, project, [r[0] for r in got])
        w.execute(
            "UPDATE public.emails SET status = 'SENDING', \"updatedAt\" = timezone('UTC', now())"
            " WHERE id = ANY(%s)",
            (ids,),
        )
        # Plunk's own settle statement shape.
        for eid in ids:
            cur = w.execute(
                "UPDATE public.emails SET status = 'SENT', \"sentAt\" = timezone('UTC', now()),"
                ' "messageId" = %s, "updatedAt" = timezone(\'UTC\', now())'
                ' WHERE id = %s AND "sentAt" IS NULL',
                (new_id(), eid),
            )
            assert cur.rowcount == 1
    row = plunk.campaign_row(campaign)
    assert (row["status"], row["sentCount"]) == ("SENT", 5)


@pytest.mark.parametrize("signature", OPERATOR_ONLY + INTERNAL)
def test_privileges__worker_cannot_call_operator_or_internal_functions(shared, signature):
    db_url, (_, _, campaign, _) = shared
    with psycopg.connect(db_url, autocommit=True) as conn:
        # A required function that is missing fails (a dropped function must not read as a skip).
        assert existing(conn, [signature]) == [signature], f"{signature} is not installed"
        state = (
            "SELECT c.status::text, r.sent, r.skipped, r.paused_at FROM public.campaigns AS c"
            " JOIN plunk_sql.campaign_runs AS r ON r.campaign_id = c.id WHERE c.id = %s"
        )
        before = conn.execute(state, (campaign,)).fetchone()
        with as_role(db_url, "plunk_sql_worker") as w, pytest.raises(psycopg.Error) as err:
            w.execute(call_sql(signature).replace("'x'", f"'{campaign}'"))
        assert err.value.sqlstate == "42501"
        assert conn.execute(state, (campaign,)).fetchone() == before
        assert before[0] == "SENDING"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM public.contacts",
        "SELECT email FROM public.contacts",
        "SELECT * FROM public.campaigns",
        "SELECT * FROM public.segments",
        "SELECT * FROM public.projects",
        "SELECT * FROM public.events",
        'SELECT "contactId" FROM public.emails',
        "SELECT subject, body FROM public.emails",
        "SELECT * FROM plunk_sql.recipients",
        "SELECT * FROM plunk_sql.campaign_runs",
        "SELECT * FROM plunk_sql.campaign_progress",
        "SELECT * FROM plunk_sql.recipient_outcomes",
        "SELECT * FROM plunk_sql.privilege_statements()",
        "UPDATE public.emails SET body = 'x'",
        "UPDATE public.contacts SET subscribed = true",
        "DELETE FROM public.emails",
        "UPDATE plunk_sql.campaign_runs SET sent = 0",
        "UPDATE plunk_sql.recipients SET state = 'pending'",
    ],
)
def test_privileges__worker_cannot_read_or_write_outside_its_door(shared, query):
    db_url, _ = shared
    with as_role(db_url, "plunk_sql_worker") as w, pytest.raises(psycopg.Error) as err:
        w.execute(query)
    assert err.value.sqlstate == "42501", query


def test_privileges__worker_reads_the_message_of_a_sending_campaign_only(db_url, plunk, sending):
    project, _, campaign, _ = sending
    draft = plunk.campaign(project)
    with as_role(db_url, "plunk_sql_worker") as w:
        row = w.execute(
            "SELECT campaign_id, project_id, subject, from_address"
            " FROM plunk_sql.campaign_message(%s)",
            (campaign,),
        ).fetchone()
        assert row == (campaign, project, "Hello {{ data.firstName }}", "news@example.com")
        with pytest.raises(psycopg.Error) as err:
            w.execute("SELECT * FROM plunk_sql.campaign_message(%s)", (draft,))
        assert err.value.sqlstate == "55000"
        # Stamps "updatedAt" the toolkit's way (the worker's named queries do).
        assert w.execute("SELECT plunk_sql.utc_now() IS NOT NULL").fetchone()[0]


def test_privileges__worker_sees_only_claimed_recipients(db_url, conn, sending):
    """claim_batch is the only read path: it returns the claimed contacts of the named campaign."""
    _, contacts, campaign, other_campaign = sending
    with as_role(db_url, "plunk_sql_worker") as w:
        got = w.execute(
            "SELECT contact_id FROM plunk_sql.claim_batch(%s, 2, '1 minute')", (campaign,)
        ).fetchall()
    assert len(got) == 2
    assert {r[0] for r in got} <= set(contacts)
    # The other campaign's recipients were not touched by that call.
    open_other = conn.execute(
        "SELECT count(*) FROM plunk_sql.recipients WHERE campaign_id = %s AND state = 'pending'",
        (other_campaign,),
    ).fetchone()[0]
    assert open_other == 3


def test_privileges__operator_starts_and_reads_progress_but_cannot_read_contacts(db_url, plunk):
    project = plunk.project()
    plunk.contacts(project, 4)
    campaign = plunk.campaign(project)
    with as_role(db_url, "plunk_sql_operator") as op:
        assert op.execute("SELECT plunk_sql.preview_audience(%s)", (campaign,)).fetchone()[0] == 4
        assert op.execute("SELECT plunk_sql.start_campaign(%s)", (campaign,)).fetchone()[0] == 4
        row = op.execute(
            "SELECT status, total, pending FROM plunk_sql.campaign_progress WHERE campaign_id = %s",
            (campaign,),
        ).fetchone()
        assert row == ("SENDING", 4, 4)
        for query in (
            "SELECT * FROM public.contacts",
            "SELECT * FROM plunk_sql.recipients",
            "SELECT * FROM plunk_sql.claim_batch('x', 1, '1 minute')",
            "SELECT plunk_sql.count_settled('x', '{1}', '{sent}')",
        ):
            with pytest.raises(psycopg.Error) as err:
                op.execute(query)
            assert err.value.sqlstate == "42501", query


def test_privileges__application_role_without_toolkit_rights_settles_mail(db_url, conn, sending):
    """Plunk's own app role writes emails; the SECURITY DEFINER triggers do the bookkeeping."""
    project, contacts, campaign, _ = sending
    role = f"plunk_app_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        conn.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        )
        with as_role(db_url, role) as app:
            ids = insert_emails(app, campaign, project, contacts)
            app.execute(
                "UPDATE public.emails SET status = 'SENT', \"updatedAt\" = timezone('UTC', now())"
                " WHERE id = ANY(%s)",
                (ids,),
            )
            with pytest.raises(psycopg.Error) as err:
                app.execute("SELECT * FROM plunk_sql.recipients")
            assert err.value.sqlstate == "42501"
        status = conn.execute(
            'SELECT status::text, "sentCount" FROM public.campaigns WHERE id = %s', (campaign,)
        ).fetchone()
        assert status == ("SENT", 5)
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_privileges__no_function_executable_by_public(conn):
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text, p.prosecdef FROM pg_proc AS p"
        " WHERE p.pronamespace = 'plunk_sql'::regnamespace"
        "   AND (p.proacl IS NULL"
        "        OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) AS a WHERE a.grantee = 0))"
    ).fetchall()
    # The one exception: an invoker-rights reader of plunk_sql.settings.
    assert set(rows) <= {("plunk_sql.setting(text)", False)}
    total = conn.execute(
        "SELECT count(*) FROM pg_proc WHERE pronamespace = 'plunk_sql'::regnamespace"
    ).fetchone()[0]
    assert total >= 20


def test_privileges__role_without_grants_cannot_claim(db_url, conn, sending):
    _, _, campaign, _ = sending
    role = f"nobody_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        with as_role(db_url, role) as c, pytest.raises(psycopg.Error) as err:
            c.execute("SELECT * FROM plunk_sql.claim_batch(%s, 1, '1 minute')", (campaign,))
        assert err.value.sqlstate == "42501"
    finally:
        conn.execute(f"DROP ROLE {role}")


def test_privileges__every_function_pins_search_path(conn):
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc AS p"
        " WHERE p.pronamespace = 'plunk_sql'::regnamespace ORDER BY 1"
    ).fetchall()
    assert rows
    unpinned = [
        sig for sig, config in rows if "search_path=pg_catalog, pg_temp" not in (config or [])
    ]
    assert unpinned == []


def test_privileges__security_definer_only_for_entry_points_and_triggers(conn):
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc AS p"
        " WHERE p.pronamespace = 'plunk_sql'::regnamespace AND p.prosecdef ORDER BY 1"
    ).fetchall()
    definers = {r[0] for r in rows}
    expected = {
        "plunk_sql.start_campaign(text)",
        "plunk_sql.preview_audience(text)",
        "plunk_sql.claim_batch(text,integer,interval)",
        "plunk_sql.release_claims(text,text[],text[])",
        "plunk_sql.campaign_message(text)",
        "plunk_sql.campaign_progress_of(text)",
        "plunk_sql.emails_after_insert()",
        "plunk_sql.emails_after_update()",
        "plunk_sql.emails_after_delete()",
        "plunk_sql._campaign_runs_after_delete()",
        # Deferred: fires at commit, as whatever role the session has then.
        "plunk_sql._run_slots_settled()",
        # Issue 13: triggers on Plunk's tables, run by Plunk's own role.
        "plunk_sql.emails_refuse_move()",
        "plunk_sql._campaigns_status_changed()",
        "plunk_sql._campaigns_keep_counters()",
        "plunk_sql._guard_campaign_started()",
    }
    assert expected <= definers
    optional = {s.replace(", ", ",") for s in OPERATOR_ONLY}
    assert definers - expected <= optional


def test_privileges__caller_search_path_cannot_hijack(db_url, conn, plunk, sending):
    """A caller's schema full of traps (functions and operators named like pg_catalog's, put
    first on its search_path) is never reached: every function pins search_path."""
    project, _contacts, campaign, _ = sending
    conn.execute("CREATE SCHEMA evil")
    conn.execute("GRANT USAGE ON SCHEMA evil TO PUBLIC")
    traps = {
        "now()": "timestamptz",
        "format(text, text)": "text",
        "count(*)": None,
        "lower(text)": "text",
        "timezone(text, timestamptz)": "timestamp",
        "unnest(anyarray)": "SETOF anyelement",
        "coalesce(text, text)": "text",
    }
    for sig, ret in traps.items():
        if ret is None:
            continue
        name = sig.split("(")[0]
        conn.execute(
            f"CREATE FUNCTION evil.{sig} RETURNS {ret} LANGUAGE plpgsql AS"
            f" $$BEGIN RAISE EXCEPTION 'hijacked: {name}'; END$$"
        )
    conn.execute(
        "CREATE FUNCTION evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'hijacked: ='; END$$"
    )
    conn.execute(
        "CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq)"
    )
    conn.execute("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA evil TO PUBLIC")
    path = "evil, pg_catalog, public"
    with as_role(db_url, "plunk_sql_worker", search_path=path) as w:
        got = w.execute(
            "SELECT contact_id FROM plunk_sql.claim_batch(%s, 10, '1 minute')", (campaign,)
        ).fetchall()
        assert len(got) == 5
        ids = insert_emails(w, campaign, project, [r[0] for r in got])
        # The caller's own SQL must qualify too (its search_path is the trap).
        w.execute(
            "UPDATE public.emails SET status = 'SENT', \"updatedAt\" = '2026-01-01'"
            " WHERE id OPERATOR(pg_catalog.=) ANY(%s)",
            (ids,),
        )
    with as_role(db_url, "plunk_sql_operator", search_path=path) as op:
        other = plunk.campaign(project)
        assert op.execute("SELECT plunk_sql.start_campaign(%s)", (other,)).fetchone()[0] == 5
    assert plunk.campaign_row(campaign)["status"] == "SENT"


def test_privileges__migrate_is_idempotent_with_roles(db_url, conn):
    from plunk_sql.migrate import migrate

    before = conn.execute(
        "SELECT p.oid::regprocedure::text, p.proacl::text, p.prosecdef FROM pg_proc AS p"
        " WHERE p.pronamespace = 'plunk_sql'::regnamespace ORDER BY 1"
    ).fetchall()
    migrate(db_url)
    after = conn.execute(
        "SELECT p.oid::regprocedure::text, p.proacl::text, p.prosecdef FROM pg_proc AS p"
        " WHERE p.pronamespace = 'plunk_sql'::regnamespace ORDER BY 1"
    ).fetchall()
    assert before == after
    grants = conn.execute(
        "SELECT privilege_type FROM information_schema.role_table_grants"
        " WHERE grantee = 'plunk_sql_worker' AND table_name = 'emails' ORDER BY 1"
    ).fetchall()
    assert ("INSERT",) in grants
