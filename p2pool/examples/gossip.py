# -*- test-case-name: tests.test_gossip -*-
"""
A gossip application embedded in a pool: every message published floods
the network once, peers are scored by the useful messages they bring, and
peers sending malformed gossip are greylisted.

Wire format
===========

A gossip message is one p2pool application message (so the pool's framing,
TLS and size limit apply)::

    offset  size  field
    0       1     version, always 1
    1       1     ttl: how many more links this copy may cross, 1..max_ttl
    2       16    message id (random bytes chosen by the publisher)
    18      n     payload, 0..max_payload bytes (opaque to the gossip layer)

Flooding
========

C{publish(payload)} sends the message with C{ttl} (8 by default) to every
connected peer. A node receiving a message whose id it has not seen
delivers it (logs it, calls C{on_message}), and, if its ttl is above 1,
relays it with ttl - 1 to every connected peer except the one it came from
whose send queue has room (a slow peer misses copies, counted as C{skipped},
rather than making this node hold them);
a message arriving with ttl 1 is delivered but not relayed (the stats count
it as C{expired}). A message published with ttl T therefore reaches every
node at most T links away, and each node delivers it at most once.

Message ids are remembered in a L{SeenCache}: at most C{seen_capacity} ids
(the least recently seen is forgotten first) for at most C{seen_max_age}
seconds after they were last seen, so memory stays bounded. A copy
arriving after its id was forgotten is treated as new; its ttl still
bounds how far it goes.

Scoring
=======

Each known peer's metadata (L{IPeerMetadataConfig}, persisted by the pool in
C{peers.json}) is a L{PeerStats}: how many messages it sent us that were
C{useful} (the first copy of a valid message), C{duplicate} (a valid message
already seen) and C{invalid} (malformed). The score is::

    score = useful - invalid_penalty * invalid      (invalid_penalty: 10)

Duplicates are counted but not penalised: in a flood every neighbour
forwards each message, so most copies a node receives are duplicates, from
honest peers. The pool forgets the lowest-scored peers first when its peer
table is full.

Greylisting
===========

A message is invalid when it is shorter than the 18-byte header, has
another version, a ttl of 0 or above C{max_ttl}, or a payload above
C{max_payload}. Each invalid message is a strike against its connection;
at C{invalid_threshold} strikes (3 by default) the node calls
C{pool.greylist_peer(peer_id)} (the peer id and its address are refused
for a while) and closes the connection with
L{DisconnectReason.APPLICATION_ERROR}. Strikes are counted per connection;
the C{invalid} count of the peer's metadata keeps growing across
connections and lowers its score.
"""

from __future__ import annotations

import collections
import inspect
import math
import os
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from p2pool.core.addressing import PeerId
from p2pool.errors import DisconnectReason, SendQueueFull
from p2pool.interfaces import BasePoolApplication
from p2pool.pool.service import Pool
from p2pool.transport.connection import Connection

__all__ = [
    "HEADER_SIZE",
    "ID_SIZE",
    "VERSION",
    "Gossip",
    "GossipMessage",
    "GossipStats",
    "InvalidGossip",
    "PeerStats",
    "Publisher",
    "SeenCache",
    "publish_period",
]

_log = Logger()

#: The version byte of the wire format.
VERSION = 1
#: Length of a message id.
ID_SIZE = 16
#: Length of the header before the payload: version, ttl, id.
HEADER_SIZE = 2 + ID_SIZE


class InvalidGossip(ValueError):
    """
    Bytes received that are not a valid gossip message; the text says why.
    """


@attrs.frozen
class GossipMessage:
    """
    One gossip message.

    @ivar message_id: L{ID_SIZE} bytes naming the message network-wide.
    @ivar ttl: how many more links this copy may cross (1 to 255).
    @ivar payload: the application's bytes.
    """

    message_id: bytes
    ttl: int
    payload: bytes

    def encode(self) -> bytes:
        """
        The message in the wire format.
        """
        return bytes((VERSION, self.ttl)) + self.message_id + self.payload

    @classmethod
    def decode(cls, data: bytes, max_ttl: int, max_payload: int) -> GossipMessage:
        """
        Parse C{data}.

        @raise InvalidGossip: it is too short, of another version, its ttl is
            0 or above C{max_ttl}, or its payload exceeds C{max_payload}.
        """
        if len(data) < HEADER_SIZE:
            raise InvalidGossip(f"{len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
        if data[0] != VERSION:
            raise InvalidGossip(f"unknown version {data[0]}")
        ttl = data[1]
        if not 1 <= ttl <= max_ttl:
            raise InvalidGossip(f"ttl {ttl} outside 1..{max_ttl}")
        size = len(data) - HEADER_SIZE
        if size > max_payload:
            raise InvalidGossip(f"payload of {size} bytes exceeds {max_payload}")
        return cls(bytes(data[2:HEADER_SIZE]), ttl, bytes(data[HEADER_SIZE:]))


@attrs.frozen
class PeerStats:
    """
    What a peer's messages were worth to us: the peer metadata of
    L{Gossip}, persisted as C{{"useful": u, "duplicate": d, "invalid": i}}.
    """

    useful: int = 0
    duplicate: int = 0
    invalid: int = 0

    def to_json(self) -> dict[str, int]:
        """
        The counters as a JSON object.
        """
        return {"useful": self.useful, "duplicate": self.duplicate, "invalid": self.invalid}

    @classmethod
    def from_json(cls, value: Any) -> PeerStats:
        """
        Counters from L{to_json}'s object: missing counters are 0, other
        keys are ignored, and C{null} (a file written by an application
        without metadata) gives zero counters.

        @raise ValueError: C{value} is not an object, or a counter is not a
            non-negative integer.
        """
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise ValueError(f"expected an object of counters, got {type(value).__name__}")
        counts: dict[str, int] = {}
        for field in attrs.fields(cls):
            count = value.get(field.name, 0)
            if type(count) is not int or count < 0:
                raise ValueError(f"{field.name} must be a non-negative integer, got {count!r}")
            counts[field.name] = count
        return cls(**counts)


class SeenCache:
    """
    The message ids a node has seen, bounded in size and age: at most
    C{capacity} ids, each forgotten C{max_age} seconds after it was last
    seen or when C{capacity} more recently seen ids push it out.
    """

    def __init__(self, capacity: int, max_age: float) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if max_age <= 0:
            raise ValueError(f"max_age must be positive, got {max_age}")
        self.capacity = capacity
        self.max_age = max_age
        self._last_seen: collections.OrderedDict[bytes, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._last_seen)

    def __contains__(self, key: object) -> bool:
        return key in self._last_seen

    def add(self, key: bytes, now: float) -> bool:
        """
        Record that C{key} was seen at C{now}.

        @return: whether it is new (not remembered before this call).
        """
        self._expire(now)
        seen = self._last_seen
        new = key not in seen
        seen[key] = now
        seen.move_to_end(key)
        if len(seen) > self.capacity:
            seen.popitem(last=False)
        return new

    def _expire(self, now: float) -> None:
        """
        Forget the ids last seen more than C{max_age} before C{now}; they
        are the oldest, at the front.
        """
        seen = self._last_seen
        limit = now - self.max_age
        while seen:
            key, when = next(iter(seen.items()))
            if when >= limit:
                break
            del seen[key]


@attrs.define
class GossipStats:
    """
    What a node's gossip layer has done, for tests and monitoring.

    @ivar published: messages this node published.
    @ivar delivered: messages received for the first time (and given to
        C{on_message}).
    @ivar duplicates: copies of messages already seen.
    @ivar invalid: malformed messages received.
    @ivar relayed: copies sent to peers when relaying.
    @ivar expired: new messages not relayed because their ttl ran out.
    @ivar greylisted: peers greylisted for invalid messages.
    @ivar skipped: relayed copies not sent because the peer's send queue
        was full (a slow peer misses messages rather than holding memory).
    """

    published: int = 0
    delivered: int = 0
    duplicates: int = 0
    invalid: int = 0
    relayed: int = 0
    expired: int = 0
    greylisted: int = 0
    skipped: int = 0


class Gossip(BasePoolApplication):
    """
    Flooding gossip over a pool's connections, with peer scoring and
    greylisting (see the module docstring for the rules).

    Create it, give it to the pool (C{Pool(config, app=gossip)},
    C{make_node_service(config, app=gossip)}, C{network.add_pool(ip,
    app=gossip)}), then L{attach} the pool before the reactor runs.

    @ivar pool: the pool, once attached.
    @ivar stats: the L{GossipStats} counters.
    @ivar seen: the L{SeenCache} of message ids.
    """

    def __init__(
        self,
        *,
        on_message: Callable[[GossipMessage, PeerId], object] | None = None,
        ttl: int = 8,
        max_ttl: int = 16,
        max_payload: int = 65536,
        seen_capacity: int = 100_000,
        seen_max_age: float = 600.0,
        invalid_threshold: int = 3,
        invalid_penalty: float = 10.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        """
        @param on_message: called with each message received for the first
            time and the peer it came from. It may return a Deferred or an
            awaitable (an C{async def}): until it completes, the message
            counts against the connection's C{max_pending_messages}, and at
            that many the pool stops reading the peer (TCP then holds the
            sender back; nothing is dropped).
        @param ttl: the ttl of messages this node publishes.
        @param max_ttl: the largest ttl accepted (at most 255).
        @param max_payload: the largest payload accepted, in bytes.
        @param seen_capacity: how many message ids are remembered at most.
        @param seen_max_age: how long an id is remembered after it was last
            seen, in seconds.
        @param invalid_threshold: invalid messages on one connection that
            get the peer greylisted and disconnected.
        @param invalid_penalty: what one invalid message costs in the score.
        @param random_bytes: makes message ids (C{random_bytes(16)}).
        """
        if not 1 <= max_ttl <= 255:
            raise ValueError(f"max_ttl must be between 1 and 255, got {max_ttl}")
        if not 1 <= ttl <= max_ttl:
            raise ValueError(f"ttl must be between 1 and max_ttl ({max_ttl}), got {ttl}")
        if invalid_threshold < 1:
            raise ValueError(f"invalid_threshold must be at least 1, got {invalid_threshold}")
        self.on_message = on_message
        self.ttl = ttl
        self.max_ttl = max_ttl
        self.max_payload = max_payload
        self.invalid_threshold = invalid_threshold
        self.invalid_penalty = invalid_penalty
        self._random_bytes = random_bytes
        self.seen = SeenCache(seen_capacity, seen_max_age)
        self.stats = GossipStats()
        self.pool: Pool | None = None
        self._strikes: dict[Connection, int] = {}

    def attach(self, pool: Pool) -> None:
        """
        Use C{pool}, the pool this application was given to.
        """
        self.pool = pool

    def _attached(self) -> Pool:
        if self.pool is None:
            raise RuntimeError("Gossip.attach(pool) was not called")
        return self.pool

    # -- publishing ----------------------------------------------------------

    def publish(self, payload: bytes, ttl: int | None = None) -> bytes:
        """
        Send a new message to every connected peer.

        @param ttl: how many links it may cross; default L{ttl}.
        @return: its message id.
        @raise ValueError: C{payload} exceeds C{max_payload}, or C{ttl} is
            outside 1..C{max_ttl}.
        """
        pool = self._attached()
        ttl = self.ttl if ttl is None else ttl
        if not 1 <= ttl <= self.max_ttl:
            raise ValueError(f"ttl must be between 1 and {self.max_ttl}, got {ttl}")
        if len(payload) > self.max_payload:
            raise ValueError(f"payload of {len(payload)} bytes exceeds max_payload ({self.max_payload})")
        message = GossipMessage(self._random_bytes(ID_SIZE), ttl, payload)
        self.seen.add(message.message_id, pool.now())
        peers = pool.broadcast(message.encode())
        self.stats.published += 1
        _log.info(
            "gossip published {message_id} to {peers} peers: {text}",
            message_id=message.message_id.hex(),
            peers=peers,
            text=_text(payload),
        )
        return message.message_id

    # -- IPoolApplication ------------------------------------------------------

    def connection_made(self, conn: Connection) -> None:
        """
        A peer connected: it starts with no strikes.
        """
        self._strikes[conn] = 0

    def connection_lost(self, conn: Connection, reason: Any) -> None:
        """
        A peer left: forget its strikes.
        """
        self._strikes.pop(conn, None)

    def message_received(self, conn: Connection, data: bytes) -> Deferred[Any] | None:
        """
        Check, score, de-duplicate, relay and deliver a message.

        @return: what C{on_message} returned when it is a Deferred or an
            awaitable, so that the pool holds the peer back while the
            application is busy (see C{max_pending_messages}); else None.
        """
        pool = self._attached()
        try:
            message = GossipMessage.decode(data, self.max_ttl, self.max_payload)
        except InvalidGossip as e:
            self._invalid(pool, conn, str(e))
            return None
        stats = self._peer_stats(pool, conn.peer_id)
        if not self.seen.add(message.message_id, pool.now()):
            self.stats.duplicates += 1
            pool.peers.set_peer_metadata(conn.peer_id, attrs.evolve(stats, duplicate=stats.duplicate + 1))
            return None
        self.stats.delivered += 1
        pool.peers.set_peer_metadata(conn.peer_id, attrs.evolve(stats, useful=stats.useful + 1))
        if message.ttl > 1:
            self._relay(pool, conn, GossipMessage(message.message_id, message.ttl - 1, message.payload))
        else:
            self.stats.expired += 1
        _log.info(
            "gossip received {message_id} from {peer_id} (ttl {ttl}): {text}",
            message_id=message.message_id.hex(),
            peer_id=str(conn.peer_id),
            ttl=message.ttl,
            text=_text(message.payload),
        )
        if self.on_message is None:
            return None
        try:
            result = self.on_message(message, conn.peer_id)
        except Exception:
            _log.failure("gossip on_message callback failed")
            return None
        if isinstance(result, Deferred):
            return result
        if inspect.isawaitable(result):
            return ensureDeferred(_await(result))
        return None

    def _relay(self, pool: Pool, source: Connection, message: GossipMessage) -> None:
        """
        Send C{message} to every open connection but C{source}; a peer whose
        send queue is full does not get it (counted in C{skipped}).
        """
        frame = message.encode()
        for conn in pool.connections.list():
            if conn is not source and conn.is_open:
                try:
                    conn.send(frame)
                except SendQueueFull:
                    self.stats.skipped += 1
                else:
                    self.stats.relayed += 1

    def _invalid(self, pool: Pool, conn: Connection, problem: str) -> None:
        """
        Count an invalid message against the peer; greylist and disconnect
        it at the threshold.
        """
        self.stats.invalid += 1
        stats = self._peer_stats(pool, conn.peer_id)
        pool.peers.set_peer_metadata(conn.peer_id, attrs.evolve(stats, invalid=stats.invalid + 1))
        strikes = self._strikes.get(conn, 0) + 1
        self._strikes[conn] = strikes
        _log.warn(
            "gossip: invalid message from {peer_id}: {problem} (strike {strikes} of {threshold})",
            peer_id=str(conn.peer_id),
            problem=problem,
            strikes=strikes,
            threshold=self.invalid_threshold,
        )
        if strikes >= self.invalid_threshold and conn.is_open:
            self.stats.greylisted += 1
            _log.warn(
                "gossip: greylisting {peer_id} after {strikes} invalid messages",
                peer_id=str(conn.peer_id),
                strikes=strikes,
            )
            pool.greylist_peer(conn.peer_id)
            conn.disconnect(DisconnectReason.APPLICATION_ERROR)

    def _peer_stats(self, pool: Pool, peer_id: PeerId) -> PeerStats:
        stats = pool.peers.get_peer_metadata(peer_id)
        return stats if isinstance(stats, PeerStats) else PeerStats()

    # -- IPeerMetadataConfig ---------------------------------------------------

    def initial_metadata(self) -> PeerStats:
        """
        A new peer has brought nothing yet.
        """
        return PeerStats()

    def encode_metadata(self, metadata: PeerStats) -> dict[str, int]:
        """
        The counters as a JSON object, for C{peers.json}.
        """
        return metadata.to_json()

    def decode_metadata(self, value: Any) -> PeerStats:
        """
        The counters from C{peers.json} (see L{PeerStats.from_json}).
        """
        return PeerStats.from_json(value)

    def score(self, metadata: PeerStats) -> float:
        """
        C{useful - invalid_penalty * invalid}.
        """
        return metadata.useful - self.invalid_penalty * metadata.invalid


class Publisher(Service):
    """
    Publishes C{"<text> #<n>"} through a L{Gossip} every C{every} seconds
    while running (the first after C{every} seconds).
    """

    def __init__(self, gossip: Gossip, every: float, text: str = "hello", clock: IReactorTime | None = None) -> None:
        """
        @raise ValueError: C{every} is not a positive, finite number of
            seconds.
        """
        if not 0 < every < math.inf:
            raise ValueError(f"the publishing period must be a positive, finite number of seconds, got {every}")
        self.gossip = gossip
        self.every = every
        self.text = text
        self.count = 0
        self._loop = LoopingCall(self._publish)
        if clock is not None:
            self._loop.clock = clock

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # unannotated in Twisted
        self._loop.start(self.every, now=False)

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]  # unannotated in Twisted
        if self._loop.running:
            self._loop.stop()

    def _publish(self) -> None:
        self.count += 1
        try:
            self.gossip.publish(f"{self.text} #{self.count}".encode())
        except Exception:
            # Logged, and the next period tries again: raising would stop
            # the loop and fail its Deferred, which nobody waits on.
            _log.failure("gossip: cannot publish #{count}", count=self.count)


def publish_period(text: str) -> float:
    """
    The publishing period written C{text} (C{$GOSSIP_PUBLISH_EVERY} of
    C{tac/gossip.tac}), in seconds.

    @raise ValueError: C{text} is not a positive, finite number.
    """
    try:
        every = float(text)
    except ValueError:
        every = math.nan
    if not 0 < every < math.inf:
        raise ValueError(f"expected a positive, finite number of seconds, got {text!r}")
    return every


async def _await(result: Awaitable[Any]) -> Any:
    return await result


def _text(payload: bytes, limit: int = 200) -> str:
    """
    A payload as text for the log: UTF-8 (invalid bytes replaced), cut at
    C{limit} characters.
    """
    text = payload.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "…"
