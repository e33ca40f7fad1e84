# -*- test-case-name: tests.test_timestamps -*-
"""
Tests for L{p2pool.core.timestamps}: the one RFC 3339 writer and reader that the
peers file and the admin API share, and L{p2pool.core.json_kind}.
"""

from __future__ import annotations

import datetime
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pool.admin.json_shapes import rfc3339
from p2pool.core.json_kind import json_kind
from p2pool.core.timestamps import format_time, parse_time

#: 2024-05-01T00:00:00Z
T0 = 1_714_521_600.0
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
#: The first and last seconds RFC 3339 can write (years 0001 and 9999).
FIRST = -62_135_596_800.0
LAST = 253_402_300_799.0


def _datetime_text(t: float) -> str:
    """
    The rule written down once: what C{datetime} writes for C{t}, cut to
    milliseconds.
    """
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FormatTests(SynchronousTestCase):
    def test_format(self) -> None:
        self.assertEqual(format_time(0), "1970-01-01T00:00:00.000Z")
        self.assertEqual(format_time(T0 + 3723.25), "2024-05-01T01:02:03.250Z")
        self.assertEqual(format_time(951782400.5), "2000-02-29T00:00:00.500Z")
        self.assertEqual(format_time(FIRST), "0001-01-01T00:00:00.000Z")
        self.assertEqual(format_time(LAST), "9999-12-31T23:59:59.000Z")
        self.assertEqual(format_time(int(T0)), "2024-05-01T00:00:00.000Z", "an integer number of seconds")

    def test_milliseconds_are_cut_not_rounded(self) -> None:
        """
        A time is never written as a later millisecond than it is, not
        even across a day: the file and the API may not differ by one.
        """
        self.assertEqual(format_time(T0 + 0.0006), "2024-05-01T00:00:00.000Z")
        self.assertEqual(format_time(T0 - 0.0004), "2024-04-30T23:59:59.999Z")
        self.assertEqual(format_time(T0 + 86399.9996), "2024-05-01T23:59:59.999Z")
        self.assertEqual(format_time(-0.0000006), "1969-12-31T23:59:59.999Z")

    def test_microseconds_rounded_first(self) -> None:
        """
        As C{datetime} does, the time is first rounded to the microsecond
        (half to even), so that a float just below a whole millisecond is
        written as that millisecond.
        """
        self.assertEqual(format_time(0.0009996), "1970-01-01T00:00:00.001Z")
        self.assertEqual(format_time(-0.0000004), "1970-01-01T00:00:00.000Z")
        self.assertEqual(format_time(1_714_521_600_001 / 1000), "2024-05-01T00:00:00.001Z")

    @settings(max_examples=2000, deadline=None)
    @given(
        st.one_of(
            st.floats(FIRST, LAST),
            st.integers(int(FIRST) * 1000, int(LAST) * 1000).map(lambda ms: ms / 1000),
            st.integers(0, 4_000_000_000_000_000).map(lambda us: us / 1e6),
        )
    )
    @example(T0 - 0.0005)
    @example(T0 + 0.0004995)
    @example(-0.0000005)
    def test_same_text_as_datetime(self, t: float) -> None:
        self.assertEqual(format_time(t), _datetime_text(t))

    def test_admin_api_uses_the_same_writer(self) -> None:
        self.assertIs(rfc3339, format_time)

    def test_out_of_range(self) -> None:
        for bad in (FIRST - 1, LAST + 1, float("inf"), -float("inf")):
            with self.assertRaises(OverflowError, msg=repr(bad)):
                format_time(bad)
        with self.assertRaises(ValueError):
            format_time(float("nan"))


class ParseTests(SynchronousTestCase):
    def test_parse(self) -> None:
        self.assertEqual(parse_time("2024-05-01T01:02:03.250Z"), T0 + 3723.25)
        self.assertEqual(parse_time("2024-05-01T01:02:03.250-00:00"), T0 + 3723.25, "Tezos writes -00:00")
        self.assertEqual(parse_time("2024-05-01T03:02:03+02:00"), T0 + 3723)
        self.assertEqual(parse_time(1714521600), T0, "Tezos also reads seconds")
        self.assertEqual(parse_time(1714521600.5), T0 + 0.5)
        self.assertEqual(parse_time(format_time(FIRST)), FIRST)

    def test_rfc3339_forms(self) -> None:
        """
        RFC 3339 lets C{T} and C{Z} be lower case, and the date and time
        be separated by a space; a fraction beyond the microsecond is
        rounded to it. Forms of ISO 8601 that RFC 3339 does not have are
        refused.
        """
        self.assertEqual(parse_time("2024-05-01t01:02:03.250z"), T0 + 3723.25)
        self.assertEqual(parse_time("2024-05-01 01:02:03.250Z"), T0 + 3723.25)
        self.assertEqual(parse_time("2024-05-01T01:02:03.0000015Z"), T0 + 3723.000002)
        for text in ("2024-05-01T01:02Z", "2024-05-01T01:02:03+02", "20240501T010203Z", "2024-05-01T01:02:03,5Z"):
            with self.assertRaises(ValueError, msg=text) as caught:
                parse_time(text)
            self.assertIn("not an RFC 3339 time", str(caught.exception))

    def test_refused(self) -> None:
        bad_times = {
            "2024-05-01T00:00:00": "time without a UTC offset",
            "yesterday": "not an RFC 3339 time",
            "": "not an RFC 3339 time",
            "9999-12-31T23:59:59-23:00": "time out of range",
            True: "expected a time, got a boolean",
            None: "expected a time, got null",
            (1,): "expected a time, got tuple",
            "[1]": "not an RFC 3339 time",
            float("nan"): "time out of range",
            float("inf"): "time out of range",
            1e20: "time out of range",
            -1e12: "time out of range",
            10**400: "time out of range",
        }
        for bad, problem in bad_times.items():
            with self.assertRaises(ValueError, msg=repr(bad)) as caught:
                parse_time(bad)
            self.assertIn(problem, str(caught.exception), repr(bad))

    def test_written_form_with_impossible_dates(self) -> None:
        """
        A text in the written form with a day or hour that does not exist
        is refused.
        """
        for text in ("2023-02-29T00:00:00.000Z", "0000-01-01T00:00:00.000Z", "2024-13-01T00:00:00.000Z"):
            with self.assertRaises(ValueError, msg=text) as caught:
                parse_time(text)
            self.assertIn("not an RFC 3339 time", str(caught.exception))
        for text in ("2024-05-01T24:00:00.000Z", "2024-05-01T23:60:00.000Z", "2024-05-01T23:00:60.000Z"):
            self.assertRaises(ValueError, parse_time, text)

    def test_round_trip_keeps_milliseconds(self) -> None:
        for ms in (0, 1, 499, 500, 999, 123_456_789, 1_714_521_600_001, -1):
            t = ms / 1000
            text = format_time(t)
            self.assertRegex(text, RFC3339_MS)
            self.assertEqual(parse_time(text), t)


class JsonKindTests(SynchronousTestCase):
    def test_kinds(self) -> None:
        cases = [
            (None, "null"),
            (True, "a boolean"),
            (0, "a number"),
            (1.5, "a number"),
            ("x", "a string"),
            ([], "an array"),
            ({}, "an object"),
            (b"x", "bytes"),
        ]
        for value, kind in cases:
            self.assertEqual(json_kind(value), kind, repr(value))
