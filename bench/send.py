"""The send path, measured with worker processes (one connection each).

A toolkit worker: claim_batch -> one INSERT of the batch's emails -> SENDING ->
SENT, settling either one UPDATE per email (as Plunk's email worker does, each
its own transaction) or one UPDATE per batch. A floor worker runs the same
INSERT/UPDATE statements on a database without the toolkit, on a fixed slice of
the contacts (no claim). Every statement is autocommitted.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
import uuid
from dataclasses import dataclass

import psycopg

APP = "plunk_sql_bench_worker"

INSERT = (
    'INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
    ' "campaignId", status, "projectId", "updatedAt")'
    " SELECT u.e, u.k, 'Hello', '<p>Hi</p>', 'news@example.com', 'CAMPAIGN', %s, 'PENDING', %s,"
    " timezone('UTC', now()) FROM unnest(%s::text[], %s::text[]) AS u (e, k)"
)
SENDING_ONE = (
    "UPDATE public.emails SET status = 'SENDING', \"updatedAt\" = timezone('UTC', now())"
    " WHERE id = %s"
)
SENT_ONE = (
    "UPDATE public.emails SET status = 'SENT', \"sentAt\" = timezone('UTC', now()),"
    ' "messageId" = id, "updatedAt" = timezone(\'UTC\', now()) WHERE id = %s AND "sentAt" IS NULL'
)
SENDING_MANY = (
    "UPDATE public.emails SET status = 'SENDING', \"updatedAt\" = timezone('UTC', now())"
    " WHERE id = ANY(%s)"
)
SENT_MANY = (
    "UPDATE public.emails SET status = 'SENT', \"sentAt\" = timezone('UTC', now()),"
    ' "messageId" = id, "updatedAt" = timezone(\'UTC\', now())'
    ' WHERE id = ANY(%s) AND "sentAt" IS NULL'
)
CLAIM = "SELECT contact_id FROM plunk_sql.claim_batch(%s, %s, '10 minutes')"


def _deliver(
    conn: psycopg.Connection, campaign: str, project: str, contacts: list[str], settle: str
):
    ids = [str(uuid.uuid4()) for _ in contacts]
    conn.execute(INSERT, (campaign, project, ids, contacts))
    if settle == "per_email":
        for e in ids:
            conn.execute(SENDING_ONE, (e,), prepare=True)
        for e in ids:
            conn.execute(SENT_ONE, (e,), prepare=True)
    else:
        conn.execute(SENDING_MANY, (ids,))
        conn.execute(SENT_MANY, (ids,))
    return len(ids)


def worker(url, mode, campaign, project, batch, settle, contacts, go, out) -> None:
    try:
        _work(url, mode, campaign, project, batch, settle, contacts, go, out)
    except BaseException as exc:
        out.put(f"{type(exc).__name__}: {exc}")
        raise


def _work(url, mode, campaign, project, batch, settle, contacts, go, out) -> None:
    with psycopg.connect(url, autocommit=True, application_name=APP) as conn:
        conn.execute("SELECT 1")
        go.wait()
        t0 = time.perf_counter()
        n = 0
        if mode == "toolkit":
            while True:
                rows = conn.execute(CLAIM, (campaign, batch)).fetchall()
                if not rows:
                    break
                n += _deliver(conn, campaign, project, [r[0] for r in rows], settle)
        else:
            for i in range(0, len(contacts), batch):
                n += _deliver(conn, campaign, project, contacts[i : i + batch], settle)
        out.put((n, t0, time.perf_counter()))


@dataclass
class WaitSamples:
    samples: int = 0
    lock_samples: int = 0
    lock_events: dict | None = None
    other_events: dict | None = None


def _sample(url: str, stop: threading.Event, res: WaitSamples, interval: float = 0.01) -> None:
    res.lock_events, res.other_events = {}, {}
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute(
                "SELECT wait_event_type, wait_event FROM pg_catalog.pg_stat_activity"
                " WHERE application_name = %s AND state = 'active'",
                (APP,),
            ).fetchall()
            if rows:
                res.samples += 1
                locks = [r for r in rows if r[0] == "Lock"]
                if locks:
                    res.lock_samples += 1
                for t, e in rows:
                    if t:
                        bucket = res.lock_events if t == "Lock" else res.other_events
                        key = f"{t}:{e}"
                        bucket[key] = bucket.get(key, 0) + 1
            time.sleep(interval)


def run(
    url: str,
    mode: str,
    campaign: str,
    project: str,
    workers: int,
    batch: int,
    settle: str,
    contacts: list[str] | None = None,
) -> tuple[int, float, WaitSamples]:
    """Run `workers` processes to completion; (emails, seconds, wait samples)."""
    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    slices = [contacts[i::workers] for i in range(workers)] if contacts else [None] * workers
    procs = [
        ctx.Process(target=worker, args=(url, mode, campaign, project, batch, settle, s, go, out))
        for s in slices
    ]
    for p in procs:
        p.start()
    time.sleep(0.3)  # let every worker connect before the clock starts
    waits, stop = WaitSamples(), threading.Event()
    sampler = threading.Thread(target=_sample, args=(url, stop, waits), daemon=True)
    sampler.start()
    go.set()
    results = [out.get(timeout=3600) for _ in procs]
    errors = [r for r in results if isinstance(r, str)]
    stop.set()
    sampler.join()
    for p in procs:
        p.join()
    if errors:
        raise RuntimeError(f"send worker failed: {errors[0]}")
    n = sum(r[0] for r in results)
    seconds = max(r[2] for r in results) - min(r[1] for r in results)
    return n, seconds, waits
