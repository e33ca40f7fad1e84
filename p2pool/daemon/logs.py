# -*- test-case-name: tests.test_logs -*-
"""
The log of a node run by twistd: which events it shows (C{[log] level},
fewer repeats of status events) and how it writes them (C{[log] format}:
twistd's text lines, or one JSON object per line).

L{node_log_observer} builds the observer; L{twistd_log_destination} finds
where twistd would have written its log, so that the node's observer
writes there instead (see L{p2pool.daemon.node.NodeService.setServiceParent}).
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any, cast

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

from p2pool.admin.json_shapes import rfc3339
from p2pool.config import LogConfig
from p2pool.events import EventKind

__all__ = [
    "JSONLinesObserver",
    "StatusRepeats",
    "json_record",
    "node_log_level",
    "node_log_observer",
    "twistd_log_destination",
]

#: Events that report a state at every round of maintenance; above debug,
#: they are shown when what they report changes.
STATUS_EVENTS = frozenset({EventKind.TOO_FEW_CONNECTIONS, EventKind.TOO_MANY_CONNECTIONS})
#: Seconds after which an unchanged status event is shown again.
STATUS_REMINDER = 600.0

#: Keys of a log event that are not fields of the event itself.
# The filter results used here, typed: PredicateResult's members are
# constantly constants, which carry no type information.
_MAYBE: PredicateResult = PredicateResult.maybe
_NO: PredicateResult = PredicateResult.no

_NOT_FIELDS = frozenset({"format", "message", "system", "time", "isError", "failure", "why", "p2pool_event"})


@implementer(ILogFilterPredicate)
class StatusRepeats:
    """
    A log predicate that drops a status event (L{STATUS_EVENTS}) when its
    fields are those of the last one of that name let through, less than
    L{STATUS_REMINDER} seconds ago.
    """

    def __init__(self, reminder: float = STATUS_REMINDER) -> None:
        self._reminder = reminder
        self._last: dict[str, tuple[tuple[tuple[str, str], ...], float]] = {}

    def __call__(self, event: LogEvent) -> PredicateResult:
        name = event.get("p2pool_event")
        if name not in STATUS_EVENTS:
            return _MAYBE
        fields = tuple(sorted((key, repr(value)) for key, value in _fields(event).items()))
        now = float(event.get("log_time", 0.0))
        last = self._last.get(name)
        if last is not None and last[0] == fields and now - last[1] < self._reminder:
            return _NO
        self._last[name] = (fields, now)
        return _MAYBE


def _fields(event: LogEvent) -> dict[str, Any]:
    """
    The fields of a log event: its keys other than Twisted's own.
    """
    return {key: value for key, value in event.items() if not key.startswith("log_") and key not in _NOT_FIELDS}


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def json_record(event: LogEvent) -> dict[str, Any]:
    """
    A log event as a JSON object: C{time} (RFC 3339, UTC), C{level},
    C{namespace}, C{message} (the formatted text), then for a pool event its
    name in C{event}, then the event's fields (text unless a JSON scalar),
    and C{traceback} when it carries a failure.
    """
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": rfc3339(float(event.get("log_time", 0.0))),
        "level": getattr(level, "name", str(level)),
        "namespace": event.get("log_namespace"),
        "message": formatEvent(event),
    }
    if "p2pool_event" in event:
        record["event"] = event["p2pool_event"]
    for key, value in _fields(event).items():
        record.setdefault(key, _plain(value))
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    return record


@implementer(ILogObserver)
class JSONLinesObserver:
    """
    Writes each log event to C{out} as one line of JSON (L{json_record}).
    """

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: LogEvent) -> None:
        self._out.write(json.dumps(json_record(event), ensure_ascii=False, default=str) + "\n")
        self._out.flush()


def node_log_level(config: LogConfig) -> LogLevel:
    """
    The lowest level a node's log records (C{[log] level}): what the node
    declares to its pool's events once its observer is the log (see
    L{p2pool.events.EventLog.log_level}).
    """
    level: LogLevel = LogLevel.levelWithName(config.level)
    return level


def node_log_observer(config: LogConfig, out: IO[str]) -> ILogObserver:
    """
    The observer of a node's log: events at C{config.level} or above,
    unchanged status events dropped above debug, written to C{out} in
    C{config.format}.
    """
    writer: ILogObserver = JSONLinesObserver(out) if config.format == "json" else textFileLogObserver(out)
    level = node_log_level(config)
    predicates: list[ILogFilterPredicate] = [LogLevelFilterPredicate(defaultLogLevel=level)]
    if level > LogLevel.debug:
        predicates.append(StatusRepeats())
    return cast(ILogObserver, FilteringLogObserver(writer, predicates))


def twistd_log_destination(options: object) -> IO[str] | None:
    """
    Where twistd, run with C{options} (its C{ServerOptions}), would write
    its log: standard output when it does not daemonize and has no
    C{--logfile} (or C{--logfile -}), else the log file (C{twistd.log} by
    default, rotated by size as twistd does).

    @return: C{None} where twistd's own choice must stand: C{--syslog},
        C{--logger}, or C{--logfile -} for a daemon (which twistd refuses);
        also when C{options} are not twistd's (C{twist} has its own
        C{--log-level} and C{--log-format}).
    """
    from twisted.application.app import ServerOptions

    if not isinstance(options, ServerOptions):
        return None
    if options.get("syslog") or options.get("logger"):
        return None
    path = options.get("logfile") or ""
    nodaemon = bool(options.get("nodaemon"))
    if path == "-":
        return sys.stdout if nodaemon else None
    if nodaemon and not path:
        return sys.stdout
    return cast(IO[str], LogFile.fromFullPath(path or "twistd.log"))
