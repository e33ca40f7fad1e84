# -*- test-case-name: tests.test_pool_api,tests.test_persistence -*-
"""
The contracts an application embedding a pool implements.
"""

from __future__ import annotations

from typing import Any

from zope.interface import Interface, implementer

__all__ = ["BasePoolApplication", "IPeerMetadataConfig", "IPoolApplication"]


class IPoolApplication(Interface):
    """
    The application running over a pool's connections.

    Its methods run in the reactor thread, one at a time. An exception one
    raises (or a failure of the Deferred C{message_received} returns) is
    logged as the application's error; the connection and the pool go on.
    """

    def connection_made(conn: Any) -> None:
        """
        A connection to a peer is established (C{conn} is a
        L{p2pool.transport.connection.Connection}).

        It may be an C{async def} (or return a Deferred): that runs on its
        own, and messages may arrive before it completes.
        """

    def message_received(conn: Any, data: bytes) -> Any:
        """
        An application message arrived on C{conn}.

        Return None when done with it, or a Deferred or awaitable (an
        C{async def} method) that completes when done: until then the
        message is in hand, and with C{max_pending_messages} in hand the
        pool stops reading C{conn} (TCP holds the peer back; nothing is
        dropped, order is kept).
        """

    def connection_lost(conn: Any, reason: Any) -> None:
        """
        C{conn} closed; C{reason} is a L{p2pool.errors.ConnectionEnded}
        whose C{reason} attribute is a L{p2pool.errors.DisconnectReason}.

        It may be an C{async def} (or return a Deferred), which runs on its
        own.
        """


class IPeerMetadataConfig(Interface):
    """
    The application's metadata about each known peer (Tezos
    C{peer_meta_config}): persisted in the peers file and scored.
    """

    def initial_metadata() -> Any:
        """
        The metadata of a newly known peer.
        """

    def encode_metadata(metadata: Any) -> Any:
        """
        C{metadata} as a JSON value.
        """

    def decode_metadata(value: Any) -> Any:
        """
        Metadata from the JSON value L{encode_metadata} made; raise
        C{ValueError} when it is malformed.
        """

    def score(metadata: Any) -> float:
        """
        How good the peer is (higher is better); the lowest are forgotten
        first when the peer table is full, and the best incoming peers are
        protected from inbound eviction when the connection slots are full.
        """


@implementer(IPoolApplication, IPeerMetadataConfig)
class BasePoolApplication:
    """
    An application that ignores every event and keeps no peer metadata;
    subclass it and override what you need.
    """

    def connection_made(self, conn: Any) -> None:
        """
        Ignore a new connection.
        """

    def message_received(self, conn: Any, data: bytes) -> Any:
        """
        Ignore a message.
        """

    def connection_lost(self, conn: Any, reason: Any) -> None:
        """
        Ignore a closed connection.
        """

    def initial_metadata(self) -> Any:
        return None

    def encode_metadata(self, metadata: Any) -> Any:
        return metadata

    def decode_metadata(self, value: Any) -> Any:
        return value

    def score(self, metadata: Any) -> float:
        return 0.0
