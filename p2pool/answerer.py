# -*- test-case-name: tests.test_integration -*-
"""
What a pool answers to the control frames of running connections (Tezos
C{P2p_protocol}): Disconnect, Ping, Bootstrap, Advertise and swaps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from p2pool.connection import Connection
from p2pool.errors import ConnectionDone, DecodingError, DisconnectReason
from p2pool.wire import Advertise, Bootstrap, Disconnect, Kind, Ping, Pong, SwapAck, SwapRequest, decode_control, encode

if TYPE_CHECKING:
    from p2pool.pool import Pool

__all__ = ["Answerer"]

#: How many points an advertisement carries.
ADVERTISED_POINTS = 50
_PONG = encode(Pong())


class Answerer:
    """
    Handles the control frames of a pool's running connections. In private
    mode, and for discovery when C{disable_peer_discovery} is set,
    discovery frames are ignored.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def control_received(self, conn: Connection, kind: int, body: bytes) -> None:
        """
        Act on one control frame.

        @raise DecodingError: a malformed frame, or a kind that has no
            place on a running connection.
        """
        msg = decode_control(kind, body)
        if isinstance(msg, Disconnect):
            conn._protocol.fail(ConnectionDone(DisconnectReason.REMOTE_DISCONNECT))
        elif isinstance(msg, Ping):
            conn._protocol.write(_PONG)
        elif isinstance(msg, Pong):
            return
        elif isinstance(msg, Bootstrap):
            self._bootstrap_received(conn)
        elif isinstance(msg, Advertise):
            self._advertise_received(conn, msg)
        elif isinstance(msg, SwapRequest):
            self._pool.events.emit("swap_request_received", peer_id=str(conn.peer_id))
            self._pool.events.emit("swap_request_ignored", peer_id=str(conn.peer_id))
        elif isinstance(msg, SwapAck):
            self._pool.events.emit("swap_ack_received", peer_id=str(conn.peer_id))
        else:
            raise DecodingError(f"unexpected {Kind(kind).name.lower()} frame on a running connection")

    def _discovery_off(self) -> bool:
        config = self._pool.config
        return config.disable_peer_discovery or config.private_mode

    def _bootstrap_received(self, conn: Connection) -> None:
        pool = self._pool
        pool.events.emit("bootstrap_received", peer_id=str(conn.peer_id))
        if self._discovery_off() or conn.private:
            return
        points = pool.list_known_points(ignore_private=True, size=ADVERTISED_POINTS)
        if points:
            conn._protocol.write(encode(Advertise(tuple(points))))
            pool.events.emit("advertise_sent", peer_id=str(conn.peer_id), points=len(points))

    def _advertise_received(self, conn: Connection, msg: Advertise) -> None:
        pool = self._pool
        pool.events.emit("advertise_received", peer_id=str(conn.peer_id), points=len(msg.points))
        if self._discovery_off():
            return
        pool.register_list_of_new_points(msg.points, medium="advertise", source=str(conn.peer_id))
