"""plunk_sql.api.Client against real PostgreSQL: URL, caller's connection, pool."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from plunk_sql import errors
from plunk_sql.api import Client, Outcome, Progress, Recipient


@pytest.fixture
def client(db_url):
    with Client.connect(db_url) as c:
        yield c


def test_api__message_only_while_sending(client, plunk):
    pid = plunk.project()
    plunk.contacts(pid, 2)
    cid = plunk.campaign(pid)
    with pytest.raises(errors.IllegalTransition):
        client.message(cid)  # DRAFT
    with pytest.raises(errors.NotFound):
        client.message("no-such-campaign")
    client.start(cid)
    msg = client.message(cid)
    assert (msg["id"], msg["project_id"], msg["from_address"]) == (cid, pid, "news@example.com")
    assert msg["subject"] and msg["body"]


def test_api__start_preview_claim_progress(client, plunk):
    pid = plunk.project()
    plunk.contacts(pid, 5, data={"firstName": "Ada"})
    plunk.contacts(pid, 2, subscribed=False, prefix="unsub")
    cid = plunk.campaign(pid)

    assert client.preview(cid) == 5
    assert client.progress(cid) is None
    assert client.start(cid) == 5
    assert client.start(cid) == 5  # idempotent

    got = client.claim(cid, batch_size=3, lease=timedelta(minutes=1))
    assert len(got) == 3
    assert all(isinstance(r, Recipient) for r in got)
    assert got[0].data == {"firstName": "Ada"}
    assert got[0].email.endswith("@example.com")

    p = client.progress(cid)
    assert isinstance(p, Progress)
    assert (p.status, p.total, p.pending, p.claimed, p.sent) == ("SENDING", 5, 2, 3, 0)
    assert p.open == 5 and not p.finished
    assert p.as_dict()["started_at"].startswith("20")
    assert [x.campaign_id for x in client.all_progress()] == [cid]


def test_api__outcomes_count_skips_by_reason(client, plunk, conn):
    pid = plunk.project()
    ids = plunk.contacts(pid, 4)
    cid = plunk.campaign(pid)
    client.start(cid)
    conn.execute("UPDATE public.contacts SET subscribed = false WHERE id = %s", (ids[0],))
    conn.execute("DELETE FROM public.contacts WHERE id = %s", (ids[1],))
    claimed = client.claim(cid, batch_size=10)
    assert {r.contact_id for r in claimed} == set(ids[2:])
    outcomes = set(client.outcomes(cid))
    assert Outcome("skipped", "unsubscribed", 1) in outcomes
    assert Outcome("skipped", "contact deleted", 1) in outcomes
    assert Outcome("claimed", None, 2) in outcomes


def test_api__errors_map_by_sqlstate(client, plunk):
    pid = plunk.project()
    with pytest.raises(errors.NotFound, match="does not exist"):
        client.start("no-such-campaign")
    with pytest.raises(errors.NullArgument):
        client.preview(None)  # type: ignore[arg-type]
    sent = plunk.campaign(pid, status="SENT")
    with pytest.raises(errors.IllegalTransition) as info:
        client.start(sent)
    assert info.value.sqlstate == "55000"
    assert isinstance(info.value.pg_error, psycopg.Error)
    bad = plunk.campaign(pid, audience="FILTERED", condition={"logic": "AND", "groups": []})
    with pytest.raises(errors.InvalidArgument):
        client.start(bad)
    cid = plunk.campaign(pid)
    client.start(cid)
    with pytest.raises(errors.InvalidArgument, match="batch_size"):
        client.claim(cid, batch_size=0)


def test_api__callers_connection_joins_its_transaction(db_url, plunk):
    pid = plunk.project()
    plunk.contacts(pid, 3)
    cid = plunk.campaign(pid)
    with psycopg.connect(db_url) as conn:  # not autocommit
        client = Client(conn)
        conn.execute("SELECT 1")  # an open transaction of the caller
        assert client.start(cid) == 3
        conn.rollback()  # the caller's decision wins
        assert client.progress(cid) is None
        assert client.start(cid) == 3  # no open transaction: the call commits
    with Client(db_url) as other:
        assert other.progress(cid).total == 3


def test_api__pool_source(db_url, plunk):
    pid = plunk.project()
    plunk.contacts(pid, 2)
    cid = plunk.campaign(pid)
    with ConnectionPool(db_url, min_size=1, max_size=2, open=True) as pool:
        client = Client(pool)
        assert client.start(cid) == 2
        assert len(client.claim(cid)) == 2
        with pytest.raises(errors.NotFound):
            client.start("nope")
        assert client.progress(cid).claimed == 2


def test_api__rejects_unknown_source():
    with pytest.raises(TypeError):
        Client(42)  # type: ignore[arg-type]


def test_api__close_leaves_callers_connection_open(conn):
    Client(conn).close()
    assert not conn.closed


def test_api__async_client_connection_and_pool(db_url, plunk):
    from psycopg_pool import AsyncConnectionPool

    from plunk_sql.api import AsyncClient

    pid = plunk.project()
    plunk.contacts(pid, 3)
    cid = plunk.campaign(pid)

    async def scenario() -> None:
        async with await AsyncClient.connect(db_url) as client:
            assert await client.preview(cid) == 3
            assert await client.start(cid) == 3
            got = await client.claim(cid, batch_size=2)
            assert [type(r) for r in got] == [Recipient, Recipient]
            with pytest.raises(errors.NotFound):
                await client.start("nope")
        async with AsyncConnectionPool(db_url, min_size=1, max_size=1, open=False) as pool:
            client = AsyncClient(pool)
            p = await client.progress(cid)
            assert (p.claimed, p.pending) == (2, 1)
            assert [x.campaign_id for x in await client.all_progress()] == [cid]
            assert Outcome("claimed", None, 2) in await client.outcomes(cid)

    asyncio.run(scenario())


def test_api__sync_and_async_clients_expose_the_same_calls():
    from plunk_sql import calls
    from plunk_sql.api import AsyncClient

    def public(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_")} - {"connect", "close"}

    names = {c.__name__ for c in calls.ALL}
    assert public(Client) == public(AsyncClient) == names
    for name in names:
        assert getattr(Client, name) is getattr(AsyncClient, name) is getattr(calls, name)


def test_api__async_client_message_and_errors_match_the_sync_client(db_url, plunk):
    from plunk_sql.api import AsyncClient

    pid = plunk.project()
    plunk.contacts(pid, 1)
    cid = plunk.campaign(pid)

    async def scenario() -> None:
        async with await AsyncClient.connect(db_url) as client:
            with pytest.raises(errors.IllegalTransition):
                await client.message(cid)
            await client.start(cid)
            with Client(db_url) as sync:
                assert await client.message(cid) == sync.message(cid)
            with pytest.raises(errors.InvalidArgument, match="batch_size"):
                await client.claim(cid, batch_size=0)

    asyncio.run(scenario())
