"""BENCHMARKS.md and the PNG plots from a Results object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ANALYSIS = Path(__file__).with_name("ANALYSIS.md")


def _fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def plots(res, fig_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    made = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for ax, settle in zip(axes, ("per_email", "batched"), strict=True):
        rows = [r for r in res.send if r["settle"] == settle]
        for batch in sorted({r["batch"] for r in rows}):
            rs = sorted((r for r in rows if r["batch"] == batch), key=lambda r: r["workers"])
            xs = [r["workers"] for r in rs]
            (line,) = ax.plot(
                xs, [r["toolkit_rps"] for r in rs], "o-", label=f"toolkit, batch {batch}"
            )
            ax.plot(
                xs,
                [r["floor_rps"] for r in rs],
                "s--",
                color=line.get_color(),
                alpha=0.6,
                label=f"floor, batch {batch}",
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
        ax.set_xlabel("worker processes")
        ax.set_ylabel("recipients / s")
        ax.set_title("settle: one UPDATE per email" if settle == "per_email" else "settle: batched")
        ax.grid(alpha=0.3)
        if rows:
            ax.legend(fontsize=7)
    fig.suptitle("Send path throughput (claim -> INSERT -> SENDING -> SENT), 2-core machine")
    fig.tight_layout()
    path = fig_dir / "send_throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    made.append(path)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    xs = [r["recipients"] for r in res.snapshot]
    if not res.snapshot or not res.seed:
        for a in axes:
            a.text(0.5, 0.5, "not measured in this run", ha="center", va="center")
        fig.savefig(fig_dir / "time_vs_size.png", dpi=110)
        plt.close(fig)
        return [*made, fig_dir / "time_vs_size.png"]
    ax.plot(xs, [r["toolkit_s"] for r in res.snapshot], "o-", label="snapshot (start_campaign)")
    ax.plot(xs, [r["floor_s"] for r in res.snapshot], "s--", label="floor: INSERT ... SELECT")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("recipients in the audience")
    ax.set_ylabel("seconds")
    ax.set_title("Snapshot time")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax = axes[1]
    xs = [r["recipients"] for r in res.seed]
    for key, label, style in (
        ("seed_s", "Plunk seed algorithm", "o-"),
        ("patched_s", "Plunk upstream patch", "^-"),
        ("toolkit_s", "plunk_sql", "s-"),
    ):
        ax.plot(xs, [r[key] for r in res.seed], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("recipients")
    ax.set_ylabel("seconds (whole campaign, serial)")
    ax.set_title("Whole campaign against Plunk's algorithm")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = fig_dir / "time_vs_size.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    made.append(path)
    return made


def targets(res) -> list[list[str]]:
    rows = []
    if res.seed:
        big = res.seed[-1]
        growing = all(
            a["speedup_vs_seed"] < b["speedup_vs_seed"]
            for a, b in zip(res.seed, res.seed[1:], strict=False)
        )
        ok = big["speedup_vs_seed"] >= 10 and growing
        rows.append(
            [
                f">= 10x faster than the seed algorithm at {big['recipients']:,} recipients, growing",
                ", ".join(f"{r['speedup_vs_seed']:.1f}x at {r['recipients']:,}" for r in res.seed),
                "met" if ok else "not met",
            ]
        )
    if res.snapshot:
        worst = min(r["ratio"] for r in res.snapshot)
        rows.append(
            [
                "snapshot >= 0.7x its floor",
                ", ".join(f"{r['ratio']:.2f}x at {r['recipients']:,}" for r in res.snapshot),
                "met" if worst >= 0.7 else "not met",
            ]
        )
    if res.send:
        worst = max(res.send, key=lambda r: r["slowdown"])
        over = [r for r in res.send if r["slowdown"] > 0.25]
        rows.append(
            [
                "send path <= 25% slower than its floor",
                f"worst {worst['slowdown'] * 100:+.0f}% ({worst['settle']}, batch {worst['batch']},"
                f" {worst['workers']} workers); {len(over)} of {len(res.send)} configurations over 25%",
                "met" if not over else "not met",
            ]
        )
        eight = [r for r in res.send if r["workers"] == max(x["workers"] for x in res.send)]
        locks = sum(w["lock_samples"] for r in eight for w in r["toolkit_waits"])
        samples = sum(w["samples"] for r in eight for w in r["toolkit_waits"])
        rows.append(
            [
                f"no lock waits between workers ({eight[0]['workers']}-worker runs)",
                f"{locks} of {samples} pg_stat_activity samples saw a Lock wait",
                "met" if locks == 0 else "not met",
            ]
        )
    if res.sweep.get("status") == "measured":
        rows.append(
            [
                f"empty sweep < 50 ms at {res.sweep['recipients']:,} recipients",
                f"{res.sweep['empty_ms']:.1f} ms",
                "met" if res.sweep["empty_ms"] < 50 else "not met",
            ]
        )
    else:
        rows.append(["empty sweep < 50 ms at 1M recipients", res.sweep.get("status", "-"), "TODO"])
    return rows


def write(res, out_dir: Path) -> Path:
    fig_dir = out_dir / "bench" / "figures"
    figs = plots(res, fig_dir)
    env = res.environment
    cfg = res.config
    s = []
    s.append("# Benchmarks\n")
    s.append(
        "Generated by `make bench` (`python -m bench`); `make bench-quick` runs a small version. "
        "Every figure is the median of repeated runs in one run of the suite, on the same data and "
        "the same server. **The numbers come from a 2-core virtual machine** (the load averages "
        "below show whether anything else ran); read the ratios, not the absolute rates.\n"
    )
    s.append("## Machine and server\n")
    s.append(
        _table(
            ["", ""],
            [
                ["PostgreSQL", env.get("postgres", "?")],
                ["server", env.get("server", "?")],
                ["CPU", f"{env.get('cpu')} ({env.get('cpus')} cores, shared)"],
                ["memory", env.get("memory", "?")],
                ["Python", env.get("python", "?")],
                ["date", env.get("date_utc", "?")],
                *[[k, v] for k, v in sorted(env.get("settings", {}).items())],
                ["mode", "quick" if cfg.get("quick") else "full"],
                [
                    "SQL applied after migrate",
                    ", ".join(f"`{p}`" for p in env.get("apply_sql", []))
                    or "none (the branch as is)",
                ],
                ["repetitions", f"{cfg['reps']} (median; 100k seed run: {cfg['seed_reps_large']})"],
            ],
        )
    )
    s.append("\nLoad average (1 min / 5 min) at each phase boundary:\n")
    s.append(
        _table(
            ["phase", "load1", "load5"],
            [[r["phase"], r["load1"], r["load5"]] for r in res.load],
        )
    )
    s.append("\n## Targets\n")
    s.append(_table(["target", "measured", "verdict"], targets(res)))
    s.append("\n![throughput against workers](bench/figures/send_throughput.png)\n")
    s.append("![time against audience size](bench/figures/time_vs_size.png)\n")

    s.append("## 1. Snapshot\n")
    s.append(
        "`plunk_sql.start_campaign` on a campaign whose audience is a dynamic segment with a mixed "
        "condition (JSON equality, a numeric comparison, a `createdAt` bound"
        + (
            ", an event filter"
            if env.get("event_filter")
            else "; no event filter: this toolkit version does not compile `event.*` yet"
        )
        + ", OR of two AND groups), against the floor "
        "`INSERT INTO t SELECT id FROM contacts WHERE <same predicate>` (predicate text from "
        "`plunk_sql.audience_predicate`; `t` is a bare table without index). One project per size; "
        "one warm-up run, then the median (five times as many repetitions for the two smaller sizes, "
        "whose runs take milliseconds).\n"
    )
    s.append(
        _table(
            [
                "contacts in project",
                "recipients",
                "snapshot s",
                "floor s",
                "snapshot rec/s",
                "floor rec/s",
                "ratio (floor/snapshot)",
            ],
            [
                [
                    _fmt(r["contacts"]),
                    _fmt(r["recipients"]),
                    _fmt(r["toolkit_s"], 3),
                    _fmt(r["floor_s"], 3),
                    _fmt(r["toolkit_rps"]),
                    _fmt(r["floor_rps"]),
                    f"{r['ratio']:.2f}x",
                ]
                for r in res.snapshot
            ],
        )
    )
    s.append("\n## 2. Send path\n")
    s.append(
        f"{res.send[0]['recipients'] if res.send else 0:,} recipients per run. Toolkit workers: "
        "`claim_batch` -> one INSERT of the batch's emails -> SENDING -> SENT, settled one "
        'autocommitted UPDATE per email (`... WHERE id = $1 AND "sentAt" IS NULL`, as Plunk\'s '
        "worker) or one UPDATE per batch. Floor: the same INSERT/UPDATE statements on a database "
        "without the toolkit, each worker on a fixed slice of the contacts (no claim). Each worker is "
        "a process with its own connection. Lock samples: `pg_stat_activity` polled every 10 ms "
        "during the toolkit runs, samples in which a worker waited on `wait_event_type = 'Lock'`.\n"
    )
    s.append(
        _table(
            [
                "settle",
                "batch",
                "workers",
                "toolkit rec/s",
                "floor rec/s",
                "toolkit vs floor",
                "lock samples / samples",
            ],
            [
                [
                    r["settle"],
                    r["batch"],
                    r["workers"],
                    _fmt(r["toolkit_rps"]),
                    _fmt(r["floor_rps"]),
                    f"{r['slowdown'] * 100:+.0f}%",
                    f"{sum(w['lock_samples'] for w in r['toolkit_waits'])} / "
                    f"{sum(w['samples'] for w in r['toolkit_waits'])}",
                ]
                for r in res.send
            ],
        )
    )
    lock_kinds: dict[str, int] = {}
    for r in res.send:
        for w in r["toolkit_waits"]:
            for k, v in (w.get("lock_events") or {}).items():
                lock_kinds[k] = lock_kinds.get(k, 0) + v
    if lock_kinds:
        s.append(
            "\nLock waits seen (wait_event, worker-samples): "
            + ", ".join(f"`{k}` {v}" for k, v in sorted(lock_kinds.items(), key=lambda x: -x[1]))
            + "\n"
        )
    s.append("\n## 3. Against Plunk's algorithm\n")
    s.append(
        "Whole campaign, serial, server-side (`bench/procs.sql`), same per-email statements on every "
        "side: one INSERT per contact, UPDATE to SENDING, UPDATE to SENT, each its own transaction "
        "(`synchronous_commit = off` in this session so fsync latency does not mask the algorithms). "
        "Seed: the audience query re-run per batch of 500 with a keyset cursor on contact id, and "
        'after every email `"sentCount"` = `count(*)` of SENT emails compared with '
        '`"totalRecipients"`. Patched: a probe for open (PENDING/SENDING) emails first, the count only '
        'when none is open, `"totalRecipients"` rewritten to the emails created. plunk_sql: one '
        "snapshot, `claim_batch(500)`, completion by the triggers. The `emails` table also holds "
        f"{_fmt(env.get('background_emails', 0))} delivered transactional emails (none before the "
        "2026-11-28 runs): analyzed empty, the procedure's cached plan for "
        "`UPDATE emails ... WHERE id = $1` stayed a sequential scan as the campaign's emails "
        "piled up, which made the plunk_sql column grow from 1.1 to 6.9 ms per email at 27k.\n"
    )
    s.append(
        _table(
            [
                "recipients",
                "seed s",
                "patched s",
                "plunk_sql s",
                "speed-up vs seed",
                "vs patched",
                "final (seed / patched / plunk_sql)",
            ],
            [
                [
                    _fmt(r["recipients"]),
                    _fmt(r["seed_s"], 2),
                    _fmt(r["patched_s"], 2),
                    _fmt(r["toolkit_s"], 2),
                    f"{r['speedup_vs_seed']:.1f}x",
                    f"{r['speedup_vs_patched']:.2f}x",
                    f"{r['seed_final']} / {r['patched_final']} / {r['toolkit_final']}",
                ]
                for r in res.seed
            ],
        )
    )
    s.append("\n## 4. Trigger overhead\n")
    s.append(
        "Status UPDATEs on `emails`, one statement and one commit each, looped server-side "
        "(`synchronous_commit = off`), with the toolkit's triggers and without them (a database "
        "without the toolkit). Campaign rows belong to a toolkit campaign (SENDING -> SENT settles "
        "the recipient); non-campaign rows have no `campaignId`; DELIVERED after SENT is the "
        "no-op path on settled recipients.\n"
    )
    labels = {
        "campaign": "campaign rows, SENDING -> SENT",
        "non_campaign": "non-campaign rows, SENDING -> SENT",
        "campaign_delivered": "campaign rows, SENT -> DELIVERED",
    }
    s.append(
        _table(
            ["rows", "updates", "with toolkit us/UPDATE", "without us/UPDATE", "overhead"],
            [
                [
                    labels[r["rows"]],
                    _fmt(r["updates"]),
                    _fmt(r["toolkit_us"], 1),
                    _fmt(r["floor_us"], 1),
                    f"{r['overhead'] * 100:+.1f}%",
                ]
                for r in res.triggers
            ],
        )
    )
    s.append("\n## 5. Sweep\n")
    sw = res.sweep
    if sw.get("status") == "measured":
        s.append(
            _table(
                ["case", "recipients", "median ms"],
                [
                    ["nothing to do", _fmt(sw["recipients"]), _fmt(sw["empty_ms"], 1)],
                    [
                        f"{sw['expired']:,} expired leases",
                        _fmt(sw["recipients"]),
                        _fmt(sw["expired_ms"], 1),
                    ],
                ],
            )
        )
        s.append(f"\nFunction: `{sw['function']}`.\n")
    else:
        s.append(f"{sw.get('status', 'not run')}.\n")
    s.append("\n## Profile\n")
    if res.profile.get("send_statements"):
        s.append(
            "Top statements of the send phase by total time (`pg_stat_statements`, track = all):\n"
        )
        s.append(
            _table(
                ["calls", "total ms", "mean ms", "rows", "blocks", "query"],
                [
                    [
                        _fmt(q["calls"]),
                        _fmt(q["total_ms"], 1),
                        f"{q['mean_ms']:.4f}",
                        _fmt(q["rows"]),
                        _fmt(q["blocks"]),
                        "`" + q["query"].replace("|", "\\|").replace("`", "'") + "`",
                    ]
                    for q in res.profile["send_statements"]
                ],
            )
        )
    for key, title in (
        ("explain_snapshot", "Snapshot INSERT (largest size)"),
        ("explain_floor", "Floor INSERT (largest size)"),
        ("explain_seed_batch", "Seed: per-batch audience query"),
        ("explain_seed_count", "Seed: per-email completion count (after the run)"),
        ("explain_sweep_empty", "Sweep with nothing to do"),
    ):
        if key in res.profile:
            s.append(
                f"\n<details><summary>{title}: EXPLAIN (ANALYZE, BUFFERS)</summary>\n\n```\n{res.profile[key]}\n```\n</details>\n"
            )
    if ANALYSIS.exists():
        s.append("\n" + ANALYSIS.read_text())
    s.append(
        "\nFigures: "
        + ", ".join(f"`{p.relative_to(out_dir)}`" for p in figs)
        + "; raw numbers: `bench/results.json`.\n"
    )
    path = out_dir / "BENCHMARKS.md"
    path.write_text("\n".join(s))
    return path


def main(argv: list[str] | None = None) -> int:
    """Re-render BENCHMARKS.md and the plots from a results.json (no measuring):
    python -m bench.report [OUT_DIR]  (reads OUT_DIR/bench/results.json)."""
    import json
    import sys
    from types import SimpleNamespace

    out_dir = Path((argv if argv is not None else sys.argv[1:] or ["."])[0])
    raw = json.loads((out_dir / "bench" / "results.json").read_text())
    write(SimpleNamespace(**raw), out_dir)
    print(f"wrote {out_dir / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
