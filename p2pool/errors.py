# -*- test-case-name: tests.test_handshake -*-
"""
Typed errors of the pool, after Tezos's C{node.p2p_*} errors, and the typed
reasons a connection closes for.
"""

from __future__ import annotations

import enum
import errno
import re
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from p2pool.core.addressing import PeerId, Point


class P2PError(Exception):
    """
    Base class of every error the pool reports about a peer or connection.
    """


class PeerConnectionClosed(P2PError):
    """
    The connection to a peer closed (by the remote side or the network).
    Not Twisted's C{twisted.internet.error.ConnectionClosed}.
    """


class DecodingError(P2PError):
    """
    The remote sent bytes that do not decode (a malformed frame or body).
    """


class InvalidMessageSize(DecodingError):
    """
    A frame is larger than the configured C{max_message_size}, or an
    application message to send is.
    """


class InvalidAuth(P2PError):
    """
    The TLS handshake failed: no certificate, a bad or non-Ed25519
    certificate, or a certificate whose peer id is not the one pinned.
    """


class NotEnoughProofOfWork(P2PError):
    """
    The remote identity's proof-of-work stamp is below the required
    difficulty.
    """

    def __init__(self, peer_id: PeerId) -> None:
        super().__init__(f"peer {peer_id} has not enough proof of work")
        self.peer_id = peer_id


class Myself(P2PError):
    """
    The remote peer is this node itself.
    """

    def __init__(self, point: Point | None) -> None:
        super().__init__(f"connection to myself at {point}")
        self.point = point


class IdentityCheckFailure(P2PError):
    """
    The peer at a point is not the peer id expected there.
    """

    def __init__(self, point: Point | None, expected: PeerId, received: PeerId) -> None:
        super().__init__(f"expected peer {expected} at {point}, found {received}")
        self.point = point
        self.expected_peer_id = expected
        self.received_peer_id = received


class NackMotive(enum.IntEnum):
    """
    Why a handshake was refused (Tezos motive codes).
    """

    NO_MOTIVE = 0
    TOO_MANY_CONNECTIONS = 1
    UNKNOWN_CHAIN_NAME = 2
    DEPRECATED_P2P_VERSION = 3
    DEPRECATED_APPLICATION_VERSION = 4
    ALREADY_CONNECTED = 5


def motive_name(code: int) -> str:
    """
    The name of a motive code, or C{unknown_motive_N}.
    """
    try:
        return NackMotive(code).name.lower()
    except ValueError:
        return f"unknown_motive_{code}"


class RejectedByNack(P2PError):
    """
    The remote refused the connection with a nack.
    """

    def __init__(self, motive: int, alternative_points: Sequence[Point] = ()) -> None:
        super().__init__(f"rejected by the remote: {motive_name(motive)}")
        self.motive = motive
        self.alternative_points = tuple(alternative_points)


class Rejected(P2PError):
    """
    We refused the remote peer with a nack.
    """

    def __init__(self, peer_id: PeerId | None, motive: int) -> None:
        super().__init__(f"rejected peer {peer_id}: {motive_name(motive)}")
        self.peer_id = peer_id
        self.motive = motive


class RejectedNoCommonProtocol(Rejected):
    """
    We refused the remote peer because no network name, p2p version or
    application version is shared.
    """


class PeerBanned(P2PError):
    """
    The remote peer id is banned or greylisted.
    """

    def __init__(self, peer_id: PeerId) -> None:
        super().__init__(f"peer {peer_id} is banned")
        self.peer_id = peer_id


class PointBanned(P2PError):
    """
    The address is banned or greylisted.
    """

    def __init__(self, point: Point) -> None:
        super().__init__(f"point {point} is banned")
        self.point = point


class PrivateMode(P2PError):
    """
    This node runs in private mode and the remote is not trusted.
    """


class TooManyConnections(P2PError):
    """
    No connection slot is free.
    """


class PendingConnection(P2PError):
    """
    A connection to this point is already being set up.
    """


class Connected(P2PError):
    """
    This point or peer is already connected.
    """


class ConnectionFailed(P2PError):
    """
    The TCP connection could not be made.
    """


class Timeout(P2PError):
    """
    The connection or handshake did not finish in time.
    """


class Displaced(P2PError):
    """
    A pending incoming handshake was closed to make room for one from a
    less represented network group (the handshake slots were full).
    """


class MaintenanceDisabled(P2PError):
    """
    Maintenance was asked for but is disabled.
    """


class SendQueueFull(P2PError):
    """
    A connection's send queue (C{send_queue_size}) or the node's send
    budget (C{send_queue_budget}) cannot hold the message now; nothing was
    queued. Retry when the peer has drained it (C{Connection.send_when_room}
    or C{Pool.send} wait for that).
    """


class UnknownPeer(P2PError, KeyError):
    """
    No running connection to this peer id.
    """


class DisconnectReason(enum.Enum):
    """
    Why a running connection closed; given to C{connection_lost} and the
    C{disconnection} event.
    """

    REQUESTED = "requested"
    REMOTE_DISCONNECT = "remote_disconnect"
    CONNECTION_LOST = "connection_lost"
    DECODING_ERROR = "decoding_error"
    MESSAGE_TOO_LARGE = "message_too_large"
    PEER_BANNED = "peer_banned"
    IP_BANNED = "ip_banned"
    UNEXPECTED_PEER_ID = "unexpected_peer_id"
    MAINTENANCE_TOO_MANY = "maintenance_too_many"
    PEER_SWAPPED = "peer_swapped"
    POOL_DESTROYED = "pool_destroyed"
    APPLICATION_ERROR = "application_error"
    IDLE_TIMEOUT = "idle_timeout"
    SEND_STALLED = "send_stalled"
    FRAME_TOO_SLOW = "frame_too_slow"
    EVICTED = "evicted"


class ConnectionEnded(PeerConnectionClosed):
    """
    A running connection ended; C{reason} says why. Given to
    C{connection_lost}, and raised by sending on a closed connection. Not
    Twisted's C{twisted.internet.error.ConnectionDone}.
    """

    def __init__(self, reason: DisconnectReason, detail: str = "") -> None:
        text = reason.value + (f": {detail}" if detail else "")
        super().__init__(text)
        self.reason = reason
        self.detail = detail


#: Names this module used before, each to the class now named otherwise;
#: they shadowed Twisted's C{twisted.internet.error} classes of the same
#: names. Kept for one release.
_DEPRECATED = {"ConnectionClosed": PeerConnectionClosed, "ConnectionDone": ConnectionEnded}


def deprecated_name(module: str, name: str) -> type[P2PError]:
    """
    The class once named C{name}, with a C{DeprecationWarning} pointing at
    the code that used the old name; for the C{__getattr__} of C{module}.

    @raise AttributeError: C{name} is not a deprecated name.
    """
    try:
        new = _DEPRECATED[name]
    except KeyError:
        raise AttributeError(f"module {module!r} has no attribute {name!r}") from None
    warnings.warn(
        f"{module}.{name} is deprecated (it shadowed twisted.internet.error.{name}); use {module}.{new.__name__}",
        DeprecationWarning,
        stacklevel=3,
    )
    return new


if not TYPE_CHECKING:  # type checkers report the old names as missing

    def __getattr__(name: str) -> type[P2PError]:
        return deprecated_name(__name__, name)


#: What a failure to listen means, by C{errno}, for L{listen_failure_text}.
_LISTEN_FAILURES = {
    errno.EADDRINUSE: "address already in use (another program, perhaps another node, listens there)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "cannot assign the address (no interface of this host has it)",
}


def listen_failure_text(key: str, where: object, error: BaseException) -> str:
    """
    One line saying why the socket of configuration key C{key} (C{p2p.listen},
    C{admin.listen}) could not listen on C{where}: C{"p2p.listen
    0.0.0.0:9732: address already in use (...)"}.

    @param error: the failure, a C{CannotListenError} (whose C{socketError}
        holds the cause) or an C{OSError}.
    """
    cause = getattr(error, "socketError", error)
    code = getattr(cause, "errno", None)
    reason = _LISTEN_FAILURES.get(code) if isinstance(code, int) else None
    if reason is None:
        text = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
        reason = "cannot listen: " + text[:1].lower() + text[1:]
    return f"{key} {where}: {reason}"


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """
    An error class name as a label (in metrics, refusal reasons and admin
    errors): C{TooManyConnections} becomes C{too_many_connections}.
    """
    return _CAMEL.sub("_", name).lower()
