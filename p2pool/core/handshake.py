# -*- test-case-name: tests.test_handshake -*-
"""
The p2pool handshake after TLS, sans I/O: each side sends a L{Hello}, checks
the other's (proof of work, self-connection, network and versions), asks the
pool whether to accept, then sends L{Ack} or L{Nack} and waits for the
other's answer.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Sequence

import attrs

from p2pool.core.addressing import PeerId, Point
from p2pool.core.identity import check_proof_of_work
from p2pool.core.wire import Ack, Hello, Kind, Nack, decode_control, encode
from p2pool.errors import (
    DecodingError,
    Myself,
    NackMotive,
    NotEnoughProofOfWork,
    P2PError,
    Rejected,
    RejectedByNack,
    RejectedNoCommonProtocol,
)

__all__ = [
    "Accept",
    "Handshake",
    "HandshakeParams",
    "HandshakeState",
    "Refuse",
    "RemoteInfo",
    "select_version",
]

#: The p2pool protocol versions this implementation speaks.
P2P_VERSIONS: tuple[int, ...] = (1,)


@attrs.frozen
class HandshakeParams:
    """
    What this node says about itself in every handshake and what it
    requires of others.
    """

    peer_id: PeerId
    port: int
    proof_of_work_stamp: bytes
    network: str
    expected_proof_of_work: float
    p2p_versions: tuple[int, ...] = P2P_VERSIONS
    application_versions: tuple[int, ...] = (0,)
    private_mode: bool = False
    metadata: bytes = b""

    def hello(self) -> Hello:
        """
        The Hello frame this node sends.
        """
        return Hello(
            self.port,
            self.proof_of_work_stamp,
            self.network,
            self.p2p_versions,
            self.application_versions,
            self.private_mode,
            self.metadata,
        )

    @functools.cached_property
    def hello_frame(self) -> bytes:
        """
        L{hello}, encoded (the same for every connection).
        """
        return encode(self.hello())


@attrs.frozen
class RemoteInfo:
    """
    What a handshake learnt about the remote side.

    @ivar dialed_point: the point we dialed (outgoing connections only).
    @ivar p2p_version: the p2p version chosen for this connection.
    @ivar application_version: the application version chosen.
    """

    peer_id: PeerId
    public_key: bytes
    hello: Hello
    incoming: bool
    remote_ip: str
    dialed_point: Point | None
    p2p_version: int
    application_version: int | None
    #: Where the remote can be reached: the dialed point, or for an
    #: incoming connection its address with its advertised port (None when
    #: it advertises none). Made with the record: every accepted
    #: connection reads it.
    id_point: Point | None = attrs.field(init=False)

    @id_point.default
    def _id_point(self) -> Point | None:
        if self.dialed_point is not None:
            return self.dialed_point
        return Point(self.remote_ip, self.hello.port) if self.hello.port else None

    @property
    def private(self) -> bool:
        """
        The remote runs in private mode.
        """
        return self.hello.private_mode


@attrs.frozen
class Accept:
    """
    The pool accepts the connection.
    """


@attrs.frozen
class Refuse:
    """
    The pool refuses the connection: with a nack when C{motive} is given,
    otherwise by closing.
    """

    error: P2PError
    motive: int | None = None
    alternative_points: tuple[Point, ...] = ()


Decision = Accept | Refuse


def select_version(local: Sequence[int], remote: Sequence[int]) -> int | None:
    """
    The highest version both sides speak, or None.
    """
    common = set(local).intersection(remote)
    return max(common) if common else None


#: The Ack frame.
_ACK_FRAME = encode(Ack())


class HandshakeState(enum.Enum):
    """
    Where a connection's handshake stands.
    """

    AWAIT_TLS = "await_tls"
    AWAIT_HELLO = "await_hello"
    AWAIT_ACK = "await_ack"
    RUNNING = "running"
    CLOSED = "closed"

    # Members are singletons compared by identity: hashed by identity too,
    # in C (Enum's own __hash__ is a Python call at every transition).
    __hash__ = object.__hash__


_TRANSITIONS: dict[tuple[HandshakeState, str], HandshakeState] = {
    (HandshakeState.AWAIT_TLS, "tls_established"): HandshakeState.AWAIT_HELLO,
    (HandshakeState.AWAIT_HELLO, "accepted"): HandshakeState.AWAIT_ACK,
    (HandshakeState.AWAIT_HELLO, "refused"): HandshakeState.CLOSED,
    (HandshakeState.AWAIT_ACK, "ack"): HandshakeState.RUNNING,
    (HandshakeState.AWAIT_ACK, "nack"): HandshakeState.CLOSED,
}


class Handshake:
    """
    One connection's handshake. Feed it L{tls_established} and every
    control frame until it returns a L{RemoteInfo}; it writes its own
    frames through C{send} and raises a L{P2PError} when the connection
    must end.
    """

    def __init__(
        self,
        params: HandshakeParams,
        *,
        incoming: bool,
        remote_ip: str,
        dialed_point: Point | None,
        decide: Callable[[RemoteInfo], Decision],
        send: Callable[[bytes], object],
    ) -> None:
        self.params = params
        self.incoming = incoming
        self.remote_ip = remote_ip
        self.dialed_point = dialed_point
        self._decide = decide
        self._send = send
        self.state = HandshakeState.AWAIT_TLS
        self.peer_id: PeerId | None = None
        self._public_key = b""
        self.remote: RemoteInfo | None = None

    def _advance(self, event: str) -> None:
        try:
            self.state = _TRANSITIONS[self.state, event]
        except KeyError:
            raise DecodingError(f"unexpected {event} while in {self.state.value}") from None

    def close(self) -> None:
        """
        The connection ended; no more input is expected.
        """
        self.state = HandshakeState.CLOSED

    def tls_established(self, peer_id: PeerId, public_key: bytes) -> None:
        """
        TLS authenticated the remote as C{peer_id}: send our Hello.
        """
        self._advance("tls_established")
        self.peer_id, self._public_key = peer_id, public_key
        self._send(self.params.hello_frame)

    def control_received(self, kind: int, body: bytes) -> RemoteInfo | None:
        """
        Handle one handshake frame.

        @return: the remote's info once both sides have acknowledged.
        @raise P2PError: the handshake failed; close the connection.
        """
        if self.state is HandshakeState.AWAIT_HELLO and kind == Kind.HELLO:
            hello = decode_control(kind, body)
            assert isinstance(hello, Hello)
            self._hello_received(hello)
            return None
        if self.state is HandshakeState.AWAIT_ACK and kind in (Kind.ACK, Kind.NACK):
            answer = decode_control(kind, body)
            if isinstance(answer, Ack):
                self._advance("ack")
                return self.remote
            assert isinstance(answer, Nack)
            self._advance("nack")
            raise RejectedByNack(answer.motive, answer.alternative_points)
        try:
            name = Kind(kind).name.lower()
        except ValueError:
            name = f"0x{kind:02x}"
        raise DecodingError(f"unexpected {name} frame while in {self.state.value}")

    def _hello_received(self, hello: Hello) -> None:
        assert self.peer_id is not None
        params = self.params
        if not check_proof_of_work(self._public_key, hello.proof_of_work_stamp, params.expected_proof_of_work):
            raise NotEnoughProofOfWork(self.peer_id)
        p2p_version = select_version(params.p2p_versions, hello.p2p_versions)
        application_version = select_version(params.application_versions, hello.application_versions)
        remote = RemoteInfo(
            peer_id=self.peer_id,
            public_key=self._public_key,
            hello=hello,
            incoming=self.incoming,
            remote_ip=self.remote_ip,
            dialed_point=self.dialed_point,
            p2p_version=p2p_version or 0,
            application_version=application_version,
        )
        if self.peer_id == params.peer_id:
            raise Myself(remote.id_point)
        decision = self._protocol_decision(remote, p2p_version, application_version) or self._decide(remote)
        if isinstance(decision, Refuse):
            self._advance("refused")
            if decision.motive is not None:
                self._send(encode(Nack(decision.motive, decision.alternative_points)))
            raise decision.error
        self.remote = remote
        self._advance("accepted")
        self._send(_ACK_FRAME)

    def _protocol_decision(
        self, remote: RemoteInfo, p2p_version: int | None, application_version: int | None
    ) -> Refuse | None:
        """
        Refuse a remote with which no network, p2p version or application
        version is shared (the versions chosen, C{None} when there is none).
        """
        if remote.hello.network != self.params.network:
            motive = NackMotive.UNKNOWN_CHAIN_NAME
        elif p2p_version is None:
            motive = NackMotive.DEPRECATED_P2P_VERSION
        elif application_version is None:
            motive = NackMotive.DEPRECATED_APPLICATION_VERSION
        else:
            return None
        return Refuse(RejectedNoCommonProtocol(remote.peer_id, motive), motive)


def nack_refusal(peer_id: PeerId | None, motive: int, points: Sequence[Point] = ()) -> Refuse:
    """
    A refusal with a nack of C{motive} carrying C{points}.
    """
    return Refuse(Rejected(peer_id, motive), motive, tuple(points))
