# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics of one pool, in a registry of its own (so that many
pools in one process do not clash), served as C{GET /metrics}.

Three sources:

  - counters fed by the pool's events (L{PoolMetrics.observe} is one of
    C{pool.events.callbacks}): dials and their outcomes, handshake
    failures, disconnections, bans, greylistings, maintenance runs, swaps;
  - values read from the pool when scraped (L{PoolCollector}): connections,
    known points and peers by state, greylist and ban list sizes, bytes,
    and the peers-file checkpoints (from C{pool.persistence});
  - C{prometheus_client}'s own collectors of the process (memory, CPU, open
    files), the platform and the garbage collector.

See C{docs/ADMIN.md} for the list.
"""

from __future__ import annotations

import collections
import operator
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.logger import Logger

from p2pool._version import __version__
from p2pool.core.addressing import AddressError, Point, normalise_ip
from p2pool.core.states import PeerState, PointState
from p2pool.errors import motive_name, snake_case
from p2pool.events import EventKind, PoolEvent
from p2pool.pool.refusals import BEFORE_TLS_REASONS

if TYPE_CHECKING:
    from p2pool.admin.limits import ConnectionTable
    from p2pool.pool.refusals import RefusalLog
    from p2pool.pool.service import Pool

__all__ = ["AdminCollector", "PoolCollector", "PoolMetrics", "snake_case"]

_log = Logger()


def _ip_of(text: object) -> str | None:
    """
    The address in an event field holding an address or a point, if any.
    """
    if not isinstance(text, str):
        return None
    try:
        return Point.parse(text).ip
    except AddressError:
        pass
    try:
        return normalise_ip(text)
    except AddressError:
        return None


_SWAP_MESSAGES = {
    EventKind.SWAP_REQUEST_SENT: "request_sent",
    EventKind.SWAP_REQUEST_RECEIVED: "request_received",
    EventKind.SWAP_REQUEST_IGNORED: "request_ignored",
    EventKind.SWAP_ACK_SENT: "ack_sent",
    EventKind.SWAP_ACK_RECEIVED: "ack_received",
}
_MAINTENANCE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, float("inf"))


class PoolMetrics:
    """
    The metrics of one pool: a registry holding event-fed counters and a
    L{PoolCollector}.

    Dial outcomes are read from the event that ends each dial:
    C{connection_established} (not incoming) is C{established},
    C{connection_failed} is C{connection_failed} (or C{timeout}),
    C{authentication_failed} (not incoming) is C{handshake_failed} (or
    C{timeout}), and C{rejecting_request}/C{request_rejected} are
    C{rejected}. The last two events do not say their direction: when they
    carry no C{incoming} field, they are counted as the end of a dial when
    a dial to their address is in progress.

    @ivar registry: the node's own C{CollectorRegistry}.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._dialing: dict[str, int] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.events = Counter("p2pool_events", "Pool events emitted, by name.", ["event"], registry=registry)
        self.dials = Counter("p2pool_dials", "Outgoing connections attempted.", registry=registry)
        self.dial_outcomes = Counter(
            "p2pool_dial_outcomes",
            "Outcomes of outgoing connection attempts "
            "(established, connection_failed, timeout, handshake_failed, rejected).",
            ["outcome"],
            registry=registry,
        )
        self.established = Counter(
            "p2pool_connections_established", "Connections established, by direction.", ["direction"], registry=registry
        )
        self.incoming = Counter(
            "p2pool_incoming_connections", "Incoming TCP connections admitted to the handshake.", registry=registry
        )
        self.incoming_refused = Counter(
            "p2pool_incoming_refused",
            "Incoming TCP connections closed before TLS (banned, too_many_pending, netgroup_full).",
            ["reason"],
            registry=registry,
        )
        self.handshake_failures = Counter(
            "p2pool_handshake_failures",
            "Handshakes that did not end in a connection, by direction and reason "
            "(the error, or refused_<motive> for a nack we sent).",
            ["direction", "reason"],
            registry=registry,
        )
        self.disconnections = Counter(
            "p2pool_disconnections", "Running connections closed, by reason.", ["reason"], registry=registry
        )
        self.bans = Counter(
            "p2pool_bans", "Manual bans (ip: an address or range, peer: a peer id).", ["kind"], registry=registry
        )
        self.greylistings = Counter(
            "p2pool_greylistings", "Automatic greylistings (ip or peer).", ["kind"], registry=registry
        )
        self.maintenance_runs = Counter(
            "p2pool_maintenance_runs", "Maintenance passes started, by motive.", ["motive"], registry=registry
        )
        self.maintenance_duration = Histogram(
            "p2pool_maintenance_duration_seconds",
            "Duration of maintenance passes.",
            buckets=_MAINTENANCE_BUCKETS,
            registry=registry,
        )
        self.swaps = Counter("p2pool_swaps", "Swaps carried out (success or failure).", ["outcome"], registry=registry)
        self.swap_messages = Counter(
            "p2pool_swap_messages", "Swap requests and acks sent, received or ignored.", ["kind"], registry=registry
        )
        registry.register(PoolCollector(pool))
        # The process: memory, CPU, open files (from /proc, where there is
        # one), the Python version, garbage collections.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

    def attach(self) -> None:
        """
        Start counting the pool's events.
        """
        if self.observe not in self._pool.events.callbacks:
            self._pool.events.callbacks.append(self.observe)

    def detach(self) -> None:
        """
        Stop counting the pool's events.
        """
        while self.observe in self._pool.events.callbacks:
            self._pool.events.callbacks.remove(self.observe)

    def render(self) -> bytes:
        """
        The metrics in the Prometheus text format.
        """
        return generate_latest(self.registry)

    def observe(self, event: PoolEvent) -> None:
        """
        Count one pool event; never raises (a metrics bug must not disturb
        the pool, which calls this synchronously).
        """
        try:
            self._count(event.event, event.fields)
        except Exception:
            _log.failure("metrics: cannot count event {event}", event=event.event)

    def _count(self, name: EventKind, fields: dict[str, Any]) -> None:
        self.events.labels(name.value).inc()
        if name == EventKind.OUTGOING_CONNECTION:
            self.dials.inc()
            ip = _ip_of(fields.get("point"))
            if ip is not None:
                self._dialing[ip] = self._dialing.get(ip, 0) + 1
        elif name == EventKind.CONNECTION_ESTABLISHED:
            incoming = bool(fields.get("incoming"))
            self.established.labels(_direction(incoming)).inc()
            if not incoming:
                self._dial_ended(fields.get("point"), "established")
        elif name == EventKind.CONNECTION_FAILED:
            self._dial_ended(
                fields.get("point"), "timeout" if fields.get("error") == "Timeout" else "connection_failed"
            )
        elif name == EventKind.AUTHENTICATION_FAILED:
            incoming = bool(fields.get("incoming"))
            self._handshake_failed(incoming, snake_case(str(fields.get("error", "unknown"))))
            if not incoming:
                self._dial_ended(
                    fields.get("addr"), "timeout" if fields.get("error") == "Timeout" else "handshake_failed"
                )
        elif name in (EventKind.REQUEST_REJECTED, EventKind.REJECTING_REQUEST):
            incoming = self._rejection_incoming(fields)
            if name == EventKind.REJECTING_REQUEST:
                reason = "refused_" + motive_name(int(fields.get("motive", 0)))
            else:
                reason = snake_case(str(fields.get("error", "unknown")))
            self._handshake_failed(incoming, reason)
            if not incoming:
                self._dial_ended(fields.get("addr"), "rejected")
        elif name == EventKind.INCOMING_CONNECTION:
            self.incoming.inc()
        elif name in BEFORE_TLS_REASONS:
            self.incoming_refused.labels(BEFORE_TLS_REASONS[name]).inc()
        elif name in (EventKind.DISCONNECTION, EventKind.EXTERNAL_DISCONNECTION):
            self.disconnections.labels(str(fields.get("reason", "unknown"))).inc()
        elif name in (EventKind.POINT_BANNED, EventKind.PEER_BANNED):
            self.bans.labels("ip" if name == EventKind.POINT_BANNED else "peer").inc()
        elif name in (EventKind.GREYLISTED_ADDR, EventKind.GREYLISTED_PEER):
            self.greylistings.labels("ip" if name == EventKind.GREYLISTED_ADDR else "peer").inc()
        elif name == EventKind.MAINTENANCE_STARTED:
            self.maintenance_runs.labels(str(fields.get("motive", "unknown"))).inc()
        elif name == EventKind.MAINTENANCE_ENDED:
            duration = fields.get("duration")
            if isinstance(duration, (int, float)) and duration >= 0:
                self.maintenance_duration.observe(duration)
        elif name in (EventKind.SWAP_SUCCESS, EventKind.SWAP_FAILURE):
            self.swaps.labels("success" if name == EventKind.SWAP_SUCCESS else "failure").inc()
        elif name in _SWAP_MESSAGES:
            self.swap_messages.labels(_SWAP_MESSAGES[name]).inc()

    def _handshake_failed(self, incoming: bool, reason: str) -> None:
        self.handshake_failures.labels(_direction(incoming), reason).inc()

    def _rejection_incoming(self, fields: dict[str, Any]) -> bool:
        """
        Whether a rejection ended an incoming handshake: its C{incoming}
        field when it has one, else whether no dial to its address is in
        progress.
        """
        incoming = fields.get("incoming")
        if isinstance(incoming, bool):
            return incoming
        ip = _ip_of(fields.get("addr"))
        return ip is None or ip not in self._dialing

    def _dial_ended(self, where: object, outcome: str) -> None:
        self.dial_outcomes.labels(outcome).inc()
        ip = _ip_of(where)
        if ip is None or ip not in self._dialing:
            return
        if self._dialing[ip] <= 1:
            del self._dialing[ip]
        else:
            self._dialing[ip] -= 1


_incoming = operator.attrgetter("incoming")
_state = operator.attrgetter("state")
_trusted = operator.attrgetter("trusted")


def _direction(incoming: bool) -> str:
    return "incoming" if incoming else "outgoing"


class PoolCollector(Collector):
    """
    Values read from the pool at each scrape.

    From C{pool.persistence} (the peers file), when present, it reads the
    public attributes C{saves}, C{failures} (counts), C{last_save_duration}
    (seconds), C{last_save_at} (epoch seconds), C{last_save_bytes} and
    C{writing_disabled} (a reason or C{None}); any that is missing or not a
    number is left out.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        pool = self._pool
        info = GaugeMetricFamily(
            "p2pool_info",
            "This node: its peer id, network and p2pool version.",
            labels=["peer_id", "network", "version"],
        )
        if pool.identity is not None:
            info.add_metric([str(pool.peer_id), pool.config.network, __version__], 1)
        yield info

        connections = GaugeMetricFamily(
            "p2pool_connections", "Running connections, by direction.", labels=["direction"]
        )
        # Counted with map and attrgetter, without a Python frame per entry:
        # a scrape of a node with 10,000 connections and 20,000 known points
        # holds the reactor a few milliseconds.
        incoming = sum(map(_incoming, pool.connections))
        connections.add_metric(["incoming"], incoming)
        connections.add_metric(["outgoing"], len(pool.connections) - incoming)
        yield connections

        points, peers = list(pool.points), list(pool.peers)
        yield self._known(
            "p2pool_known_points", "Known points, by state.", collections.Counter(map(_state, points)), PointState
        )
        yield self._known(
            "p2pool_known_peers", "Known peer ids, by state.", collections.Counter(map(_state, peers)), PeerState
        )
        yield GaugeMetricFamily(
            "p2pool_trusted_points", "Known points that are trusted.", value=sum(map(_trusted, points))
        )
        yield GaugeMetricFamily(
            "p2pool_trusted_peers", "Known peer ids that are trusted.", value=sum(map(_trusted, peers))
        )

        acl = pool.acl
        yield GaugeMetricFamily(
            "p2pool_ip_greylist_fill_ratio",
            "Share of non-zero cells of the IP greylist bloom filter (0 to 1).",
            value=acl.ip_greylist.fill_percentage(),
        )
        yield GaugeMetricFamily(
            "p2pool_greylisted_ips", "Greylisted addresses still listed.", value=len(acl.ip_greylist.listing())
        )
        yield GaugeMetricFamily(
            "p2pool_greylisted_peers", "Greylisted peer ids.", value=len(acl.peer_greylist.listing())
        )
        yield GaugeMetricFamily(
            "p2pool_banned_ips", "Banned addresses and ranges.", value=len(acl.ip_blacklist.listing())
        )
        yield GaugeMetricFamily("p2pool_banned_peers", "Banned peer ids.", value=len(acl.peer_blacklist.listing()))

        yield _refusal_counts(
            "p2pool_refusals",
            "Incoming connections refused, by the reason their summary log line gives "
            "(banned, too_many_pending, netgroup_full, handshake_<error>, nack_<motive>).",
            pool.refusals,
        )

        sent, received = pool.bytes_totals()
        yield CounterMetricFamily("p2pool_bytes_sent", "Bytes sent to peers (frames, before TLS).", value=sent)
        yield CounterMetricFamily(
            "p2pool_bytes_received", "Bytes received from peers (frames, after TLS).", value=received
        )

        yield from self._checkpoints()

    @staticmethod
    def _known(name: str, documentation: str, states: collections.Counter[Any], kind: Any) -> Metric:
        family = GaugeMetricFamily(name, documentation, labels=["state"])
        for state in kind:
            family.add_metric([state.value], states[state])
        return family

    def _checkpoints(self) -> Iterator[Metric]:
        persistence = getattr(self._pool, "persistence", None)
        if persistence is None:
            return
        saves = _number(persistence, "saves")
        if saves is not None:
            yield CounterMetricFamily("p2pool_checkpoint_saves", "Peers-file saves completed.", value=saves)
        failures = _number(persistence, "failures")
        if failures is not None:
            yield CounterMetricFamily("p2pool_checkpoint_failures", "Peers-file saves that failed.", value=failures)
        duration = _number(persistence, "last_save_duration")
        if duration is not None:
            yield GaugeMetricFamily(
                "p2pool_checkpoint_last_duration_seconds", "Duration of the last peers-file save.", value=duration
            )
        saved_at = _number(persistence, "last_save_at")
        if saved_at is not None:
            yield GaugeMetricFamily(
                "p2pool_checkpoint_last_success_timestamp_seconds",
                "When the last peers-file save completed (seconds since the epoch).",
                value=saved_at,
            )
        size = _number(persistence, "last_save_bytes")
        if size is not None:
            yield GaugeMetricFamily(
                "p2pool_checkpoint_last_size_bytes", "Size of the last peers file written.", value=size
            )
        if hasattr(persistence, "writing_disabled"):
            yield GaugeMetricFamily(
                "p2pool_checkpoint_writing_disabled",
                "1 while saves are suspended (an unreadable peers file is kept in place), else 0.",
                value=1 if persistence.writing_disabled else 0,
            )


class AdminCollector(Collector):
    """
    The admin API's own connections, read at each scrape: open connections
    by phase, and connections refused, shed or timed out by reason.
    """

    def __init__(self, connections: ConnectionTable[Any], refusals: RefusalLog) -> None:
        self._connections = connections
        self._refusals = refusals

    def collect(self) -> Iterator[Metric]:
        phases = GaugeMetricFamily(
            "p2pool_admin_connections", "Open admin API connections, by phase (reading, busy, idle).", labels=["phase"]
        )
        for phase, count in self._connections.phases().items():
            phases.add_metric([phase.value], count)
        yield phases
        yield _refusal_counts(
            "p2pool_admin_refusals",
            "Admin API connections refused (too_many_connections, too_many_from_address), "
            "closed for a newcomer (shed_idle, shed_reading) or for a late request (request_timeout).",
            self._refusals,
        )


def _refusal_counts(name: str, documentation: str, refusals: RefusalLog) -> CounterMetricFamily:
    """
    A counter family of C{refusals}' totals, by reason.
    """
    family = CounterMetricFamily(name, documentation, labels=["reason"])
    for reason, count in sorted(refusals.totals().items()):
        family.add_metric([reason], count)
    return family


def _number(holder: object, name: str) -> float | None:
    value = getattr(holder, name, None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
