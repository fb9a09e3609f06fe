"""The benchmark report without measuring: hand-written sections survive a
regeneration, figures a partial run did not measure are labelled as carried over,
the lock-wait target leaves out the campaign's last 1%, and the committed
BENCHMARKS.md, README.md and docs/performance.md are what bench/results.json gives."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import report, runner, send, targets

CHECKOUT = Path(__file__).resolve().parents[1]


def _waits(samples: int, locked: int, locked_late: int = 0) -> dict[str, Any]:
    """A run's wait summary: `samples` samples, one per email settled, the first `locked`
    waiting on a lock; then `locked_late` lock samples once every email has settled."""
    w = send.WaitSamples()
    w.raw = [
        send.Sample(
            at=i, settled=i, lock_events=("Lock:tuple",) if i < locked else (), other_events=()
        )
        for i in range(samples)
    ] + [
        send.Sample(at=samples, settled=samples, lock_events=("Lock:tuple",), other_events=())
        for _ in range(locked_late)
    ]
    w.summarise(total=samples, start=0, seconds=samples)
    return w.as_dict()


def _results(date: str = "2026-12-01 10:00 UTC", quick: bool = False) -> runner.Results:
    """A hand-made full set of results: every phase, every issue 14 row."""
    res = runner.Results(config={"quick": quick, "reps": 1, "seed_reps_large": 1})
    res.environment = {"date_utc": date, "settings": {"fsync": "on", "synchronous_commit": "on"}}
    res.durations = dict.fromkeys(runner.PHASES, 1.0)
    res.snapshot = [
        {
            "contacts": c,
            "recipients": c // 4,
            "toolkit_s": 1.0,
            "floor_s": 0.95,
            "toolkit_rps": 1.0,
            "floor_rps": 1.0,
            "ratio": 0.95,
        }
        for c in (100_000, 1_000_000)
    ]
    res.seed = [
        {
            "contacts": 371_319,
            "recipients": 99_991,
            "carried": {},
            **{f"{a}_s": s for a, s in (("seed", 1500.0), ("patched", 120.0), ("toolkit", 50.0))},
            **{f"{a}_final": "SENT 99991/99991" for a in ("seed", "patched", "toolkit")},
            "speedup_vs_seed": 30.0,
            "speedup_vs_patched": 2.4,
        }
    ]
    res.send = [
        {
            "settle": settle,
            "batch": 500,
            "workers": workers,
            "recipients": 4750,
            "toolkit_s": 1.1,
            "floor_s": 1.0,
            "toolkit_rps": 1.0,
            "floor_rps": 1.0,
            "ratio": 1.1,
            "toolkit_waits": [_waits(1000, 0, locked_late=5)],
            "floor_waits": [_waits(1000, 0)],
            "session": {"fsync": ["on"], "synchronous_commit": ["on"]},
        }
        for settle in ("per_email", "batched")
        for workers in (1, 8)
    ]
    res.triggers = [
        {
            "rows": rows,
            "statement": statement,
            "updates": 100,
            "toolkit_us": 102.0,
            "floor_us": 100.0,
            "ratio": 1.02,
        }
        for statement, rows in (
            ("INSERT", "campaign"),
            ("INSERT", "non_campaign"),
            ("UPDATE", "campaign"),
            ("UPDATE", "non_campaign"),
            ("UPDATE", "campaign_delivered"),
        )
    ]
    res.sweep = {
        "status": "measured",
        "function": "plunk_sql.sweep()",
        "recipients": 1_000_000,
        "expired": 10,
        "empty_ms": 1.0,
        "expired_ms": 2.0,
    }
    return res


def _ns(merged: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(**merged)


def test_report__keeps_hand_written_sections_across_regenerations(tmp_path):
    pytest.importorskip("matplotlib")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "20-second.md").write_text("## Second note\n\nBody two: 1.23x, by hand.\n")
    (notes / "10-first.md").write_text("## First note\n\nBody one.\n")
    res = _ns(runner.merge(_results(), None))

    out = tmp_path / "out"
    out.mkdir()
    report.write(res, out, notes_dir=notes, baseline_path=tmp_path / "none.json")
    first = (out / "BENCHMARKS.md").read_text()
    report.write(res, out, notes_dir=notes, baseline_path=tmp_path / "none.json")
    text = (out / "BENCHMARKS.md").read_text()

    assert text == first
    assert "## First note\n\nBody one." in text
    assert "Body two: 1.23x, by hand." in text
    assert text.index("## First note") < text.index("## Second note")  # file-name order
    assert text.index("## Profile") < text.index("## First note")  # after the generated part
    assert report.is_generated(text)
    assert not (out / "BENCHMARKS.md.edited").exists()


def test_report__hand_edit_of_the_generated_file_is_kept_aside(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    res = _ns(runner.merge(_results(), None))
    report.write(res, tmp_path, notes_dir=tmp_path / "no-notes", baseline_path=tmp_path / "x")
    path = tmp_path / "BENCHMARKS.md"
    edited = path.read_text() + "\n## Added by hand\n\nA paragraph.\n"
    path.write_text(edited)

    report.write(res, tmp_path, notes_dir=tmp_path / "no-notes", baseline_path=tmp_path / "x")

    assert "## Added by hand" not in path.read_text()
    assert (tmp_path / "BENCHMARKS.md.edited").read_text() == edited
    assert "edited by hand" in capsys.readouterr().out


def test_report__marks_figures_carried_over_from_an_earlier_run(tmp_path):
    earlier = runner.merge(_results(date="2026-11-30 09:00 UTC"), None)
    earlier["send"][0]["ratio"] = 9.99  # recognisable below
    # This run: snapshot and seed only, the seed algorithm left out (--algos patched,toolkit).
    now = _results(date="2026-12-02 03:00 UTC")
    now.send, now.triggers, now.sweep = [], [], {}
    now.seed[0]["carried"] = {"seed": runner.carried_date(earlier, "seed")}
    now.durations = {"snapshot": 10.0, "seed": 20.0}
    res = _ns(runner.merge(now, earlier))

    assert res.provenance["send"] == {
        "status": "carried over",
        "date": "2026-11-30 09:00 UTC",
        "seconds": 1.0,
    }
    assert res.provenance["snapshot"]["status"] == "measured"
    assert res.send[0]["ratio"] == 9.99
    text = report.render(res, tmp_path, None)
    table = text[text.index("## Issue 14 targets") : text.index("### Earlier targets")]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if "|" in line}
    assert rows["per-email settles, 8 workers, fsync on"].endswith(
        "**carried over** (2026-11-30 09:00 UTC) |"
    )
    assert rows["snapshot, 100,000 contacts"].endswith("this run |")
    assert "**seed algorithm carried over** (2026-11-30 09:00 UTC)" in text
    assert "1,500.00 (*carried over*, 2026-11-30 09:00 UTC)" in text
    send_section = text[text.index("## 2. Send path") : text.index("## 3.")]
    assert "**Carried over:**" in send_section
    assert "**Carried over:**" not in text[text.index("## 1. Snapshot") : text.index("## 2.")]
    # The docs blocks say so too.
    readme = " ".join(report.readme_block(res).split())
    assert "send, triggers, sweep figures carried over from earlier runs" in readme
    assert "seed algorithm (1,500 s, carried over from 2026-11-30 09:00 UTC)" in readme


def test_report__a_quick_run_never_carries_over_full_figures():
    earlier = runner.merge(_results(), None)
    now = _results(quick=True)
    now.send = []
    now.durations = {"snapshot": 1.0}
    merged = runner.merge(now, earlier)
    assert merged["send"] == []
    assert merged["provenance"]["send"] == {"status": "not run"}


def test_seed_phase__algorithm_left_out_keeps_its_earlier_figure():
    earlier = runner.merge(_results(date="2026-11-30 09:00 UTC"), None)
    row = earlier["seed"][0]
    assert runner.carried_date(earlier, "seed") == "2026-11-30 09:00 UTC"
    # Files written before provenance existed: dated by their last write, "or earlier".
    old = copy.deepcopy(earlier)
    del old["provenance"]
    assert runner.carried_date(old, "seed") == "2026-11-30 09:00 UTC or earlier"
    assert row["seed_s"] == 1500.0


def test_lock_waits__the_last_percent_is_left_out_and_the_floor_compared():
    res = _ns(runner.merge(_results(), None))
    # 5 lock samples, all in the last 1%: not counted, so the toolkit equals the floor.
    verdict = targets.lock_waits(res, "per_email")
    assert verdict.verdict == targets.MET, verdict
    assert "toolkit 0.0% (0 of 990), floor 0.0% (0 of 990)" in verdict.measured

    res.send[1]["toolkit_waits"] = [_waits(1000, 30)]  # 8 workers, per email
    res.send[1]["floor_waits"] = [_waits(1000, 20)]
    verdict = targets.lock_waits(res, "per_email")
    assert verdict.verdict == targets.NOT_MET
    assert "toolkit 3.0% (30 of 990), floor 2.0% (20 of 990)" in verdict.measured
    res.send[1]["floor_waits"] = [_waits(1000, 30)]
    assert targets.lock_waits(res, "per_email").verdict == targets.MET


def test_per_email_target__invalid_when_commits_did_not_wait_for_the_disk():
    res = _ns(runner.merge(_results(), None))
    assert targets.per_email_settles(res).verdict == targets.MET
    res.send[1]["session"] = {"fsync": ["on"], "synchronous_commit": ["off"]}
    assert targets.per_email_settles(res).verdict.startswith(targets.INVALID)


def test_report__committed_benchmarks_readme_and_performance_page_are_current():
    """BENCHMARKS.md and the figures in README.md and docs/performance.md are what
    bench/results.json and bench/notes/ give: regenerate with `python -m bench.report .`."""
    res = report.load(CHECKOUT / "bench" / "results.json")
    baseline = report.load(report.BASELINE)
    stale = "stale: run `.venv/bin/python -m bench.report .`"
    assert (CHECKOUT / "BENCHMARKS.md").read_text() == report.render(res, report.NOTES, baseline), (
        f"BENCHMARKS.md is {stale}"
    )
    for path, block in (
        (CHECKOUT / "README.md", report.readme_block(res)),
        (CHECKOUT / "docs" / "performance.md", report.performance_block(res)),
    ):
        text = path.read_text()
        assert report.replace_block(text, block) == text, f"{path.name} is {stale}"


def test_results_json__round_trips_through_the_report_loader(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"config": {}, "environment": {}}))
    res = report.load(path)
    assert res.send == [] and res.sweep == {} and res.provenance == {}
    assert "not run" in report.render(res, tmp_path, None)
