"""`plunk-sql bench`: every figure in one run, same data, same machine.

Three databases on one server: `main` (toolkit + the snapshot/seed data),
`send` (toolkit, send-path contacts) and `floor` (Plunk's tables only, the same
contacts: the no-toolkit floor). Each figure is the median of repeated runs
after one unmeasured warm-up where stated.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import plunk_sql
from bench import data, send
from plunk_sql import resources
from plunk_sql.migrate import migrate

PROCS = Path(__file__).with_name("procs.sql")
PHASES = ("snapshot", "seed", "send", "triggers", "sweep")
ALGOS = ("seed", "patched", "toolkit")
# What plunk_sql.start_campaign sets for its snapshot INSERT (sql/30_start.sql).
SNAPSHOT_SETTINGS = "SET LOCAL jit = off; SET LOCAL work_mem = '64MB'"


@dataclass
class Config:
    sizes: list[int]
    seed_recipients: list[int]
    send_n: int
    workers: list[int]
    batches: list[int]
    reps: int
    seed_reps_large: int
    trig_n: int
    sweep_n: int
    sweep_expired: int
    quick: bool = False
    # The whole-campaign algorithms the seed phase runs; the others keep the figures
    # of the last results.json, marked as carried over (Plunk's unpatched "seed"
    # algorithm is quadratic: 26 of the full run's 55 minutes at 100k recipients).
    algos: list[str] = field(default_factory=lambda: list(ALGOS))

    @classmethod
    def make(cls, scale: int | None, quick: bool) -> Config:
        if quick:
            scale = scale or 20_000
            return cls(
                sizes=[max(scale // 100, 10), max(scale // 10, 50), scale],
                seed_recipients=[max(scale // 200, 20), max(scale // 20, 100)],
                send_n=max(scale // 20, 200),
                workers=[1, 2, 4, 8],
                batches=[100, 500],
                reps=1,
                seed_reps_large=1,
                trig_n=max(scale // 40, 100),
                sweep_n=scale,
                sweep_expired=max(scale // 100, 10),
                quick=True,
            )
        scale = scale or 1_000_000
        return cls(
            sizes=[scale // 100, scale // 10, scale],
            seed_recipients=[scale // 100, scale // 10],
            send_n=max(scale // 200, 1000),
            workers=[1, 2, 4, 8],
            batches=[100, 500, 2000],
            reps=3,
            seed_reps_large=1,
            trig_n=max(scale // 200, 500),
            sweep_n=scale,
            sweep_expired=max(scale // 100, 10),
        )


@dataclass
class Results:
    config: dict
    environment: dict = field(default_factory=dict)
    snapshot: list[dict] = field(default_factory=list)
    seed: list[dict] = field(default_factory=list)
    send: list[dict] = field(default_factory=list)
    triggers: list[dict] = field(default_factory=list)
    sweep: dict = field(default_factory=dict)
    profile: dict = field(default_factory=dict)
    load: list[dict] = field(default_factory=list)
    # Seconds per phase run in this run (phases carried over keep theirs in provenance).
    durations: dict = field(default_factory=dict)
    # Per phase: measured in this run, carried over from an earlier results.json, or
    # not run; written by merge().
    provenance: dict = field(default_factory=dict)
    # Phases that raised in this run: the error (their figures are carried over).
    failures: dict = field(default_factory=dict)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg(label: str, res: Results) -> None:
    try:
        text = Path("/proc/loadavg").read_text().split()
        res.load.append({"phase": label, "load1": float(text[0]), "load5": float(text[1])})
    except OSError:
        pass


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def checkpoint(conn: psycopg.Connection) -> None:
    """Flush dirty pages before a timed step, so no checkpoint lands inside it."""
    with contextlib.suppress(psycopg.Error):
        conn.execute("CHECKPOINT")


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# --------------------------------------------------------------------------- setup


class Databases:
    def __init__(self, admin_url: str, keep: bool = False, apply_sql: list[Path] = ()) -> None:
        self.admin_url = admin_url
        self.apply_sql = list(apply_sql)
        self.keep = keep
        tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.names = {k: f"plunk_bench_{k}_{tag}" for k in ("main", "send", "floor")}

    def url(self, key: str) -> str:
        return make_conninfo(self.admin_url, dbname=self.names[key])

    def __enter__(self) -> Databases:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.names.values():
                conn.execute(f'CREATE DATABASE "{name}"')
        migrate(self.url("main"), with_plunk_tables=True)
        migrate(self.url("send"), with_plunk_tables=True)
        for key in ("main", "send"):
            with psycopg.connect(self.url(key), autocommit=True) as conn:
                for path in self.apply_sql:
                    conn.execute(path.read_text())
        with psycopg.connect(self.url("floor"), autocommit=True) as conn:
            conn.execute(resources.plunk_tables_file().read_text())
        for key in ("main", "send", "floor"):
            with psycopg.connect(self.url(key), autocommit=True) as conn:
                conn.execute(PROCS.read_text() if key != "floor" else "CREATE SCHEMA bench")
                conn.execute("CREATE TABLE bench.floor_t (campaign_id text, id text)")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.keep:
            return
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.names.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def environment(conn: psycopg.Connection, server: str) -> dict[str, Any]:
    settings = dict(
        conn.execute(
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s)",
            (
                [
                    "shared_buffers",
                    "fsync",
                    "synchronous_commit",
                    "full_page_writes",
                    "max_wal_size",
                    "work_mem",
                    "wal_level",
                    "shared_preload_libraries",
                    "max_connections",
                ],
            ),
        ).fetchall()
    )
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=PROCS.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return {
        "toolkit": f"plunk_sql {plunk_sql.__version__}, checkout {commit}",
        "postgres": conn.execute("SELECT version()").fetchone()[0],
        "settings": settings,
        "server": server,
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def has_pgss(conn: psycopg.Connection) -> bool:
    libs = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
    if "pg_stat_statements" not in libs:
        return False
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return True


def top_statements(conn: psycopg.Connection, n: int = 12) -> list[dict]:
    rows = conn.execute(
        "SELECT calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 4),"
        " rows, shared_blks_hit + shared_blks_read, left(regexp_replace(query, '\\s+', ' ', 'g'), 160)"
        " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
        " WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT %s",
        (n,),
    ).fetchall()
    keys = ["calls", "total_ms", "mean_ms", "rows", "blocks", "query"]
    return [
        dict(
            zip(
                keys,
                [float(v) if k != "query" else v for k, v in zip(keys, r, strict=True)],
                strict=True,
            )
        )
        for r in rows
    ]


def explain(conn: psycopg.Connection, sql: str, params: Any = None) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) in a rolled-back transaction (writes are undone)."""
    conn.execute("BEGIN")
    try:
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
    finally:
        conn.execute("ROLLBACK")
    return "\n".join(r[0] for r in rows)


# --------------------------------------------------------------------------- phases


def reset_toolkit(conn: psycopg.Connection) -> None:
    conn.execute("TRUNCATE plunk_sql.recipients")
    conn.execute("DELETE FROM plunk_sql.campaign_runs")


def phase_snapshot(dbs: Databases, cfg: Config, res: Results) -> dict[int, dict]:
    """Build one project per size (contacts, events, a dynamic segment); time the
    snapshot (start_campaign) against the bare INSERT ... SELECT floor."""
    made: dict[int, dict] = {}
    with psycopg.connect(dbs.url("main"), autocommit=True) as conn:
        for i, n in enumerate(cfg.sizes):
            pid = f"p{i}"
            t = timed(lambda pid=pid, n=n: (data.project(conn, pid), data.contacts(conn, pid, n)))
            cond, with_event = data.condition(conn, pid)
            sid = data.segment(conn, pid, cond)
            made[n] = {"project": pid, "segment": sid, "event_filter": with_event}
            res.environment["event_filter"] = with_event
            log(f"data: {n} contacts (+{n // 2} events) in {t:.1f}s")
        conn.execute("VACUUM ANALYZE")
        for n in cfg.sizes:
            info = made[n]
            cid = data.campaign(conn, f"snap-{n}", info["project"], segment_id=info["segment"])
            pred = data.predicate(conn, cid)
            info["predicate"] = pred
            # Same rows as the snapshot (campaign, contact) into a bare table, under the
            # settings start_campaign gives its INSERT (same plan for the audience scan).
            floor_sql = (
                f"INSERT INTO bench.floor_t SELECT '{cid}', c.id FROM public.contacts AS c"
                f" WHERE {pred}"
            )
            toolkit, floor = [], []
            count = floor_count = 0
            # Small sizes take milliseconds, where one scheduler hiccup moves the ratio:
            # more repetitions there (they cost nothing next to the 1M run).
            reps = cfg.reps if n == cfg.sizes[-1] else cfg.reps * 5
            for rep in range(reps + 1):  # rep 0 warms the caches, unmeasured
                reset_toolkit(conn)
                conn.execute("UPDATE public.campaigns SET status = 'DRAFT' WHERE id = %s", (cid,))
                checkpoint(conn)
                t0 = time.perf_counter()
                count = conn.execute("SELECT plunk_sql.start_campaign(%s)", (cid,)).fetchone()[0]
                t_tool = time.perf_counter() - t0
                conn.execute("TRUNCATE bench.floor_t")
                checkpoint(conn)
                t0 = time.perf_counter()
                with conn.transaction():
                    conn.execute(SNAPSHOT_SETTINGS)
                    floor_count = conn.execute(floor_sql).rowcount
                t_floor = time.perf_counter() - t0
                if rep:
                    toolkit.append(t_tool)
                    floor.append(t_floor)
            assert count == floor_count, (count, floor_count)
            row = {
                "contacts": n,
                "recipients": count,
                "toolkit_s": median(toolkit),
                "floor_s": median(floor),
                "toolkit_runs": toolkit,
                "floor_runs": floor,
            }
            row["toolkit_rps"] = count / row["toolkit_s"]
            row["floor_rps"] = count / row["floor_s"]
            row["ratio"] = row["floor_s"] / row["toolkit_s"]
            res.snapshot.append(row)
            log(
                f"snapshot {n}: {count} recipients toolkit {row['toolkit_s']:.3f}s"
                f" floor {row['floor_s']:.3f}s ratio {row['ratio']:.2f}"
            )
            if n == cfg.sizes[-1]:
                reset_toolkit(conn)
                conn.execute("UPDATE public.campaigns SET status = 'DRAFT' WHERE id = %s", (cid,))
                conn.execute(SNAPSHOT_SETTINGS.replace(" LOCAL", ""))  # both EXPLAINs below
                res.profile["explain_snapshot"] = explain(
                    conn,
                    "INSERT INTO plunk_sql.recipients (campaign_id, contact_id)"
                    f" SELECT %s, c.id FROM public.contacts AS c WHERE {pred} ORDER BY c.id",
                    (cid,),
                )
                res.profile["explain_floor"] = explain(conn, floor_sql)
        reset_toolkit(conn)
        conn.execute("TRUNCATE bench.floor_t")
    return made


def carried_date(previous: dict, phase: str) -> str:
    """When the figures of `phase` in an earlier results.json were measured."""
    prov = previous.get("provenance", {}).get(phase, {})
    if prov.get("date"):
        return str(prov["date"])
    # results.json files written before provenance was recorded: their last write.
    return f"{previous.get('environment', {}).get('date_utc', '?')} or earlier"


def phase_seed(dbs: Databases, cfg: Config, res: Results, previous: dict | None = None) -> None:
    """Plunk's seed algorithm, the upstream patch and the toolkit, same per-email work,
    on campaigns of about cfg.seed_recipients recipients (one project each). An
    algorithm left out of cfg.algos keeps its figures from `previous` (same contacts),
    marked in the row's "carried"."""
    earlier = {r["contacts"]: r for r in (previous or {}).get("seed", [])}
    with psycopg.connect(dbs.url("main"), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        made: dict[int, dict] = {}
        for i, target in enumerate(cfg.seed_recipients):
            pid = f"seed{i}"
            n = data.contacts_for_audience(target)
            t = timed(lambda pid=pid, n=n: (data.project(conn, pid), data.contacts(conn, pid, n)))
            cond, _ = data.condition(conn, pid)
            info = {"project": pid, "segment": data.segment(conn, pid, cond), "contacts": n}
            # A live emails table: half as many delivered transactional emails as
            # contacts, so each run's cleanup analyzes a non-empty table (see
            # data.background_emails for what an emptied one does to cached plans).
            data.background_emails(conn, pid, n // 2)
            made[target] = info
            log(f"seed data: {n} contacts (+{n // 2} events, +{n // 2} emails) in {t:.1f}s")
        conn.execute("VACUUM ANALYZE")
        res.environment["background_emails"] = sum(m["contacts"] // 2 for m in made.values())
        for target in cfg.seed_recipients:
            info = made[target]
            probe = data.campaign(
                conn, f"probe-{target}", info["project"], segment_id=info["segment"]
            )
            info["predicate"] = data.predicate(conn, probe)
            conn.execute("DELETE FROM public.campaigns WHERE id = %s", (probe,))
            n = target
            reps = (
                cfg.reps
                if target != cfg.seed_recipients[-1]
                else max(1, min(cfg.reps, cfg.seed_reps_large))
            )
            row: dict[str, Any] = {"contacts": info["contacts"], "carried": {}}
            for algo in ALGOS:
                if algo not in cfg.algos:
                    old = earlier.get(info["contacts"], {})
                    if old.get(f"{algo}_s") is not None:
                        for key in ("s", "runs", "final"):
                            row[f"{algo}_{key}"] = old.get(f"{algo}_{key}")
                        row["carried"][algo] = (old.get("carried") or {}).get(algo) or carried_date(
                            previous or {}, "seed"
                        )
                        row.setdefault("recipients", old.get("recipients"))
                        log(f"seed {n}: {algo} carried over ({row['carried'][algo]})")
                    else:
                        row[f"{algo}_s"] = row[f"{algo}_final"] = None
                        row[f"{algo}_runs"] = []
                        log(f"seed {n}: {algo} not run (no earlier figure to carry over)")
                    continue
                times = []
                for rep in range(reps):
                    cid = f"{algo}-{n}-{rep}"
                    data.campaign(conn, cid, info["project"], segment_id=info["segment"])
                    checkpoint(conn)
                    t0 = time.perf_counter()
                    if algo == "toolkit":
                        conn.execute("CALL bench.toolkit_send(%s, 500)", (cid,))
                    else:
                        conn.execute(
                            "CALL bench.plunk_send(%s, %s, 500, %s)",
                            (cid, info["predicate"], algo == "patched"),
                        )
                    times.append(time.perf_counter() - t0)
                    status, total, sent = conn.execute(
                        'SELECT status::text, "totalRecipients", "sentCount"'
                        " FROM public.campaigns WHERE id = %s",
                        (cid,),
                    ).fetchone()
                    emails = conn.execute(
                        'SELECT count(*) FROM public.emails WHERE "campaignId" = %s', (cid,)
                    ).fetchone()[0]
                    row["recipients"] = emails
                    row[f"{algo}_final"] = f"{status} {sent}/{total}"
                    if algo == "seed" and rep == 0 and target == cfg.seed_recipients[-1]:
                        res.profile["explain_seed_count"] = explain(
                            conn,
                            'SELECT count(*) FROM public.emails AS e WHERE e."campaignId" = %s'
                            " AND e.status = 'SENT'",
                            (cid,),
                        )
                        res.profile["explain_seed_batch"] = explain(
                            conn,
                            "SELECT c.id FROM public.contacts AS c WHERE "
                            + info["predicate"]
                            + " AND c.id > %s ORDER BY c.id LIMIT 500",
                            ("8",),
                        )
                    # Clean up without firing FK/toolkit triggers (events.emailId has no index).
                    with conn.transaction():
                        conn.execute("SET LOCAL session_replication_role = replica")
                        conn.execute('DELETE FROM public.emails WHERE "campaignId" = %s', (cid,))
                    reset_toolkit(conn)
                    conn.execute("VACUUM ANALYZE public.emails")
                row[f"{algo}_s"] = median(times)
                row[f"{algo}_runs"] = times
                log(f"seed {n}: {algo} {row[f'{algo}_s']:.2f}s ({row[f'{algo}_final']})")
            for other in ("seed", "patched"):
                row[f"speedup_vs_{other}"] = (
                    row[f"{other}_s"] / row["toolkit_s"]
                    if row[f"{other}_s"] is not None and row["toolkit_s"] is not None
                    else None
                )
            res.seed.append(row)


def _reset_send(conn: psycopg.Connection, toolkit: bool) -> None:
    conn.execute("TRUNCATE public.emails CASCADE")
    if toolkit:
        reset_toolkit(conn)
    conn.execute("DELETE FROM public.campaigns")


def phase_send(dbs: Databases, cfg: Config, res: Results) -> None:
    urls = {"toolkit": dbs.url("send"), "floor": dbs.url("floor")}
    conns = {k: psycopg.connect(u, autocommit=True) for k, u in urls.items()}
    try:
        for conn in conns.values():
            data.project(conn, "sp")
            data.contacts(conn, "sp", cfg.send_n, events=False)
            conn.execute("VACUUM ANALYZE")
        contacts = [
            r[0]
            for r in conns["floor"]
            .execute("SELECT id FROM public.contacts WHERE subscribed ORDER BY id")
            .fetchall()
        ]
        pgss = has_pgss(conns["toolkit"])
        if pgss:
            conns["toolkit"].execute("SELECT pg_stat_statements_reset()")
        for settle in ("per_email", "batched"):
            for batch in cfg.batches:
                for workers in cfg.workers:
                    row: dict[str, Any] = {"settle": settle, "batch": batch, "workers": workers}
                    times: dict[str, list[float]] = {"toolkit": [], "floor": []}
                    waits: dict[str, list[dict]] = {"toolkit": [], "floor": []}
                    session: dict[str, set[str]] = {}
                    for rep in range(cfg.reps):
                        # Alternating rounds: drift on the shared machine hits both sides.
                        order = ("toolkit", "floor") if rep % 2 == 0 else ("floor", "toolkit")
                        for mode in order:
                            conn = conns[mode]
                            _reset_send(conn, mode == "toolkit")
                            cid = data.campaign(conn, f"send-{uuid.uuid4()}", "sp")
                            if mode == "toolkit":
                                conn.execute("SELECT plunk_sql.start_campaign(%s)", (cid,))
                            checkpoint(conn)
                            got = send.run(
                                urls[mode],
                                mode,
                                cid,
                                "sp",
                                workers,
                                batch,
                                settle,
                                contacts if mode == "floor" else None,
                                total=len(contacts),
                            )
                            assert got.emails == len(contacts), (got.emails, len(contacts))
                            if mode == "toolkit":
                                status, sent = conn.execute(
                                    'SELECT status::text, "sentCount" FROM public.campaigns'
                                    " WHERE id = %s",
                                    (cid,),
                                ).fetchone()
                                assert (status, sent) == ("SENT", got.emails), (
                                    status,
                                    sent,
                                    got.emails,
                                )
                            times[mode].append(got.seconds)
                            waits[mode].append(got.waits.as_dict())
                            for key, values in got.session.items():
                                session.setdefault(key, set()).update(values)
                    for mode in ("toolkit", "floor"):
                        row[f"{mode}_s"] = median(times[mode])
                        row[f"{mode}_runs"] = times[mode]
                        row[f"{mode}_rps"] = len(contacts) / row[f"{mode}_s"]
                        row[f"{mode}_waits"] = waits[mode]
                    row["recipients"] = len(contacts)
                    row["slowdown"] = row["toolkit_s"] / row["floor_s"] - 1
                    row["ratio"] = row["toolkit_s"] / row["floor_s"]
                    row["session"] = {k: sorted(v) for k, v in session.items()}
                    res.send.append(row)
                    log(
                        f"send {settle} batch {batch} x{workers}: toolkit {row['toolkit_rps']:.0f}/s"
                        f" floor {row['floor_rps']:.0f}/s ({row['ratio']:.2f}x)"
                        f" lock samples {sum(w['lock_samples'] for w in row['toolkit_waits'])}"
                        f" (floor {sum(w['lock_samples'] for w in row['floor_waits'])})"
                    )
        if pgss:
            res.profile["send_statements"] = top_statements(conns["toolkit"])
    finally:
        for conn in conns.values():
            conn.close()


# Single-row statements on emails, each its own transaction, looped server-side
# (no client round trip in the figure).
UPDATE_EACH = (
    "CREATE OR REPLACE PROCEDURE bench.update_each(p_ids text[], p_status text)"
    " LANGUAGE plpgsql AS $$ DECLARE v text; BEGIN FOREACH v IN ARRAY p_ids LOOP"
    ' UPDATE public.emails SET status = p_status::public."EmailStatus",'
    " \"sentAt\" = timezone('UTC', now()), \"updatedAt\" = timezone('UTC', now())"
    " WHERE id = v; COMMIT; END LOOP; END $$"
)
INSERT_EACH = (
    "CREATE OR REPLACE PROCEDURE bench.insert_each("
    " p_ids text[], p_contacts text[], p_campaign text, p_source text)"
    " LANGUAGE plpgsql AS $$ BEGIN FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP"
    ' INSERT INTO public.emails (id, "contactId", subject, body, "from", "sourceType",'
    ' "campaignId", status, "projectId", "updatedAt")'
    " VALUES (p_ids[i], p_contacts[i], 's', 'b', 'f@example.com',"
    " p_source::public.\"EmailSourceType\", p_campaign, 'SENDING', 'sp',"
    " timezone('UTC', now())); COMMIT; END LOOP; END $$"
)

# (label, statement, which rows), in the order they run on each side.
TRIGGER_STEPS = (
    ("campaign", "INSERT", "campaign rows (claimed recipient -> in flight)"),
    ("non_campaign", "INSERT", "non-campaign rows"),
    ("campaign", "UPDATE", "campaign rows, SENDING -> SENT"),
    ("non_campaign", "UPDATE", "non-campaign rows, SENDING -> SENT"),
    ("campaign_delivered", "UPDATE", "campaign rows, SENT -> DELIVERED"),
)


def phase_triggers(dbs: Databases, cfg: Config, res: Results) -> None:
    """Single-row INSERTs and status UPDATEs on emails, one statement and commit each
    (server-side loop, no client round trips), with the toolkit's triggers (send db)
    and without (floor db), for rows of a toolkit campaign and rows with no campaign.
    Toolkit and floor alternate round by round."""
    out: dict[str, list[float]] = {}
    conns = {
        "toolkit": psycopg.connect(dbs.url("send"), autocommit=True),
        "floor": psycopg.connect(dbs.url("floor"), autocommit=True),
    }
    counted = 0
    try:
        for conn in conns.values():
            # The send phase makes project "sp"; when it was not run, make it here.
            if not conn.execute("SELECT 1 FROM public.projects WHERE id = 'sp'").fetchone():
                data.project(conn, "sp")
                data.contacts(conn, "sp", cfg.send_n, events=False)
                conn.execute("VACUUM ANALYZE")
            conn.execute("SET synchronous_commit = off")
            conn.execute(UPDATE_EACH)
            conn.execute(INSERT_EACH)
        # A 5% target on a shared machine: more rounds than elsewhere (each costs seconds).
        for rep in range(2 * cfg.reps + 2):  # rep 0 warms up, unmeasured
            order = ("toolkit", "floor") if rep % 2 == 0 else ("floor", "toolkit")
            for mode in order:
                conn = conns[mode]
                _reset_send(conn, mode == "toolkit")
                cid = data.campaign(conn, f"trig-{rep}", "sp")
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM public.contacts WHERE subscribed ORDER BY id LIMIT %s",
                        (cfg.trig_n,),
                    ).fetchall()
                ]
                counted = len(ids)
                if mode == "toolkit":
                    conn.execute("SELECT plunk_sql.start_campaign(%s)", (cid,))
                    claimed = 0
                    while True:  # claim_batch takes at most 10,000 a call
                        got = conn.execute(
                            "SELECT count(*) FROM plunk_sql.claim_batch(%s, 10000, '1 hour')",
                            (cid,),
                        ).fetchone()[0]
                        if not got:
                            break
                        claimed += got
                    assert claimed >= len(ids), (claimed, len(ids))  # every recipient
                conn.execute("VACUUM ANALYZE public.emails")
                checkpoint(conn)
                camp = [f"c-{i}" for i in range(len(ids))]
                plain = [f"t-{i}" for i in range(len(ids))]
                calls = {
                    ("campaign", "INSERT"): (
                        "CALL bench.insert_each(%s, %s, %s, 'CAMPAIGN')",
                        (camp, ids, cid),
                    ),
                    ("non_campaign", "INSERT"): (
                        "CALL bench.insert_each(%s, %s, NULL, 'TRANSACTIONAL')",
                        (plain, ids),
                    ),
                    ("campaign", "UPDATE"): ("CALL bench.update_each(%s, 'SENT')", (camp,)),
                    ("non_campaign", "UPDATE"): ("CALL bench.update_each(%s, 'SENT')", (plain,)),
                    # Later status moves on settled recipients: the no-op path.
                    ("campaign_delivered", "UPDATE"): (
                        "CALL bench.update_each(%s, 'DELIVERED')",
                        (camp,),
                    ),
                }
                for label, statement, _ in TRIGGER_STEPS:
                    sql, params = calls[(label, statement)]
                    t = timed(lambda c=conn, q=sql, p=params: c.execute(q, p))
                    if rep:
                        out.setdefault(f"{mode}_{statement}_{label}", []).append(t)
                if mode == "toolkit":
                    settled = conn.execute(
                        "SELECT count(*) FROM plunk_sql.recipients WHERE campaign_id = %s"
                        " AND state = 'sent'",
                        (cid,),
                    ).fetchone()[0]
                    assert settled == len(camp), (settled, len(camp))
    finally:
        for conn in conns.values():
            conn.close()
    for label, statement, _ in TRIGGER_STEPS:
        key = f"{statement}_{label}"
        tool, floor = median(out[f"toolkit_{key}"]), median(out[f"floor_{key}"])
        row = {
            "rows": label,
            "statement": statement,
            "updates": counted,
            "toolkit_us": tool / counted * 1e6,
            "floor_us": floor / counted * 1e6,
            "overhead": tool / floor - 1,
            "ratio": tool / floor,
            "toolkit_runs": out[f"toolkit_{key}"],
            "floor_runs": out[f"floor_{key}"],
        }
        res.triggers.append(row)
        log(
            f"triggers {statement} {label}: {row['toolkit_us']:.1f} us vs {row['floor_us']:.1f} us"
            f" per statement ({row['ratio']:.3f}x)"
        )


def phase_sweep(dbs: Databases, cfg: Config, res: Results) -> None:
    """plunk_sql.sweep() on a campaign of sweep_n recipients: nothing to do, then
    with sweep_expired expired leases."""
    with psycopg.connect(dbs.url("main"), autocommit=True) as conn:
        proc = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc AS p"
            " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'plunk_sql' AND p.proname = 'sweep' LIMIT 1"
        ).fetchone()
        if proc is None:
            res.sweep = {"status": "TODO: plunk_sql.sweep() is not on this branch yet"}
            log("sweep: TODO (plunk_sql.sweep() missing)")
            return
        n, k = cfg.sweep_n, cfg.sweep_expired
        data.project(conn, "swp")
        conn.execute(
            'INSERT INTO public.contacts (id, email, "projectId", "updatedAt")'
            " SELECT 'sw' || i, 'sw' || i || '@example.com', 'swp', timezone('UTC', now())"
            " FROM generate_series(1, %s::integer) AS i",
            (n,),
        )
        cid = data.campaign(conn, "sweep", "swp")
        conn.execute("SELECT plunk_sql.start_campaign(%s)", (cid,))
        # The set-up UPDATEs below join generated ids to the snapshot: planned on the
        # statistics of the truncated table (an earlier phase's reset) they can pick
        # a nested loop over 1M rows per id. Analyse first.
        conn.execute("ANALYZE plunk_sql.recipients")
        # Half the campaign settled as sent (emails exist only for the in-flight
        # ones: the sweep does not read them), k claimed under a live lease.
        half = n // 2
        conn.execute(
            # A sent recipient has its email's id (CHECK recipients_email_id_when_linked).
            "UPDATE plunk_sql.recipients SET state = 'sent', settled_at = now(),"
            " email_id = 'sw-email-' || contact_id"
            " WHERE campaign_id = %s AND contact_id IN"
            " (SELECT 'sw' || i FROM generate_series(1, %s::integer) AS i)",
            (cid, half),
        )
        conn.execute(
            # The counters: those sent recipients leave the pool's open (sql/48_counters.sql).
            "UPDATE plunk_sql.run_slots SET open = open - %s, sent = sent + %s"
            " WHERE campaign_id = %s AND slot = 0",
            (half, half, cid),
        )
        conn.execute(
            "UPDATE plunk_sql.recipients SET state = 'claimed', claims = 1,"
            " lease_expires_at = now() + interval '1 hour'"
            " WHERE campaign_id = %s AND contact_id IN"
            " (SELECT 'sw' || i FROM generate_series(%s::integer, %s::integer) AS i)",
            (cid, half + 1, half + k),
        )
        conn.execute("VACUUM ANALYZE plunk_sql.recipients")
        # One call handles every expired lease (the default sweep_batch_size is 1000).
        conn.execute(
            "UPDATE plunk_sql.settings SET value = %s WHERE key = 'sweep_batch_size'", (str(k),)
        )
        call = "SELECT * FROM plunk_sql.sweep()"
        empty, busy = [], []
        for rep in range(cfg.reps + 1):
            t = timed(lambda: conn.execute(call).fetchall())
            if rep:
                empty.append(t)
        expected = None
        for rep in range(cfg.reps + 1):
            conn.execute(
                "UPDATE plunk_sql.recipients SET state = 'claimed', claims = claims + 1,"
                " lease_expires_at = now() - interval '1 minute'"
                " WHERE campaign_id = %s AND contact_id IN"
                " (SELECT 'sw' || i FROM generate_series(%s::integer, %s::integer) AS i)",
                (cid, half + 1, half + k),
            )
            conn.execute("VACUUM ANALYZE plunk_sql.recipients")
            checkpoint(conn)
            t = timed(lambda: conn.execute(call).fetchall())
            pending_after = conn.execute(
                "SELECT count(*) FROM plunk_sql.recipients WHERE campaign_id = %s"
                " AND state = 'claimed'",
                (cid,),
            ).fetchone()[0]
            expected = pending_after
            if rep:
                busy.append(t)
        res.sweep = {
            "status": "measured",
            "function": proc[0],
            "recipients": n,
            "expired": k,
            "empty_ms": median(empty) * 1e3,
            "expired_ms": median(busy) * 1e3,
            "claimed_left_after": expected,
            "empty_runs": empty,
            "expired_runs": busy,
        }
        res.profile["explain_sweep_empty"] = explain(conn, call)
        log(
            f"sweep: empty {res.sweep['empty_ms']:.1f} ms, {k} expired {res.sweep['expired_ms']:.1f} ms"
        )


# --------------------------------------------------------------------------- entry


def load_previous(out_dir: Path) -> dict | None:
    """The figures a run may carry over: the results.json this run replaces, or, when
    an earlier run was killed, the one that run had replaced (results.base.json)."""
    base = out_dir / "bench" / "results.base.json"
    path = out_dir / "bench" / "results.json"
    for candidate in (base, path):
        if candidate.exists():
            previous = json.loads(candidate.read_text())
            if not base.exists():
                # Kept until this run completes: a killed run must not lose it.
                base.write_text(candidate.read_text())
            return previous
    return None


def merge(res: Results, previous: dict | None) -> dict:
    """results.json's content: this run's phases, and for every phase it did not run the
    figures of `previous` (the same mode, quick or full), each phase labelled in
    "provenance" with where its figures come from."""
    merged = asdict(res)
    now = res.environment.get("date_utc")
    same_mode = previous is not None and bool(previous.get("config", {}).get("quick")) == bool(
        res.config.get("quick")
    )
    provenance: dict[str, dict[str, Any]] = {}
    for name in PHASES:
        if name in res.durations:
            provenance[name] = {"status": "measured", "date": now, "seconds": res.durations[name]}
        elif same_mode and previous and previous.get(name):
            merged[name] = previous[name]
            old = previous.get("provenance", {}).get(name, {})
            provenance[name] = {
                "status": "carried over",
                "date": carried_date(previous, name),
                "seconds": old.get("seconds"),
            }
        else:
            provenance[name] = {"status": "not run"}
        if name in res.failures:
            provenance[name]["failed"] = res.failures[name]
    merged["provenance"] = provenance
    if same_mode and previous:
        # Figures carried over keep what was recorded about them.
        merged["profile"] = {**previous.get("profile", {}), **merged["profile"]}
        merged["environment"] = {**previous.get("environment", {}), **merged["environment"]}
    return merged


def _save(res: Results, out_dir: Path, previous: dict | None, partial: bool = False) -> None:
    """results.json after every phase (a killed run keeps what it measured), with the
    figures of the phases not (yet) run carried over from `previous`."""
    (out_dir / "bench").mkdir(parents=True, exist_ok=True)
    merged = merge(res, previous)
    merged["complete"] = not partial
    (out_dir / "bench" / "results.json").write_text(json.dumps(merged, indent=1, default=str))
    if not partial:
        (out_dir / "bench" / "results.base.json").unlink(missing_ok=True)


def run(
    *,
    scale: int | None = None,
    quick: bool = False,
    database_url: str | None = None,
    out_dir: Path,
    keep: bool = False,
    apply_sql: list[Path] = (),
    overrides: dict[str, Any] | None = None,
    phases: list[str] | None = None,
) -> Results:
    """Run the phases (all, or `phases`) and write results.json, BENCHMARKS.md and the
    plots into out_dir; phases not run keep the figures of the last results.json."""
    from bench import report
    from plunk_sql.testing.cluster import start_cluster

    cfg = Config.make(scale, quick)
    for key, value in (overrides or {}).items():
        if value is not None:
            setattr(cfg, key, value)
    unknown = sorted(set(phases or ()) - set(PHASES)) + sorted(set(cfg.algos) - set(ALGOS))
    if unknown:
        raise ValueError(f"unknown phase or algorithm: {', '.join(unknown)}")
    res = Results(config={**asdict(cfg), "phases": phases or list(PHASES)})
    previous = load_previous(out_dir)
    cluster = None
    if database_url:
        admin_url, server = database_url, "DATABASE_URL (existing server)"
    else:
        # fsync on (fast_unsafe=False): throughput figures include real commits.
        cluster = start_cluster(
            fast_unsafe=False,
            settings={
                "shared_preload_libraries": "'pg_stat_statements'",
                "pg_stat_statements.track": "all",
            },
        )
        admin_url = cluster.url()
        server = "throwaway cluster (plunk_sql.testing.cluster.start_cluster, fast_unsafe=False)"
    log(f"server: {server} {conninfo_to_dict(admin_url).get('port', '')}")
    try:
        res.environment["apply_sql"] = [str(p) for p in apply_sql]
        with Databases(admin_url, keep=keep, apply_sql=apply_sql) as dbs:
            with psycopg.connect(dbs.url("main"), autocommit=True) as conn:
                res.environment.update(environment(conn, server))
            if res.environment.get("settings", {}).get("fsync") != "on":
                log("WARNING: fsync is off on this server: the send-path figures are not Plunk's")
            made: dict[int, dict] = {}
            steps = {
                "snapshot": lambda: made.update(phase_snapshot(dbs, cfg, res)),
                "seed": lambda: phase_seed(dbs, cfg, res, previous),
                "send": lambda: phase_send(dbs, cfg, res),
                "triggers": lambda: phase_triggers(dbs, cfg, res),
                "sweep": lambda: phase_sweep(dbs, cfg, res),
            }
            for name, step in steps.items():
                if phases and name not in phases:
                    continue
                loadavg(f"{name} start", res)
                t0 = time.perf_counter()
                try:
                    step()
                except (psycopg.Error, AssertionError, RuntimeError) as exc:
                    # One phase broken by a toolkit change must not cost the other phases
                    # of a long run: its figures are dropped (they may be half-written),
                    # the earlier ones carried over, and the run ends non-zero.
                    first = (str(exc).strip().splitlines() or [""])[0]
                    res.failures[name] = f"{type(exc).__name__}: {first}"[:300]
                    log(f"phase {name} FAILED after {time.perf_counter() - t0:.1f}s: {exc!r}")
                    setattr(res, name, type(getattr(res, name))())
                    continue
                res.durations[name] = time.perf_counter() - t0
                log(f"phase {name}: {res.durations[name]:.1f}s")
                loadavg(f"{name} end", res)
                _save(res, out_dir, previous, partial=True)
    finally:
        if cluster is not None:
            cluster.destroy()
    _save(res, out_dir, previous)
    report.write(report.load(out_dir / "bench" / "results.json"), out_dir)
    return res
