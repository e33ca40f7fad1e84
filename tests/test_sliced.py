"""
L{p2pool.pool.sliced.SlicedWalk}: a walk over many items, a slice per
reactor turn.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pool.pool.sliced import SlicedWalk


class SlicedWalkTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.walk: SlicedWalk[int] = SlicedWalk(self.clock)
        self.seen: list[int] = []
        self.done: list[bool] = []

    def start(self, items: list[int], size: int) -> None:
        self.walk.start(items, size, self.seen.append, lambda: self.done.append(True))

    def test_a_slice_per_turn(self) -> None:
        self.start(list(range(5)), 2)
        self.assertEqual((self.seen, self.done, self.walk.running), ([0, 1], [], True))
        self.assertRaises(RuntimeError, self.start, [9], 1)
        self.clock.advance(0)
        self.assertEqual((self.seen, self.done, self.walk.running), ([0, 1, 2, 3, 4], [True], False))

    def test_all_in_one_slice(self) -> None:
        self.start([1, 2], 10)
        self.assertEqual((self.seen, self.done, self.clock.getDelayedCalls()), ([1, 2], [True], []))

    def test_spread_over_a_span(self) -> None:
        """
        With a span, the slices come at even intervals: the first now, the
        last C{span} seconds later.
        """
        self.walk.start(list(range(7)), 2, self.seen.append, lambda: self.done.append(True), span=3.0)
        self.assertEqual(self.seen, [0, 1])
        self.clock.advance(0.99)
        self.assertEqual(self.seen, [0, 1])
        self.clock.advance(0.01)
        self.assertEqual(self.seen, [0, 1, 2, 3])
        self.clock.advance(1.0)
        self.assertEqual((self.seen, self.done), ([0, 1, 2, 3, 4, 5], []))
        self.clock.advance(1.0)
        self.assertEqual((self.seen, self.done, self.walk.running), (list(range(7)), [True], False))

    def test_span_of_one_slice(self) -> None:
        """
        A walk that fits in one slice ends now, whatever its span.
        """
        self.walk.start([1, 2], 5, self.seen.append, lambda: self.done.append(True), span=10.0)
        self.assertEqual((self.seen, self.done, self.clock.getDelayedCalls()), ([1, 2], [True], []))

    def test_negative_span_refused(self) -> None:
        self.assertRaises(ValueError, self.walk.start, [1], 1, self.seen.append, lambda: None, -1.0)
        self.assertFalse(self.walk.running)

    def test_stop_abandons_the_walk(self) -> None:
        self.start(list(range(5)), 2)
        self.walk.stop()
        self.clock.advance(0)
        self.assertEqual((self.seen, self.done, self.walk.running), ([0, 1], [], False))
        self.start([7], 1)
        self.assertEqual((self.seen[-1], self.done), (7, [True]))

    def test_stopped_by_a_visit(self) -> None:
        def visit(item: int) -> None:
            self.seen.append(item)
            self.walk.stop()

        self.walk.start([1, 2, 3], 3, visit, lambda: self.done.append(True))
        self.assertEqual((self.seen, self.done, self.walk.running), ([1], [], False))
