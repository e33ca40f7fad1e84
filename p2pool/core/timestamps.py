# -*- test-case-name: tests.test_timestamps -*-
"""
RFC 3339 times, as the peers file and the admin API write and read them.

A time is written in UTC with exactly three fractional digits
(C{2024-05-01T12:00:00.250Z}). The rule is C{datetime}'s: seconds since the
epoch are rounded to the microsecond (half to even), then cut to the
millisecond, never rounded up to the next one. So a time written twice,
or by the file and by the API, is always the same text.
"""

from __future__ import annotations

import datetime

import msgspec

from p2pool.core.json_kind import json_kind

__all__ = ["format_time", "parse_time", "time_seconds"]

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
#: The times RFC 3339 can write: years 0001 to 9999.
_FIRST_TIME = (datetime.datetime(1, 1, 1, tzinfo=datetime.UTC) - _EPOCH).total_seconds()
_LAST_TIME = (datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC) - _EPOCH).total_seconds()
#: At most this many day prefixes are remembered.
_MAX_DAY_PREFIXES = 100_000

# Text pieces, so that writing a time is a few lookups: the peers file
# writes hundreds of thousands of them per save.
_day_prefixes: dict[int, str] = {}
_HOUR_MINUTE = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SECOND = [f"{s:02d}." for s in range(60)]
_MILLISECOND = [f"{ms:03d}Z" for ms in range(1000)]


def _day_prefix(day: int) -> str:
    """
    C{YYYY-MM-DDT} of the C{day}th day after the epoch.

    @raise OverflowError: the day is outside years 1 to 9999.
    """
    date = _EPOCH + datetime.timedelta(days=day)
    prefix = f"{date.year:04d}-{date.month:02d}-{date.day:02d}T"
    if len(_day_prefixes) < _MAX_DAY_PREFIXES:
        _day_prefixes[day] = prefix
    return prefix


def _exact_milliseconds(t: float) -> int:
    """
    The milliseconds since the epoch that C{datetime} writes for C{t}: its
    fraction of a second rounded to the microsecond (half to even), then
    cut.
    """
    seconds = int(t)
    # t - seconds is exact: the same fraction as math.modf's.
    micros = round((t - seconds) * 1e6)
    return seconds * 1000 + micros // 1000


#: Below this many milliseconds (the year 2039), t * 1000.0 is within
#: 0.123 microseconds of the exact value, so the millisecond datetime
#: writes is plain to see unless t is within about half a microsecond of
#: a millisecond boundary (where its rounding to the microsecond decides).
_PLAIN_BELOW_MS = 2.0**41


def format_time(t: float) -> str:
    """
    C{t} (seconds since the epoch) as RFC 3339 text in UTC with three
    fractional digits: C{2024-05-01T12:00:00.250Z}. The same text as
    C{datetime.fromtimestamp(t, utc).isoformat(timespec="milliseconds")}
    with C{Z} for the offset.

    @raise OverflowError: C{t} is outside years 1 to 9999.
    @raise ValueError: C{t} is not a number (NaN).
    """
    scaled = t * 1000.0
    if 0.0 <= scaled < _PLAIN_BELOW_MS:
        milliseconds = int(scaled)
        rest = scaled - milliseconds
        if rest > 0.99938:
            # Within 0.62 us of the next millisecond: rounded up to it
            # (from 0.99962 on), or a close call.
            milliseconds = milliseconds + 1 if rest > 0.99962 else _exact_milliseconds(t)
    else:
        milliseconds = _exact_milliseconds(t)
    seconds, milli = divmod(milliseconds, 1000)
    day, rem = divmod(seconds, 86400)
    minutes, second = divmod(rem, 60)
    prefix = _day_prefixes.get(day) or _day_prefix(day)
    return prefix + _HOUR_MINUTE[minutes] + _SECOND[second] + _MILLISECOND[milli]


def parse_time(value: object) -> float:
    """
    Seconds since the epoch from an RFC 3339 string with an offset (C{Z},
    C{+02:00}, C{-00:00}; read as C{msgspec} reads a C{datetime}, as the
    typed reading of the peers file does) or, as Tezos also reads, a
    number of seconds.

    @raise ValueError: neither, or a time outside years 1 to 9999.
    """
    if isinstance(value, str):
        try:
            parsed = msgspec.convert(value, datetime.datetime)
        except msgspec.ValidationError:
            raise ValueError(f"not an RFC 3339 time: {value!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"time without a UTC offset: {value!r}")
        t = parsed.timestamp()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            t = float(value)
        except OverflowError:
            raise ValueError(f"time out of range: {value!r}") from None
    else:
        raise ValueError(f"expected a time, got {json_kind(value)}")
    # Also refuses NaN and infinities, which json.loads accepts.
    if not _FIRST_TIME <= t <= _LAST_TIME:
        raise ValueError(f"time out of range: {value!r}")
    return t


def time_seconds(value: datetime.datetime | float) -> float:
    """
    L{parse_time} of a value already read: a C{datetime} with a UTC
    offset, or a number of seconds.

    @raise ValueError: a time outside years 1 to 9999 (NaN and infinities
        included).
    """
    t = value.timestamp() if isinstance(value, datetime.datetime) else value
    if not _FIRST_TIME <= t <= _LAST_TIME:
        raise ValueError(f"time out of range: {value!r}")
    return t
