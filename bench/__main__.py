"""`python -m bench` (`make bench`, `make bench-quick`): measure the toolkit against
Plunk's algorithm and the raw PostgreSQL floor, and write BENCHMARKS.md with its plots.

The benchmark lives in the checkout's bench/ package, not in the wheel, and the
plunk_sql package never imports it. Without --database-url/$DATABASE_URL it
starts a throwaway cluster; with one, its user needs CREATEDB (three scratch
databases are made and dropped).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench import runner

CHECKOUT = Path(__file__).resolve().parents[1]


def run(args: argparse.Namespace) -> int:
    url = getattr(args, "database_url", None) or os.environ.get("DATABASE_URL")
    unknown = sorted(set(args.phases or ()) - set(runner.PHASES)) + sorted(
        set(args.algos or ()) - set(runner.ALGOS)
    )
    if unknown:
        print(f"python -m bench: unknown phase or algorithm: {', '.join(unknown)}", file=sys.stderr)
        return 2
    out = CHECKOUT
    if args.out:
        out = Path(args.out)
    elif args.quick:  # a quick run never replaces the checkout's report unless asked to
        out = CHECKOUT / "build" / "bench-quick"
    res = runner.run(
        scale=args.scale,
        quick=args.quick,
        database_url=url,
        out_dir=out,
        keep=args.keep,
        apply_sql=[Path(p) for p in args.apply_sql],
        overrides={
            "workers": args.workers,
            "batches": args.batches,
            "reps": args.reps,
            "send_n": args.send_recipients,
            "algos": args.algos,
        },
        phases=args.phases,
    )
    print(f"wrote {out / 'BENCHMARKS.md'} (phases run: {', '.join(res.durations) or 'none'})")
    for name, error in res.failures.items():
        print(f"python -m bench: phase {name} FAILED: {error}", file=sys.stderr)
    return 1 if res.failures else 0


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench", description="run the benchmarks and write BENCHMARKS.md"
    )
    p.add_argument(
        "--database-url", help="a server to benchmark on (default: $DATABASE_URL, else throwaway)"
    )
    p.add_argument(
        "--scale",
        type=int,
        default=None,
        help="largest audience (default 1,000,000; 20,000 with --quick); sizes are N/100, N/10, N",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, one run each (< 2 minutes)")
    p.add_argument(
        "--out",
        help="directory for BENCHMARKS.md and bench/ (default: the checkout; with --quick, "
        "build/bench-quick); README.md and docs/performance.md there get the new figures",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch databases")
    p.add_argument("--workers", type=_ints, help="worker process counts, e.g. 1,2,4,8")
    p.add_argument("--batches", type=_ints, help="claim batch sizes, e.g. 100,500,2000")
    p.add_argument("--reps", type=int, help="measured repetitions per figure (median)")
    p.add_argument("--send-recipients", type=int, help="contacts in the send-path campaign")
    p.add_argument(
        "--phases",
        type=_names,
        help="run only these of snapshot,seed,send,triggers,sweep; the others keep the "
        "figures of the last results.json in --out (BENCHMARKS.md marks them carried over)",
    )
    p.add_argument(
        "--algos",
        type=_names,
        help="whole-campaign algorithms the seed phase runs, of seed,patched,toolkit (default "
        "all); e.g. patched,toolkit skips Plunk's quadratic seed algorithm (26 min at 100k "
        "recipients) and carries its figures over from the last results.json",
    )
    p.add_argument(
        "--apply-sql",
        action="append",
        default=[],
        metavar="FILE",
        help="extra SQL applied after migrate (to measure a proposed fix); recorded in the report",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
