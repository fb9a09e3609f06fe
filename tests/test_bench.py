"""`python -m bench --quick` end to end at a tiny scale, so the benchmark keeps
working. It checks that the run completes every phase and writes its report
and figures; it never asserts speed."""

from __future__ import annotations

import json

import psycopg
import pytest

from bench.__main__ import main as bench_main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_bench__quick_run_writes_report_and_figures(pg_server, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code = bench_main(
        [
            "--database-url",
            pg_server.admin_url,
            "--quick",
            "--scale",
            "2000",
            "--workers",
            "1,8",
            "--batches",
            "100",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    assert "wrote" in capsys.readouterr().out

    report = (tmp_path / "BENCHMARKS.md").read_text()
    for heading in (
        "## Issue 14 targets",
        "## 1. Snapshot",
        "## 2. Send path",
        "## 3. Against Plunk",
        "## 4. Trigger overhead",
        "## 5. Sweep",
    ):
        assert heading in report
    for name in ("send_throughput.png", "time_vs_size.png"):
        png = (tmp_path / "bench" / "figures" / name).read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 5000, name

    res = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert [r["contacts"] for r in res["snapshot"]] == [20, 200, 2000]
    assert all(r["recipients"] > 0 for r in res["snapshot"])
    # The campaigns against Plunk's algorithm are sized in recipients (20 and 100 here).
    targets = res["config"]["seed_recipients"]
    assert targets == [20, 100]
    for row, target in zip(res["seed"], targets, strict=True):
        assert abs(row["recipients"] - target) <= max(3, target // 10), (row, target)
    # Every algorithm finished its campaign, with every email sent.
    for row in res["seed"]:
        for algo in ("seed", "patched", "toolkit"):
            status, counts = row[f"{algo}_final"].split()
            sent, total = counts.split("/")
            assert status == "SENT" and sent == total == str(row["recipients"])
    configs = {(r["settle"], r["batch"], r["workers"]) for r in res["send"]}
    assert configs == {(s, 100, w) for s in ("per_email", "batched") for w in (1, 8)}
    assert all(r["toolkit_waits"][0]["samples"] >= 0 for r in res["send"])
    # Toolkit and floor are sampled alike, every sample placed in the campaign.
    for row in res["send"]:
        for waits in (*row["toolkit_waits"], *row["floor_waits"]):
            progress = waits["progress"]
            assert progress["total"] == row["recipients"]
            for measure in ("emails", "time"):
                split = progress[measure]
                assert (
                    split["before_last"]["samples"] + split["last"]["samples"] == (waits["samples"])
                )
            assert sum(n for n, _ in progress["tenths"]) == waits["samples"]
        # The test server may run with fsync off; what matters is that it was recorded.
        assert set(row["session"]) == {"fsync", "synchronous_commit"}
    assert {(r["statement"], r["rows"]) for r in res["triggers"]} == {
        ("INSERT", "campaign"),
        ("INSERT", "non_campaign"),
        ("UPDATE", "campaign"),
        ("UPDATE", "non_campaign"),
        ("UPDATE", "campaign_delivered"),
    }
    assert res["provenance"]["send"]["status"] == "measured"

    assert res["sweep"]["status"] in ("measured",) or res["sweep"]["status"].startswith("TODO")

    # The scratch databases are gone.
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'plunk_bench_%%'"
        ).fetchone()[0]
    assert left == 0
