# -*- test-case-name: tests.test_simulation_channel -*-
"""
The contract of what carries a pool's peer connections: it authenticates
the two ends to each other and protects the bytes in between. A node always
uses TLS (L{p2pool.transport.tls.TLSContext}); the only other channel is
the simulation channel of C{p2pool.testing}, which only a simulation can
hand to a L{p2pool.pool.service.Pool} (no configuration key selects it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.internet import protocol
from twisted.internet.interfaces import IProtocol, IReactorTime

from p2pool.core.identity import Identity
from p2pool.transport.tls import TLSContext

__all__ = ["ChannelMaker", "ChannelWrapper", "PeerChannel", "tls_channel"]


class ChannelWrapper(Protocol):
    """
    Runs a channel over connections whose inner protocol is already made:
    one for all the dialed, or all the accepted, connections of a pool.
    """

    def wrap(self, inner: IProtocol) -> protocol.Protocol:
        """
        The channel's protocol of one new connection, with C{inner}
        inside it.
        """


class PeerChannel(Protocol):
    """
    The channel of one node's peer connections. The protocols it carries
    are L{p2pool.transport.peer_protocol.PeerProtocol}s: before it passes
    them any byte, it fills their C{verification} with the peer's id and
    public key (or the reason the peer was refused) and calls their
    C{handshakeCompleted}.
    """

    def client_wrapper(self, clock: IReactorTime) -> ChannelWrapper:
        """
        What runs the channel over the dialed connections of a pool, each
        with its own protocol inside (made before the dial, with the peer
        id it expects, if any).
        """

    def server_wrapper(self, clock: IReactorTime) -> ChannelWrapper:
        """
        What runs the channel over the accepted connections of a pool, each
        with its own protocol inside (made once the connection is admitted).
        """


#: Builds a node's channel once its identity is loaded.
ChannelMaker = Callable[[Identity], PeerChannel]


def tls_channel(identity: Identity) -> PeerChannel:
    """
    The channel of every node: mutually authenticated TLS 1.3 with a
    certificate made from C{identity}'s key.
    """
    return TLSContext(identity.private_key)
