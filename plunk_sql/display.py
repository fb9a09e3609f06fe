"""Terminal output shared by `watch`, `worker` and `demo`: progress bars, tables, log lines."""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from plunk_sql.calls import Progress

CLEAR_EOL = "\x1b[K"  # erase what a longer previous line left on a terminal


class RateMeter:
    """Settled recipients per second over a sliding window, and the ETA it implies."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, settled: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._samples.append((now, settled))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window:
            self._samples.popleft()

    @property
    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self, remaining: int) -> float | None:
        rate = self.rate
        return remaining / rate if rate > 0 else None


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def progress_bar(done: int, total: int, width: int = 30) -> str:
    frac = 1.0 if total == 0 else min(1.0, done / total)
    filled = int(frac * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {frac * 100:5.1f}%"


def progress_line(p: Progress, meter: RateMeter) -> str:
    """One line for a campaign_progress row (api.Progress)."""
    return (
        f"{progress_bar(p.settled, p.total)} {p.settled}/{p.total} "
        f"sent {p.sent} failed {p.failed} skipped {p.skipped} "
        f"| {meter.rate:6.0f}/s ETA {format_duration(meter.eta(p.open))} {p.status}"
        + (" PAUSED" if p.paused else "")
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if v.replace(".", "").isdigit() else v.ljust(w)
            for v, w in zip(row, widths, strict=True)
        ).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def log_line(event: str, stream: TextIO | None = None, **fields: Any) -> None:
    """A structured log line: one JSON object per line."""
    record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event}
    record.update(fields)
    print(json.dumps(record, default=str), file=stream or sys.stdout, flush=True)
