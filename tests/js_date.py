"""`new Date(string).getTime()` as V8 (Node 20) computes it, in plain Python, with TZ=UTC.

Written from V8's DateParser (src/date/dateparser.h, dateparser-inl.h, dateparser.cc) and
ParseDateTimeString (builtins-date.cc), independently of the SQL port in sql/15_jsvalue.sql:
the differential test (tests/test_audience_js_dates.py) checks both against Node itself.

First the ES5 ISO format (`[+-yy]yyyy[-MM[-DD]][THH:mm[:ss[.sss]][Z|+-hh:mm]]`); whatever it
leaves is read by the legacy parser: numbers followed by ':' are times, others date fields
(month/day/year in the order V8 infers), month names by their first three letters, time zone
names (UT, UTC, GMT, Z, EST, ... PDT), AM/PM, `+hhmm` / `+hh:mm` offsets, parentheses skipped,
words before the first number ignored. Local time is UTC (Plunk's API container runs with TZ
unset). Returns None for an Invalid Date.
"""

from __future__ import annotations

MAX_TIME = 8_640_000_000_000_000
NONE = 2**31 - 1  # V8's kNone (kMaxInt)
KEYWORDS: list[tuple[str, str, int]] = [
    *[(m, "month", i + 1) for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )],
    ("am", "ampm", 0), ("pm", "ampm", 12),
    ("ut", "tz", 0), ("utc", "tz", 0), ("z", "tz", 0), ("gmt", "tz", 0),
    ("cdt", "tz", -5), ("cst", "tz", -6), ("edt", "tz", -4), ("est", "tz", -5),
    ("mdt", "tz", -6), ("mst", "tz", -7), ("pdt", "tz", -7), ("pst", "tz", -8),
    ("t", "sep", 0),
]  # fmt: skip
# ECMAScript WhiteSpace and LineTerminator; any other character >= 'A' is part of a word.
WHITE = set("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {
    chr(c) for c in range(0x2000, 0x200B)
}


class Tok:
    """A DateToken: kind is num, sym, word, ws, unknown, end or invalid."""

    __slots__ = ("kind", "length", "value", "wtype")

    def __init__(self, kind: str, value: int | str = 0, length: int = 0, wtype: str = "") -> None:
        self.kind, self.value, self.length, self.wtype = kind, value, length, wtype

    def sym(self, c: str) -> bool:
        return self.kind == "sym" and self.value == c

    def sign(self) -> bool:
        return self.sym("+") or self.sym("-")

    def fixed(self, n: int) -> bool:
        return self.kind == "num" and self.length == n

    def z(self) -> bool:
        return self.kind == "word" and self.wtype == "tz" and self.length == 1 and self.value == 0


def _lookup(word: str) -> tuple[str, int]:
    # The word's first three characters, lowered as V8 does (c | 0x20), zero-padded.
    pre = [chr(ord(c) | 0x20) for c in word[:3]] + ["\0"] * (3 - min(len(word), 3))
    for name, wtype, value in KEYWORDS:
        key = list(name) + ["\0"] * (3 - len(name))
        if pre == key and (len(word) <= 3 or wtype == "month"):
            return wtype, value
    return "invalid", 0


class Scanner:
    def __init__(self, s: str) -> None:
        # V8 reads UTF-16 code units; a NUL ends the input.
        units = s.encode("utf-16-le")
        self.s = [chr(int.from_bytes(units[i : i + 2], "little")) for i in range(0, len(units), 2)]
        if "\0" in self.s:
            self.s = self.s[: self.s.index("\0")]
        self.i = 0
        self.next = self._scan()

    def _scan(self) -> Tok:
        s, i = self.s, self.i
        if i >= len(s):
            return Tok("end")
        c = s[i]
        if "0" <= c <= "9":
            j, n, digits = i, 0, 0
            while j < len(s) and s[j] == "0":  # leading zeros do not count towards the 9
                j += 1
            while j < len(s) and "0" <= s[j] <= "9":
                if digits < 9:
                    n = n * 10 + ord(s[j]) - 48
                digits += 1
                j += 1
            self.i = j
            return Tok("num", n, j - i)
        if c in ":-+.)":
            self.i = i + 1
            return Tok("sym", c, 1)
        if c in WHITE:  # V8 tests white space (Unicode's included) before words
            self.i = i + 1
            return Tok("ws", 0, 1)
        if c >= "A":
            j = i
            while j < len(s) and s[j] >= "A" and s[j] not in WHITE:
                j += 1
            self.i = j
            wtype, value = _lookup("".join(s[i:j]))
            return Tok("word", value, j - i, wtype)
        if c == "(":
            balance = 0
            while True:
                ch = s[i] if i < len(s) else "\0"
                if ch == ")":
                    balance -= 1
                elif ch == "(":
                    balance += 1
                i += 1
                if not (balance > 0 and i < len(s)):
                    break
            self.i = i
            return Tok("unknown")
        self.i = i + 1
        return Tok("unknown")

    def take(self) -> Tok:
        t, self.next = self.next, self._scan()
        return t

    def skip(self, c: str) -> bool:
        if self.next.sym(c):
            self.next = self._scan()
            return True
        return False


def _between(x: int, lo: int, hi: int) -> bool:
    return lo <= x <= hi


class Parse:
    def __init__(self) -> None:
        self.day: list[int] = []
        self.named_month = NONE
        self.iso = False
        self.time: list[int] = []
        self.hour_offset = NONE
        self.tz_sign, self.tz_hour, self.tz_minute = NONE, NONE, NONE

    # TimeComposer
    def time_expecting(self, n: int) -> bool:
        k = len(self.time)
        return (
            (k == 1 and _between(n, 0, 59))
            or (k == 2 and _between(n, 0, 59))
            or (k == 3 and _between(n, 0, 999))
        )

    def time_add(self, n: int) -> bool:
        if len(self.time) < 4:
            self.time.append(n)
            return True
        return False

    def time_add_final(self, n: int) -> bool:
        if not self.time_add(n):
            return False
        self.time += [0] * (4 - len(self.time))
        return True

    # TimeZoneComposer
    def tz_set(self, hours: int) -> None:
        self.tz_sign = -1 if hours < 0 else 1
        self.tz_hour, self.tz_minute = hours * self.tz_sign, 0

    def tz_expecting(self, n: int) -> bool:
        return self.tz_hour != NONE and self.tz_minute == NONE and _between(n, 0, 59)

    def tz_utc(self) -> bool:
        return self.tz_hour == 0 and self.tz_minute == 0

    def day_add(self, n: int) -> bool:
        if len(self.day) < 3:
            self.day.append(n)
            return True
        return False


def _read_ms(t: Tok) -> int:
    n, length = int(t.value), t.length
    if length == 1:
        return n * 100
    if length == 2:
        return n * 10
    if length > 3:
        return n // 10 ** (min(length, 9) - 3)
    return n


def _es5(sc: Scanner, p: Parse) -> Tok:
    if sc.next.sign():
        sign_tok = sc.take()
        if not sc.next.fixed(6):
            return sign_tok
        sign = 1 if sign_tok.value == "+" else -1
        year = int(sc.take().value)
        if sign < 0 and year == 0:
            return sign_tok
        p.day_add(sign * year)
    elif sc.next.fixed(4):
        p.day_add(int(sc.take().value))
    else:
        return sc.take()
    if sc.skip("-"):
        if not sc.next.fixed(2) or not _between(int(sc.next.value), 1, 12):
            return sc.take()
        p.day_add(int(sc.take().value))
        if sc.skip("-"):
            if not sc.next.fixed(2) or not _between(int(sc.next.value), 1, 31):
                return sc.take()
            p.day_add(int(sc.take().value))
    if not (sc.next.kind == "word" and sc.next.wtype == "sep"):
        if sc.next.kind != "end":
            return sc.take()
    else:
        sc.take()
        if not sc.next.fixed(2) or not _between(int(sc.next.value), 0, 24):
            return Tok("invalid")
        hour_is_24 = sc.next.value == 24
        p.time_add(int(sc.take().value))
        if not sc.skip(":"):
            return Tok("invalid")
        if (
            not sc.next.fixed(2)
            or not _between(int(sc.next.value), 0, 59)
            or (hour_is_24 and int(sc.next.value) > 0)
        ):
            return Tok("invalid")
        p.time_add(int(sc.take().value))
        if sc.skip(":"):
            if (
                not sc.next.fixed(2)
                or not _between(int(sc.next.value), 0, 59)
                or (hour_is_24 and int(sc.next.value) > 0)
            ):
                return Tok("invalid")
            p.time_add(int(sc.take().value))
            if sc.skip("."):
                if sc.next.kind != "num" or (hour_is_24 and int(sc.next.value) > 0):
                    return Tok("invalid")
                p.time_add(_read_ms(sc.take()))
        if sc.next.z():
            sc.take()
            p.tz_set(0)
        elif sc.next.sign():
            p.tz_sign = 1 if sc.take().value == "+" else -1
            if sc.next.fixed(4):
                hm = int(sc.take().value)
                h, m = hm // 100, hm % 100
                if not _between(h, 0, 23) or not _between(m, 0, 59):
                    return Tok("invalid")
                p.tz_hour, p.tz_minute = h, m
            else:
                if not sc.next.fixed(2) or not _between(int(sc.next.value), 0, 23):
                    return Tok("invalid")
                p.tz_hour = int(sc.take().value)
                if not sc.skip(":"):
                    return Tok("invalid")
                if not sc.next.fixed(2) or not _between(int(sc.next.value), 0, 59):
                    return Tok("invalid")
                p.tz_minute = int(sc.take().value)
        if sc.next.kind != "end":
            return Tok("invalid")
    if p.tz_hour == NONE and not p.time:
        p.tz_set(0)
    p.iso = True
    return Tok("end")


def _fields(s: str) -> tuple[list[int], int | None] | None:
    """(year, month 1-12, day, hour, minute, second, ms), UTC offset in seconds or None."""
    sc, p = Scanner(s), Parse()
    tok = _es5(sc, p)
    if tok.kind == "invalid":
        return None
    has_number = bool(p.day)
    while tok.kind != "end":
        if tok.kind == "num":
            has_number = True
            n = int(tok.value)
            if sc.skip(":"):
                if sc.skip(":"):
                    if p.time:
                        return None
                    p.time_add(n)
                    p.time_add(0)
                else:
                    if not p.time_add(n):
                        return None
                    if sc.next.sym("."):
                        sc.take()
            elif sc.skip(".") and p.time_expecting(n):
                p.time_add(n)
                if sc.next.kind != "num":
                    return None
                ms = _read_ms(sc.take())
                if ms < 0:
                    return None
                p.time_add_final(ms)
            elif p.tz_expecting(n):
                p.tz_minute = n
            elif p.time_expecting(n):
                p.time_add_final(n)
                peek = sc.next
                if peek.kind not in ("end", "ws") and not peek.z() and not peek.sign():
                    return None
            else:
                if not p.day_add(n):
                    return None
                sc.skip("-")
        elif tok.kind == "word":
            if tok.wtype == "ampm" and p.time:
                p.hour_offset = int(tok.value)
            elif tok.wtype == "month":
                p.named_month = int(tok.value)
                sc.skip("-")
            elif tok.wtype == "tz" and has_number:
                p.tz_set(int(tok.value))
            else:
                if has_number:
                    return None
                if sc.next.kind == "num":
                    return None
        elif tok.sign() and (p.tz_utc() or p.time):
            p.tz_sign = 1 if tok.value == "+" else -1
            n, length = 0, 0
            if sc.next.kind == "num":
                t = sc.take()
                n, length = int(t.value), t.length
            has_number = True
            if sc.next.sym(":"):
                p.tz_hour, p.tz_minute = n, NONE
            elif length in (1, 2):
                p.tz_hour, p.tz_minute = n, 0
            elif length in (3, 4):
                p.tz_hour, p.tz_minute = n // 100, n % 100
            else:
                return None
        elif (tok.sign() or tok.sym(")")) and has_number:
            return None
        tok = sc.take()
    return _write(p)


def _write(p: Parse) -> tuple[list[int], int | None] | None:
    if not p.day:
        return None
    # Missing fields are 1 (so a missing year is 1: 2001). V8's `index_ == 3` / `index_ == 1`
    # tests run after that fill, so they are always true / false.
    comp = p.day + [1] * (3 - len(p.day))
    if p.named_month == NONE:
        if p.iso or not _between(comp[0], 1, 31):
            year, month, day = comp
        else:
            month, day, year = comp
    else:
        month = p.named_month
        if not _between(comp[0], 1, 31):
            year, day = comp[0], comp[1]
        else:
            day, year = comp[0], comp[1]
    if not p.iso:
        if _between(year, 0, 49):
            year += 2000
        elif _between(year, 50, 99):
            year += 1900
    if not (_between(month, 1, 12) and _between(day, 1, 31)):
        return None
    t = p.time + [0] * (4 - len(p.time))
    hour, minute, second, ms = t
    if p.hour_offset != NONE:
        if not _between(hour, 0, 12):
            return None
        hour = hour % 12 + p.hour_offset
    if not (
        _between(hour, 0, 23)
        and _between(minute, 0, 59)
        and _between(second, 0, 59)
        and _between(ms, 0, 999)
    ) and (hour != 24 or minute or second or ms):
        return None
    offset = None
    if p.tz_sign != NONE:
        h = 0 if p.tz_hour == NONE else p.tz_hour
        m = 0 if p.tz_minute == NONE else p.tz_minute
        total = (h * 3600 + m * 60) % 2**32  # V8 multiplies in unsigned 32 bits
        if total > 2**31 - 1:  # Smi::kMaxValue (32-bit Smis, Node on x64)
            return None
        offset = -total if p.tz_sign < 0 else total
    return [year, month, day, hour, minute, second, ms], offset


def days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse(s: str) -> int | None:
    """new Date(s).getTime() in Node with TZ=UTC; None for an Invalid Date."""
    got = _fields(s)
    if got is None:
        return None
    (year, month, day, hour, minute, second, ms), offset = got
    if not -1_000_000 <= year <= 1_000_000:
        return None  # MakeDay: NaN
    t = days_from_civil(year, month, day) * 86_400_000 + (
        hour * 3_600_000 + minute * 60_000 + second * 1000 + ms
    )
    if offset is None:
        if abs(t) > MAX_TIME + 864_000_000:
            return None
    else:
        t -= offset * 1000
    return None if abs(t) > MAX_TIME else t
