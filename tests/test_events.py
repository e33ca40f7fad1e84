"""
Pool events: every one is an L{EventKind}, C{emit} refuses anything else,
users see the same names as before, and C{docs/POOL.md} lists exactly the
events the code emits, with their fields and levels.
"""

from __future__ import annotations

import ast
import json
import pathlib
import re

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

import p2pool
from p2pool.events import INFO_EVENTS, EventKind, EventLog, PoolEvent

ROOT = pathlib.Path(__file__).resolve().parent.parent
_ROW = re.compile(r"^\| `([a-z_]+)` \| (info|debug) \| (.*?) \| .* \|$")
_LIST_ITEM = re.compile(r"^- `([a-z_]+)`")
_NAMES_ONLY = re.compile(r"^(`[a-z_]+`[,.]?\s*)+$")


class EventKindTests(SynchronousTestCase):
    """
    L{EventKind} names each event once.
    """

    def test_one_member_per_name(self) -> None:
        """
        No two members share a name (an alias would hide a copy-paste), and
        each member's Python name is its event name in capitals.
        """
        self.assertEqual(len(EventKind.__members__), len(EventKind))
        for kind in EventKind:
            self.assertEqual(kind.name, kind.value.upper())

    def test_is_its_name(self) -> None:
        """
        A member compares equal to its name and formats as it, so code
        written against names keeps working.
        """
        kind = EventKind.CONNECTION_ESTABLISHED
        self.assertEqual(kind, "connection_established")
        self.assertEqual((str(kind), f"{kind}"), ("connection_established", "connection_established"))
        self.assertIs(EventKind("connection_established"), kind)

    def test_exported(self) -> None:
        self.assertIs(p2pool.EventKind, EventKind)


class EmitTests(SynchronousTestCase):
    """
    L{EventLog.emit} delivers L{EventKind}s and refuses anything else.
    """

    def setUp(self) -> None:
        self.received: list[PoolEvent] = []
        self.log = EventLog(self.received.append)

    def test_delivers(self) -> None:
        self.log.emit(EventKind.NEW_POINT, point="10.0.0.1:9732")
        self.assertEqual(self.received, [PoolEvent(EventKind.NEW_POINT, {"point": "10.0.0.1:9732"})])
        self.assertIs(self.received[0].event, EventKind.NEW_POINT)

    def test_refuses_a_string(self) -> None:
        """
        A plain string raises C{TypeError}, even the name of an event, and
        nothing is delivered.
        """
        for wrong in ("connection_established", "conection_established", None):
            with self.assertRaises(TypeError) as raised:
                self.log.emit(wrong, point="10.0.0.1:9732")  # type: ignore[arg-type]
            self.assertIn(repr(wrong), str(raised.exception))
        self.assertEqual(self.received, [])

    def test_raising_callback(self) -> None:
        """
        A callback that raises is logged, naming the event; the callbacks
        after it and the caller of C{emit} carry on.
        """

        def broken(event: PoolEvent) -> None:
            raise ValueError("observer broke")

        self.log.callbacks.insert(0, broken)
        with capturedLogs() as logged:
            self.log.emit(EventKind.NEW_POINT, point="10.0.0.1:9732")
        self.assertEqual([e.event for e in self.received], [EventKind.NEW_POINT])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertIn(
            "a pool event callback failed on new_point", [formatEvent(e) for e in logged if "log_failure" in e]
        )

    def test_json_unchanged(self) -> None:
        """
        The JSON of an event (what C{/network/log} shows) holds the name as
        a plain string.
        """
        record = PoolEvent(EventKind.CONNECTION_ESTABLISHED, {"point": "10.0.0.1:9732", "incoming": True}).to_json()
        self.assertIs(type(record["event"]), str)
        self.assertEqual(
            json.dumps(record, separators=(",", ":")),
            '{"event":"connection_established","point":"10.0.0.1:9732","incoming":true}',
        )

    def test_log_line_unchanged(self) -> None:
        """
        The C{twisted.logger} event carries the name as a plain string and
        formats as C{<name> <field>=<value> ...}, at info level for the
        events in L{INFO_EVENTS} and debug for the others.
        """
        with capturedLogs() as captured:
            self.log.emit(EventKind.CONNECTION_ESTABLISHED, point="10.0.0.1:9732", incoming=True)
            self.log.emit(EventKind.NEW_POINT, point="10.0.0.2:9732")
        established, new_point = [e for e in captured if e.get("log_namespace") == "p2pool.events"]
        self.assertIs(type(established["p2pool_event"]), str)
        self.assertEqual(formatEvent(established), "connection_established point=10.0.0.1:9732 incoming=True")
        self.assertEqual(formatEvent(new_point), "new_point point=10.0.0.2:9732")
        self.assertEqual((established["log_level"], new_point["log_level"]), (LogLevel.info, LogLevel.debug))


class WantedTests(SynchronousTestCase):
    """
    An event is built only when someone wants it: a callback, the log at
    the level declared (L{EventLog.log_level}), or the summariser's count.
    """

    def logged(self, log: EventLog, kind: EventKind) -> list[str]:
        with capturedLogs() as captured:
            log.emit(kind, point="10.0.0.1:9732")
        return [e["p2pool_event"] for e in captured if e.get("log_namespace") == "p2pool.events"]

    def test_everything_logged_until_declared(self) -> None:
        log = EventLog()
        self.assertIs(log.log_level, LogLevel.debug)
        for kind in EventKind:
            self.assertTrue(log.wants(kind), kind)
        self.assertEqual(self.logged(log, EventKind.NEW_POINT), ["new_point"])

    def test_levels_below_the_declared_one_not_logged(self) -> None:
        """
        At C{info}, a debug event reaches no logger and nobody wants it; an
        info event is logged as before. At C{None} nothing is logged.
        """
        log = EventLog()
        log.log_level = LogLevel.info
        self.assertFalse(log.wants(EventKind.NEW_POINT))
        self.assertTrue(log.wants(EventKind.CONNECTION_ESTABLISHED))
        self.assertEqual(self.logged(log, EventKind.NEW_POINT), [])
        self.assertEqual(self.logged(log, EventKind.CONNECTION_ESTABLISHED), ["connection_established"])
        log.log_level = None
        for kind in EventKind:
            self.assertFalse(log.wants(kind), kind)
        self.assertEqual(self.logged(log, EventKind.CONNECTION_ESTABLISHED), [])
        log.log_level = LogLevel.debug
        self.assertEqual(self.logged(log, EventKind.NEW_POINT), ["new_point"])

    def test_callbacks_get_every_event(self) -> None:
        """
        A callback gets every event whatever the log records; the log line
        still follows the declared level.
        """
        received: list[PoolEvent] = []
        log = EventLog()
        log.log_level = None
        log.callbacks.append(received.append)
        self.assertTrue(log.wants(EventKind.NEW_POINT))
        self.assertEqual(self.logged(log, EventKind.NEW_POINT), [])
        self.assertEqual(received, [PoolEvent(EventKind.NEW_POINT, {"point": "10.0.0.1:9732"})])

    def test_summariser_sees_what_it_counts(self) -> None:
        """
        The summariser sees the kinds it counts even when nothing else wants
        them, and the others only when they are emitted to someone.
        """
        seen: list[EventKind] = []
        log = EventLog()
        log.log_level = None
        log.summarise = lambda event: seen.append(event.event) is None
        self.assertTrue(log.wants(EventKind.NEW_POINT), "every kind is summarised unless told otherwise")
        log.summarised = frozenset({EventKind.INCOMING_CONNECTION_BANNED})
        self.assertTrue(log.wants(EventKind.INCOMING_CONNECTION_BANNED))
        self.assertFalse(log.wants(EventKind.NEW_POINT))
        log.emit(EventKind.NEW_POINT, point="10.0.0.1:9732")
        log.emit(EventKind.INCOMING_CONNECTION_BANNED, addr="10.0.0.1")
        self.assertEqual(seen, [EventKind.INCOMING_CONNECTION_BANNED])

    def test_wanted_follows_every_setting(self) -> None:
        """
        What is wanted follows the log level, the summariser and the kinds
        it counts, whichever is set last, and any registered callback.
        """
        log = EventLog()
        banned, new_point = EventKind.INCOMING_CONNECTION_BANNED, EventKind.NEW_POINT
        log.summarised = frozenset({banned})
        self.assertEqual(log.summarised, frozenset({banned}))
        log.log_level = None
        self.assertFalse(log.wants(banned), "a summariser not set counts nothing")
        log.summarise = lambda event: True
        self.assertTrue(log.wants(banned))
        self.assertFalse(log.wants(new_point))
        log.log_level = LogLevel.debug
        self.assertTrue(log.wants(new_point))
        log.log_level = None
        log.summarise = None
        self.assertFalse(log.wants(banned))
        log.callbacks.append(lambda event: None)
        self.assertTrue(log.wants(banned))
        log.callbacks.clear()
        self.assertFalse(log.wants(new_point))

    def test_pool_counts_refusals_nobody_logs(self) -> None:
        """
        A pool whose log records nothing still counts refusals (its refusal
        log sees them through the summariser).
        """
        from p2pool.config import PoolConfig
        from p2pool.pool.service import Pool
        from tests.helpers import identity

        pool = Pool(PoolConfig(expected_proof_of_work=0, data_dir=self.mktemp()), identity=identity(1))
        pool.events.log_level = None
        # Each refusal reported at once: no window left on the reactor.
        pool.refusals.stop()
        self.assertTrue(pool.events.wants(EventKind.INCOMING_CONNECTION_BANNED))
        self.assertFalse(pool.events.wants(EventKind.INCOMING_CONNECTION))
        pool.events.emit(EventKind.INCOMING_CONNECTION_BANNED, addr="10.0.0.1")
        self.assertEqual(pool.refusals.totals(), {"banned": 1})


def _emit_sites() -> tuple[dict[EventKind, set[str]], list[str]]:
    """
    Every C{emit} call in C{p2pool/} that names an event: the fields passed
    for each kind, and the calls given a string instead of an L{EventKind}.
    """
    fields: dict[EventKind, set[str]] = {}
    wrong: list[str] = []
    for path in sorted((ROOT / "p2pool").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            # pool.events.emit(...), or an emit function handed over as a value
            if not (
                (isinstance(func, ast.Attribute) and func.attr == "emit")
                or (isinstance(func, ast.Name) and func.id == "emit")
            ):
                continue
            if not node.args:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            parts = list(ast.walk(node.args[0]))
            if any(isinstance(p, ast.Constant) and isinstance(p.value, str) for p in parts):
                wrong.append(where)
                continue
            kinds = [
                EventKind[p.attr]
                for p in parts
                if isinstance(p, ast.Attribute) and isinstance(p.value, ast.Name) and p.value.id == "EventKind"
            ]
            names = {k.arg or f"**{where}" for k in node.keywords}
            for kind in kinds:
                fields.setdefault(kind, set()).update(names)
    return fields, wrong


def _catalogue() -> dict[str, tuple[str, list[str]]]:
    """
    The event table of C{docs/POOL.md}: each event's level and fields.
    """
    text = (ROOT / "docs" / "POOL.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Events\n") :]
    rows: dict[str, tuple[str, list[str]]] = {}
    for line in section.splitlines():
        match = _ROW.match(line)
        if match:
            name, level, fields = match.groups()
            assert name not in rows, f"{name} listed twice"
            rows[name] = (level, re.findall(r"`([a-z_]+)`", fields))
    return rows


class CatalogueTests(SynchronousTestCase):
    """
    The code emits only L{EventKind}s, every one of them, and C{docs/POOL.md}
    documents each with the fields the code passes.
    """

    def test_emitters_use_event_kinds(self) -> None:
        fields, wrong = _emit_sites()
        self.assertEqual(wrong, [], "emit calls given a string instead of an EventKind")
        self.assertEqual(set(EventKind) - set(fields), set(), "event kinds that nothing emits")

    def test_documented_events(self) -> None:
        documented = _catalogue()
        self.assertEqual(sorted(documented), sorted(k.value for k in EventKind))

    def test_documented_levels(self) -> None:
        for name, (level, _) in _catalogue().items():
            self.assertEqual(level, "info" if EventKind(name) in INFO_EVENTS else "debug", name)

    def test_documented_fields(self) -> None:
        emitted, _ = _emit_sites()
        for name, (_, fields) in _catalogue().items():
            self.assertEqual(set(fields), emitted.get(EventKind(name), set()), name)

    def test_other_documents_name_real_events(self) -> None:
        """
        In the I{Events} sections of the other documents, the names in a
        line of names only, and at the head of each item of a list that a
        line about events introduces, are events.
        """
        checked: dict[str, int] = {}
        for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
            in_events = about_events = False
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.startswith("#"):
                    in_events, about_events = "Events" in line, False
                    continue
                if not in_events:
                    continue
                item = _LIST_ITEM.match(line)
                if item:
                    names = [item.group(1)] if about_events else []
                elif _NAMES_ONLY.match(line):
                    names = re.findall(r"`([a-z_]+)`", line)
                else:
                    names = []
                    if line.strip():
                        about_events = "event" in line.lower()
                for name in names:
                    self.assertIn(name, {k.value for k in EventKind}, f"{path.name}: {line}")
                    checked[path.name] = checked.get(path.name, 0) + 1
        self.assertGreaterEqual(checked.get("MAINTENANCE.md", 0), 20)
        self.assertGreaterEqual(checked.get("PEERS_FILE.md", 0), 10)
