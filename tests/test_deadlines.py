"""
L{Deadlines}: callbacks due after their delay unless cancelled, on one
timer of the clock.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from p2pool.transport.deadlines import LATE, Deadlines


class DeadlinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.deadlines = Deadlines(self.clock)
        self.ran: list[tuple[str, float]] = []

    def note(self, name: str) -> None:
        self.ran.append((name, self.clock.seconds()))

    def test_due_after_the_delay(self) -> None:
        """
        Each callback runs when its delay has passed, with its arguments,
        in the order of its deadline whatever the delays; one timer in all.
        """
        self.deadlines.set("a", 10, self.note, "a")
        self.clock.advance(1)
        self.deadlines.set("b", 2, self.note, "b")
        self.deadlines.set("c", 10, self.note, "c")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual((len(self.deadlines), "a" in self.deadlines), (3, True))
        self.clock.advance(1.9)
        self.assertEqual(self.ran, [])
        self.clock.advance(0.1)
        self.assertEqual(self.ran, [("b", 3.0)])
        self.clock.advance(7)
        self.assertEqual(self.ran, [("b", 3.0), ("a", 10.0)])
        self.clock.advance(1)
        self.assertEqual(self.ran, [("b", 3.0), ("a", 10.0), ("c", 11.0)])
        self.assertEqual(len(self.deadlines), 0)

    def test_cancelled(self) -> None:
        """
        A cancelled deadline does not run; cancelling an unknown key does
        nothing; setting a key again replaces its deadline.
        """
        self.deadlines.set("a", 5, self.note, "a")
        self.deadlines.set("b", 5, self.note, "b")
        self.deadlines.cancel("a")
        self.deadlines.cancel("nothing")
        self.deadlines.set("b", 8, self.note, "b again")
        for _ in range(10):
            self.clock.advance(1)
        self.assertEqual(self.ran, [("b again", 8.0)])

    def test_timer_kept_until_stopped(self) -> None:
        """
        The timer stays set when the last deadline is cancelled and finds
        nothing due; a deadline set later is still run on time. After
        stop(), no timer is left set while nothing is pending.
        """
        self.deadlines.set("a", 5, self.note, "a")
        self.deadlines.cancel("a")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(1)
        self.deadlines.set("b", 5, self.note, "b")
        self.clock.advance(4)
        self.assertEqual(self.ran, [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1, "set again for b")
        self.clock.advance(1)
        self.assertEqual(self.ran, [("b", 6.0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.deadlines.set("c", 5, self.note, "c")
        self.deadlines.stop()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1, "c is pending")
        self.deadlines.cancel("c")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.deadlines.set("d", 1, self.note, "d")
        self.clock.advance(1)
        self.assertEqual(self.ran, [("b", 6.0), ("d", 7.0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_callback_cancelling_the_rest(self) -> None:
        """
        A callback that cancels every other pending deadline, of its delay
        and of another, leaves no timer set; deadlines of both delays set
        after that still run on time.
        """

        def cancel_others() -> None:
            self.note("a")
            self.deadlines.cancel("b")
            self.deadlines.cancel("c")

        self.deadlines.set("a", 1, cancel_others)
        self.clock.advance(0.5)
        self.deadlines.set("b", 1, self.note, "b")
        self.deadlines.set("c", 5, self.note, "c")
        self.clock.advance(0.5)
        self.assertEqual(self.ran, [("a", 1.0)])
        self.assertEqual((len(self.deadlines), self.clock.getDelayedCalls()), (0, []))
        self.deadlines.set("d", 5, self.note, "d")
        self.deadlines.set("e", 1, self.note, "e")
        self.clock.advance(1)
        self.clock.advance(4)
        self.assertEqual(self.ran, [("a", 1.0), ("e", 2.0), ("d", 6.0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_earlier_deadline_moves_the_timer(self) -> None:
        """
        A deadline due before the timer brings it forward, also when set
        by a callback while another delay's deadline is pending.
        """
        self.deadlines.set("long", 10, self.note, "long")
        self.deadlines.set("short", 1, self.note, "short")
        self.clock.advance(1)
        self.assertEqual(self.ran, [("short", 1.0)])

        def chain() -> None:
            self.note("chain")
            self.deadlines.set("later", 20, self.note, "later")

        self.deadlines.set("chain", 2, chain)
        self.deadlines.set("mid", 4, self.note, "mid")
        self.clock.advance(2)
        self.clock.advance(2)
        self.clock.advance(5)
        self.assertEqual(self.ran, [("short", 1.0), ("chain", 3.0), ("mid", 5.0), ("long", 10.0)])
        self.clock.advance(13)
        self.assertEqual(self.ran[-1], ("later", 23.0))

    def test_clock_going_back(self) -> None:
        """
        A deadline set after the clock went back is due no earlier than
        those set before it with the same delay.
        """
        self.clock.advance(100)
        self.deadlines.set("before", 10, self.note, "before")
        self.clock.rightNow = 50.0
        self.deadlines.set("after", 10, self.note, "after")
        self.clock.advance(60)
        self.assertEqual(self.ran, [("before", 110.0), ("after", 110.0)])

    def test_late_timer_lets_the_reactor_read_first(self) -> None:
        """
        A timer that wakes more than L{LATE} seconds late runs what is due
        only after one more turn of the reactor: what arrived during the
        stall (here a call due at 25, within the same jump of the clock)
        comes first and may still cancel a deadline that was due at 10.
        """
        deadlines = Deadlines(self.clock)
        fired: list[str] = []
        deadlines.set("met", 10, fired.append, "met")
        deadlines.set("missed", 10, fired.append, "missed")
        self.clock.callLater(25, deadlines.cancel, "met")
        self.clock.advance(30)
        self.assertEqual(fired, ["missed"])

    def test_timer_on_time_runs_at_once(self) -> None:
        """
        A timer late by less than L{LATE} runs what is due at once, before
        later calls.
        """
        deadlines = Deadlines(self.clock)
        fired: list[str] = []
        deadlines.set("a", 10, fired.append, "a")
        self.clock.callLater(10.5, deadlines.cancel, "a")
        self.clock.advance(10 + LATE / 2)
        self.assertEqual(fired, ["a"])

    def test_failing_callback_logged(self) -> None:
        """
        A callback that raises is logged; the others due with it run.
        """

        def fail() -> None:
            raise ValueError("boom")

        self.deadlines.set("fail", 1, fail)
        self.deadlines.set("ok", 1, self.note, "ok")
        with capturedLogs() as captured:
            self.clock.advance(1)
        self.assertEqual(self.ran, [("ok", 1.0)])
        failures = [e["log_failure"] for e in captured if "log_failure" in e]
        self.assertEqual([f.getErrorMessage() for f in failures], ["boom"])
        self.flushLoggedErrors(ValueError)
