# -*- test-case-name: tests.test_handshake -*-
"""
Typed errors of the pool, after Tezos's C{node.p2p_*} errors, and the typed
reasons a connection closes for.
"""

from __future__ import annotations

import enum
from typing import Optional, Sequence

from p2pool.addressing import PeerId, Point


class P2PError(Exception):
    """
    Base class of every error the pool reports about a peer or connection.
    """


class ConnectionClosed(P2PError):
    """
    The connection closed (by the remote side or the network).
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

    def __init__(self, point: Optional[Point]) -> None:
        super().__init__(f"connection to myself at {point}")
        self.point = point


class IdentityCheckFailure(P2PError):
    """
    The peer at a point is not the peer id expected there.
    """

    def __init__(self, point: Optional[Point], expected: PeerId, received: PeerId) -> None:
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

    def __init__(self, peer_id: Optional[PeerId], motive: int) -> None:
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


class ConnectionDone(ConnectionClosed):
    """
    A running connection ended; C{reason} says why.
    """

    def __init__(self, reason: DisconnectReason, detail: str = "") -> None:
        text = reason.value + (f": {detail}" if detail else "")
        super().__init__(text)
        self.reason = reason
        self.detail = detail
