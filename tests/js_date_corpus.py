"""A generated corpus of date strings for the differential test of `new Date(string)`:
ISO 8601 variants, the legacy forms people type (and JavaScript's own toString / toUTCString),
and random sequences of date tokens and junk. Deterministic for a seed."""

from __future__ import annotations

import random

MONTHS = ["January", "Feb", "mar", "APR", "May", "June", "Jul", "August", "Sept", "oct",
          "Nov", "December", "Mayday", "Ja", "Decembre"]  # fmt: skip
DAYS = ["Mon", "Tue", "Wednesday", "thu", "Fri", "Sat", "Sun"]
ZONES = ["UTC", "GMT", "UT", "Z", "z", "EST", "EDT", "CST", "CDT", "MST", "MDT", "PST", "PDT",
         "CET", "utc", "GMTX"]  # fmt: skip
TOKENS = ["2025", "04", "4", "10", "1", "31", "32", "0", "00", "12", "13", "24", "59", "60",
          "99", "49", "50", "123", "1234", "0200", "-0500", "+0200", "+02:00", "-08", "999",
          "123456", "+275760", "-271821", "1234567890", "0001",
          "-", "/", ":", "::", ".", ",", " ", "  ", "\t", "T", "t", "Z", "AM", "pm", "a.m.",
          "(", ")", "(note)", "+", "GMT", "UTC", "EST", "Apr", "april", "Tue", "x", "noon",
          "\u00a0", "é", "of", "th", "st", "\n"]  # fmt: skip


def _iso(r: random.Random) -> str:
    y = r.choice(["2025", "1970", "0000", "9999", "+002025", "-000001", "-000000", "+275760",
                  "-271821", "1999", "20251", "202"])  # fmt: skip
    s = y
    if r.random() < 0.8:
        s += "-" + r.choice(["01", "04", "12", "13", "00", "4", "02"])
        if r.random() < 0.8:
            s += "-" + r.choice(["01", "10", "29", "30", "31", "32", "00", "1"])
    if r.random() < 0.6:
        s += r.choice(["T", " ", "t", "T"])
        s += (
            r.choice(["10", "00", "23", "24", "25", "1"]) + ":" + r.choice(["00", "30", "59", "60"])
        )
        if r.random() < 0.6:
            s += ":" + r.choice(["00", "30", "59", "60"])
            if r.random() < 0.5:
                s += "." + r.choice(["1", "12", "123", "1234", "000", "999999999999"])
        if r.random() < 0.6:
            s += r.choice(["Z", "z", "+02:00", "-05:00", "+0200", "-0530", "+24:00", "+02",
                           "-23:59", " Z", "+2:00", "GMT", " UTC"])  # fmt: skip
    return s


def _legacy(r: random.Random) -> str:
    d, y = r.choice(["1", "01", "15", "31", "32", "0"]), r.choice(["2025", "25", "99", "1999", "0"])
    mo = r.choice(MONTHS)
    time = r.choice(["", " 10:00", " 10:00:30", " 23:59:59.999", " 10:00 PM", " 12:00 am",
                     " 13:00 pm", " 10:00:00 GMT+0200", " 10:00 UTC", " 10:00 -0500",
                     " 24:00", " 10::", " 10:00:00.5", " 10.30", " 7 pm"])  # fmt: skip
    zone = r.choice(
        ["", "", " " + r.choice(ZONES), " (Central European Summer Time)", " GMT+02:00"]
    )
    forms = [
        f"{mo} {d}, {y}{time}{zone}",
        f"{d} {mo} {y}{time}{zone}",
        f"{r.choice(DAYS)} {mo} {d} {y}{time}{zone}",
        f"{r.choice(DAYS)}, {d} {mo} {y}{time}{zone}",
        f"{y}/{r.choice(['04', '4', '13'])}/{d}{time}{zone}",
        f"{r.choice(['04', '4', '13'])}/{d}/{y}{time}{zone}",
        f"{d}.{r.choice(['04', '4'])}.{y}{time}",
        f"{r.choice(['04', '4'])}-{d}-{y}{time}",
        f"{y}-{r.choice(['4', '04'])}-{d}{time}{zone}",
        f"{mo}-{d}-{y}",
        f"{d}-{mo}-{y}{time}",
        f"{mo} {y}",
        f"{y} {mo} {d}",
        f"{d} {mo}",
        f"{mo}{d} {y}",
        f"{time.strip()} {mo} {d} {y}",
    ]
    return r.choice(forms)


def _random_tokens(r: random.Random) -> str:
    return "".join(r.choice(TOKENS) for _ in range(r.randint(1, 9)))


FIXED = [
    "April 1, 2025", "2025/04/10", "Tue Apr 01 2025 10:00:00 GMT+0200",
    "1 Apr 2025 10:00 UTC", "Tue Apr 01 2025 10:00:00 GMT+0200 (Central European Summer Time)",
    "Tue, 01 Apr 2025 08:00:00 GMT", "2025-04-10", "2025-04-10T08:00:00.000Z",
    "2025-04-10 08:00", "2025-04-10T08:00", "", " ", "not a date", "2025", "12", "0",
    "2025-02-30", "2025-04-10T24:00:00Z", "+275760-09-13T00:00:00.000Z",
    "-271821-04-20T00:00:00.000Z", "-271821-04-19T23:59:59.999Z", "Sat, 13 Sep 275760 00:00:00 GMT",
    "April", "1/2/3", "12/31/1969 23:59:59.999", "10:00", "Jan 1 2000 12:00 am", "Jan 1 2000 12:30 pm",
]  # fmt: skip


def corpus(n: int = 600, seed: int = 12) -> list[str]:
    r = random.Random(seed)
    out = list(FIXED)
    makers = [_iso, _legacy, _legacy, _random_tokens]
    while len(out) < n:
        s = r.choice(makers)(r)
        if s not in out:
            out.append(s)
    return out
