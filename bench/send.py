"""The send path, measured with worker processes (one connection each).

A toolkit worker: claim_batch -> one INSERT of the batch's emails -> SENDING ->
SENT, settling either one UPDATE per email (as Plunk's email worker does, each
its own transaction) or one UPDATE per batch. A floor worker runs the same
INSERT/UPDATE statements on a database without the toolkit, on a fixed slice of
the contacts (no claim). Every statement is autocommitted.

Both sides are sampled the same way: pg_stat_activity every 10 ms, each sample
stamped with the campaign's progress (emails whose SENT has committed, counted by
the workers in shared memory, no query) and its time since the start, so the
samples of the last 1% of a campaign (its end-game) can be told apart.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
# What every worker session runs with: the per-email figures are only Plunk's when
# each commit waits for its WAL flush.
SESSION_SETTINGS = "SELECT current_setting('fsync'), current_setting('synchronous_commit')"
# The end-game excluded from the lock-wait comparison (issue 14: "outside the last 1%").
LAST_SHARE = 0.01


def _deliver(
    conn: psycopg.Connection,
    campaign: str,
    project: str,
    contacts: list[str],
    settle: str,
    settled: Callable[[int], None],
) -> int:
    ids = [str(uuid.uuid4()) for _ in contacts]
    conn.execute(INSERT, (campaign, project, ids, contacts))
    if settle == "per_email":
        for e in ids:
            conn.execute(SENDING_ONE, (e,), prepare=True)
        for e in ids:
            conn.execute(SENT_ONE, (e,), prepare=True)
            settled(1)
    else:
        conn.execute(SENDING_MANY, (ids,))
        conn.execute(SENT_MANY, (ids,))
        settled(len(ids))
    return len(ids)


def worker(
    url, mode, campaign, project, batch, settle, contacts, slot, progress, ready, go, out
) -> None:
    try:
        _work(url, mode, campaign, project, batch, settle, contacts, slot, progress, ready, go, out)
    except BaseException as exc:
        out.put(f"{type(exc).__name__}: {exc}")
        raise


def _work(
    url, mode, campaign, project, batch, settle, contacts, slot, progress, ready, go, out
) -> None:
    def settled(k: int) -> None:
        # This worker's own slot: no lock, the sampler only reads.
        progress[slot] += k

    with psycopg.connect(url, autocommit=True, application_name=APP) as conn:
        fsync, sync_commit = conn.execute(SESSION_SETTINGS).fetchone()
        ready.wait()
        go.wait()
        t0 = time.perf_counter()
        n = 0
        if mode == "toolkit":
            while True:
                rows = conn.execute(CLAIM, (campaign, batch)).fetchall()
                if not rows:
                    break
                n += _deliver(conn, campaign, project, [r[0] for r in rows], settle, settled)
        else:
            for i in range(0, len(contacts), batch):
                n += _deliver(conn, campaign, project, contacts[i : i + batch], settle, settled)
        out.put((n, t0, time.perf_counter(), fsync, sync_commit))


@dataclass
class Sample:
    at: float  # time.perf_counter() (CLOCK_MONOTONIC: the same clock in every process)
    settled: int  # emails whose SENT had committed, all workers
    lock_events: tuple[str, ...]  # "Lock:<event>" of every active worker waiting on a lock
    other_events: tuple[str, ...]


@dataclass
class WaitSamples:
    samples: int = 0
    lock_samples: int = 0
    lock_events: dict | None = None
    other_events: dict | None = None
    # Samples split at the campaign's last 1%, by emails settled and by elapsed time
    # (summarise()); the lock-wait target compares the part before it.
    progress: dict | None = None
    raw: list[Sample] = field(default_factory=list, repr=False)

    def summarise(self, total: int, start: float, seconds: float) -> None:
        """Fill the counts from the raw samples: the campaign had `total` emails and
        ran `seconds` from `start`."""
        self.samples = len(self.raw)
        self.lock_samples = sum(1 for r in self.raw if r.lock_events)
        self.lock_events = dict(Counter(e for r in self.raw for e in r.lock_events))
        self.other_events = dict(Counter(e for r in self.raw for e in r.other_events))
        in_last = {
            "emails": lambda r: r.settled >= (1 - LAST_SHARE) * total,
            "time": lambda r: r.at - start >= (1 - LAST_SHARE) * seconds,
        }
        self.progress = {"last_share": LAST_SHARE, "total": total, "seconds": seconds}
        for measure, last in in_last.items():
            parts: dict[str, dict[str, Any]] = {}
            for part, rows in (
                ("before_last", [r for r in self.raw if not last(r)]),
                ("last", [r for r in self.raw if last(r)]),
            ):
                parts[part] = {
                    "samples": len(rows),
                    "lock_samples": sum(1 for r in rows if r.lock_events),
                    "lock_events": dict(Counter(e for r in rows for e in r.lock_events)),
                }
            self.progress[measure] = parts
        # Where in the campaign the lock waits fell: tenths of the emails settled.
        tenths = [[0, 0] for _ in range(10)]
        for r in self.raw:
            k = min(9, int(10 * r.settled / total)) if total else 0
            tenths[k][0] += 1
            tenths[k][1] += 1 if r.lock_events else 0
        self.progress["tenths"] = tenths

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "lock_samples": self.lock_samples,
            "lock_events": self.lock_events,
            "other_events": self.other_events,
            "progress": self.progress,
        }


def _sample(
    url: str, stop: threading.Event, res: WaitSamples, progress: Any, interval: float = 0.01
) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute(
                "SELECT wait_event_type, wait_event FROM pg_catalog.pg_stat_activity"
                " WHERE application_name = %s AND state = 'active'",
                (APP,),
            ).fetchall()
            if rows:
                events = [f"{t}:{e}" for t, e in rows if t]
                res.raw.append(
                    Sample(
                        at=time.perf_counter(),
                        settled=sum(progress[:]),
                        lock_events=tuple(e for e in events if e.startswith("Lock:")),
                        other_events=tuple(e for e in events if not e.startswith("Lock:")),
                    )
                )
            time.sleep(interval)


@dataclass
class Outcome:
    emails: int
    seconds: float
    waits: WaitSamples
    # The worker sessions' fsync and synchronous_commit (every distinct value seen).
    session: dict[str, list[str]]


def run(
    url: str,
    mode: str,
    campaign: str,
    project: str,
    workers: int,
    batch: int,
    settle: str,
    contacts: list[str] | None = None,
    total: int | None = None,
) -> Outcome:
    """Run `workers` processes to completion (the campaign has `total` emails, default
    len(contacts)); emails, seconds and the wait samples."""
    ctx = mp.get_context("fork")
    go, out, ready = ctx.Event(), ctx.Queue(), ctx.Barrier(workers + 1)
    progress = ctx.Array("q", workers, lock=False)
    slices = [contacts[i::workers] for i in range(workers)] if contacts else [None] * workers
    procs = [
        ctx.Process(
            target=worker,
            args=(url, mode, campaign, project, batch, settle, s, i, progress, ready, go, out),
        )
        for i, s in enumerate(slices)
    ]
    for p in procs:
        p.start()
    ready.wait(timeout=120)  # every worker connected before the clock starts
    waits, stop = WaitSamples(), threading.Event()
    sampler = threading.Thread(target=_sample, args=(url, stop, waits, progress), daemon=True)
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
    start = min(r[1] for r in results)
    seconds = max(r[2] for r in results) - start
    waits.summarise(total if total is not None else n, start, seconds)
    session = {
        "fsync": sorted({r[3] for r in results}),
        "synchronous_commit": sorted({r[4] for r in results}),
    }
    return Outcome(emails=n, seconds=seconds, waits=waits, session=session)
