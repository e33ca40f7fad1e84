"""
The test helpers themselves: L{wait_for}'s deadline counts seconds on the
reactor's clock and its failure says what was awaited; L{closed_port}
refuses connections and cannot be taken while held.
"""

from __future__ import annotations

import errno
import socket

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests import helpers


class WaitForTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.patch(helpers, "reactor", self.clock)

    def test_fails_at_the_deadline_in_seconds(self) -> None:
        """
        The predicate is checked every C{step} seconds and once more at the
        deadline; then wait_for fails, quoting the predicate.
        """
        checked: list[float] = []
        d = ensureDeferred(helpers.wait_for(lambda: checked.append(self.clock.seconds()), timeout=1.0, step=0.25))
        self.clock.pump([0.25] * 4)
        self.assertEqual(checked, [0.0, 0.25, 0.5, 0.75, 1.0])
        failure = self.failureResultOf(d, AssertionError)
        self.assertIn("not met within 1.0 s", str(failure.value))
        self.assertIn("checked.append(self.clock.seconds())", str(failure.value))

    def test_last_check_at_the_deadline_not_past_it(self) -> None:
        """
        A step that does not divide the timeout is shortened so that the
        last check falls at the deadline.
        """
        checked: list[float] = []
        d = ensureDeferred(helpers.wait_for(lambda: checked.append(self.clock.seconds()), timeout=0.5, step=0.375))
        self.clock.pump([0.375, 0.125])
        self.assertEqual(checked, [0.0, 0.375, 0.5])
        self.failureResultOf(d, AssertionError)

    def test_what_names_the_condition(self) -> None:
        d = ensureDeferred(helpers.wait_for(lambda: False, timeout=0.5, what="the moon rises"))
        self.clock.advance(0.5)
        failure = self.failureResultOf(d, AssertionError)
        self.assertEqual(str(failure.value), "not met within 0.5 s: the moon rises")

    def test_named_function_is_named(self) -> None:
        def never() -> bool:
            return False

        d = ensureDeferred(helpers.wait_for(never, timeout=0.5))
        self.clock.advance(0.5)
        self.assertIn("never", str(self.failureResultOf(d, AssertionError).value))

    def test_returns_once_true(self) -> None:
        """
        wait_for returns at the first check that finds the predicate true.
        """
        ready: list[bool] = []
        d = ensureDeferred(helpers.wait_for(lambda: bool(ready), timeout=10.0, step=0.5))
        self.clock.advance(0.5)
        self.assertNoResult(d)
        ready.append(True)
        self.clock.advance(0.5)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.clock.seconds(), 1.0)


class ClosedPortTests(SynchronousTestCase):
    def test_refuses_and_cannot_be_taken(self) -> None:
        """
        A connection to a closed port is refused, and no other socket can
        bind it while the test holds it.
        """
        port = helpers.closed_port(self, "127.0.0.61")
        with socket.socket() as client:
            self.assertEqual(client.connect_ex(("127.0.0.61", port)), errno.ECONNREFUSED)
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            error = self.assertRaises(OSError, other.bind, ("127.0.0.61", port))
            self.assertEqual(error.errno, errno.EADDRINUSE)
