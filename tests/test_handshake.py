"""
Tests for L{p2pool.core.handshake}: two L{Handshake}s driven against each other
in memory, without a reactor.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.trial.unittest import SynchronousTestCase

from p2pool.core.addressing import Point
from p2pool.core.handshake import (
    P2P_VERSIONS,
    Accept,
    Decision,
    Handshake,
    HandshakeParams,
    HandshakeState,
    Refuse,
    RemoteInfo,
    nack_refusal,
    select_version,
)
from p2pool.core.identity import Identity, check_proof_of_work
from p2pool.core.wire import HANDSHAKE_MAX_BODY, Ack, FrameDecoder, Hello, Kind, Nack, decode_control, encode
from p2pool.errors import (
    DecodingError,
    Myself,
    NackMotive,
    NotEnoughProofOfWork,
    P2PError,
    PrivateMode,
    Rejected,
    RejectedByNack,
    RejectedNoCommonProtocol,
)

DIAL_IP = "10.0.0.1"
LISTEN_IP = "10.0.0.2"
LISTEN_PORT = 9732
DIALER_PORT = 19732

ALICE = Identity.generate(0)
BOB = Identity.generate(0)


def make_params(identity: Identity, **changes: object) -> HandshakeParams:
    fields: dict[str, object] = dict(
        peer_id=identity.peer_id,
        port=DIALER_PORT,
        proof_of_work_stamp=identity.proof_of_work_stamp,
        network="p2pool-test",
        expected_proof_of_work=0,
    )
    fields.update(changes)
    return HandshakeParams(**fields)  # type: ignore[arg-type]


def accept_all(remote: RemoteInfo) -> Decision:
    return Accept()


def weak_stamp(identity: Identity, difficulty: float) -> bytes:
    """
    A stamp that does not reach C{difficulty} for C{identity}'s key.
    """
    for n in range(1000):
        stamp = n.to_bytes(24, "big")
        if not check_proof_of_work(identity.public_key, stamp, difficulty):
            return stamp
    raise AssertionError("no weak stamp found")


Outcome = RemoteInfo | P2PError | None


class Side:
    """
    One end of an in-memory handshake: a L{Handshake}, the frame decoder
    of its input, what it sent, and how it ended.
    """

    def __init__(
        self,
        identity: Identity,
        params: HandshakeParams,
        *,
        incoming: bool,
        remote_ip: str,
        dialed_point: Point | None,
        decide: Callable[[RemoteInfo], Decision],
    ) -> None:
        self.identity = identity
        self.peer: Side | None = None
        self.inbox: list[tuple[int, bytes]] = []
        self.sent: list[object] = []
        self.outcome: Outcome = None
        self.closed = False
        self.decided: list[RemoteInfo] = []
        self.rewrite: Callable[[bytes], bytes] = lambda data: data

        def record_decision(remote: RemoteInfo) -> Decision:
            self.decided.append(remote)
            return decide(remote)

        self.decoder = FrameDecoder(
            HANDSHAKE_MAX_BODY, self._message, lambda kind, body: self.inbox.append((kind, body))
        )
        self.handshake = Handshake(
            params,
            incoming=incoming,
            remote_ip=remote_ip,
            dialed_point=dialed_point,
            decide=record_decision,
            send=self._send,
        )

    def _message(self, body: bytes) -> None:
        self.inbox.append((int(Kind.MESSAGE), body))

    def _send(self, data: bytes) -> None:
        ((kind, body),) = [(data[4], data[5:])]
        self.sent.append(decode_control(kind, body))
        assert self.peer is not None
        if not self.peer.closed:
            self.peer.decoder.feed(self.rewrite(data))

    def start(self) -> None:
        assert self.peer is not None
        self.handshake.tls_established(self.peer.identity.peer_id, self.peer.identity.public_key)

    def step(self) -> bool:
        """
        Handle one received frame; whether there was one.
        """
        if self.closed or not self.inbox:
            return False
        kind, body = self.inbox.pop(0)
        try:
            result = self.handshake.control_received(kind, body)
        except P2PError as e:
            self.outcome = e
            self.closed = True
            self.handshake.close()
        else:
            if result is not None:
                self.outcome = result
        return True


def make_pair(
    dialer: HandshakeParams,
    listener: HandshakeParams,
    *,
    dialer_identity: Identity = ALICE,
    listener_identity: Identity = BOB,
    dialer_decide: Callable[[RemoteInfo], Decision] = accept_all,
    listener_decide: Callable[[RemoteInfo], Decision] = accept_all,
) -> tuple[Side, Side]:
    """
    A dialing side and a listening side wired to each other.
    """
    out = Side(
        dialer_identity,
        dialer,
        incoming=False,
        remote_ip=LISTEN_IP,
        dialed_point=Point(LISTEN_IP, LISTEN_PORT),
        decide=dialer_decide,
    )
    inc = Side(listener_identity, listener, incoming=True, remote_ip=DIAL_IP, dialed_point=None, decide=listener_decide)
    out.peer, inc.peer = inc, out
    return out, inc


def run(out: Side, inc: Side) -> None:
    """
    Both sides finish TLS and send their Hello; then each handles what it
    received, the listener first, until nothing is left.
    """
    out.start()
    inc.start()
    while inc.step() or out.step():
        pass


class SuccessTests(SynchronousTestCase):
    """
    Two compatible nodes both end with the other's L{RemoteInfo}.
    """

    def test_success(self) -> None:
        out, inc = make_pair(
            make_params(ALICE, p2p_versions=(1, 2, 3), application_versions=(0, 5), metadata=b"alice"),
            make_params(
                BOB, port=LISTEN_PORT, p2p_versions=(3, 2, 4), application_versions=(7, 5, 0), private_mode=True
            ),
        )
        run(out, inc)
        assert isinstance(out.outcome, RemoteInfo) and isinstance(inc.outcome, RemoteInfo)
        self.assertEqual(out.handshake.state, HandshakeState.RUNNING)
        self.assertEqual(inc.handshake.state, HandshakeState.RUNNING)
        self.assertEqual([type(m) for m in out.sent], [Hello, Ack])
        self.assertEqual([type(m) for m in inc.sent], [Hello, Ack])
        for remote in (out.outcome, inc.outcome):
            self.assertEqual(remote.p2p_version, 3)
            self.assertEqual(remote.application_version, 5)

        seen_by_dialer = out.outcome
        self.assertEqual(seen_by_dialer.peer_id, BOB.peer_id)
        self.assertEqual(seen_by_dialer.public_key, BOB.public_key)
        self.assertFalse(seen_by_dialer.incoming)
        self.assertTrue(seen_by_dialer.private)
        self.assertEqual(seen_by_dialer.id_point, Point(LISTEN_IP, LISTEN_PORT))
        self.assertEqual(seen_by_dialer.hello, inc.handshake.params.hello())

        seen_by_listener = inc.outcome
        self.assertEqual(seen_by_listener.peer_id, ALICE.peer_id)
        self.assertTrue(seen_by_listener.incoming)
        self.assertFalse(seen_by_listener.private)
        self.assertEqual(seen_by_listener.hello.metadata, b"alice")
        # Incoming: the remote's address with the port it advertises.
        self.assertEqual(seen_by_listener.id_point, Point(DIAL_IP, DIALER_PORT))

        self.assertEqual(out.decided, [seen_by_dialer])
        self.assertEqual(inc.decided, [seen_by_listener])

    def test_incoming_without_listening_port(self) -> None:
        out, inc = make_pair(make_params(ALICE, port=0), make_params(BOB, port=LISTEN_PORT))
        run(out, inc)
        assert isinstance(inc.outcome, RemoteInfo) and isinstance(out.outcome, RemoteInfo)
        self.assertIsNone(inc.outcome.id_point)
        self.assertEqual(out.outcome.id_point, Point(LISTEN_IP, LISTEN_PORT))

    def test_default_versions(self) -> None:
        out, inc = make_pair(make_params(ALICE), make_params(BOB))
        run(out, inc)
        assert isinstance(out.outcome, RemoteInfo)
        self.assertEqual(out.outcome.p2p_version, max(P2P_VERSIONS))
        self.assertEqual(out.outcome.application_version, 0)

    def test_ack_waits_for_both(self) -> None:
        """
        Sending our Ack does not finish the handshake: the remote's Ack
        does.
        """
        out, inc = make_pair(make_params(ALICE), make_params(BOB))
        out.start()
        inc.start()
        self.assertTrue(inc.step())
        self.assertIsNone(inc.outcome)
        self.assertEqual(inc.handshake.state, HandshakeState.AWAIT_ACK)
        self.assertTrue(out.step())
        self.assertEqual(out.handshake.state, HandshakeState.AWAIT_ACK)
        self.assertTrue(out.step())
        self.assertIsInstance(out.outcome, RemoteInfo)
        self.assertTrue(inc.step())
        self.assertIsInstance(inc.outcome, RemoteInfo)


class RefusalTests(SynchronousTestCase):
    """
    The checks on the remote's Hello, in order, and how each refuses.
    """

    def test_not_enough_proof_of_work(self) -> None:
        weak = weak_stamp(ALICE, 8)
        out, inc = make_pair(
            make_params(ALICE, proof_of_work_stamp=weak),
            make_params(BOB, expected_proof_of_work=8),
        )
        run(out, inc)
        assert isinstance(inc.outcome, NotEnoughProofOfWork)
        self.assertEqual(inc.outcome.peer_id, ALICE.peer_id)
        self.assertEqual([type(m) for m in inc.sent], [Hello])
        self.assertEqual(inc.decided, [])
        # The dialer, requiring nothing, accepted and waits for an answer
        # that will never come (the listener closes).
        self.assertEqual(out.handshake.state, HandshakeState.AWAIT_ACK)
        self.assertIsNone(out.outcome)

    def test_proof_of_work_checked_first(self) -> None:
        """
        Insufficient proof of work wins over every other problem.
        """
        out, inc = make_pair(
            make_params(ALICE, proof_of_work_stamp=weak_stamp(ALICE, 8), network="other", p2p_versions=(9,)),
            make_params(ALICE, expected_proof_of_work=8),
            listener_identity=ALICE,
        )
        run(out, inc)
        self.assertIsInstance(inc.outcome, NotEnoughProofOfWork)

    def test_myself(self) -> None:
        out, inc = make_pair(
            make_params(ALICE, network="a"),
            make_params(ALICE, network="b", port=LISTEN_PORT),
            listener_identity=ALICE,
        )
        run(out, inc)
        assert isinstance(out.outcome, Myself) and isinstance(inc.outcome, Myself)
        self.assertEqual(out.outcome.point, Point(LISTEN_IP, LISTEN_PORT))
        self.assertEqual(inc.outcome.point, Point(DIAL_IP, DIALER_PORT))
        # Checked before the network name: no nack is sent.
        self.assertEqual([type(m) for m in out.sent], [Hello])
        self.assertEqual([type(m) for m in inc.sent], [Hello])
        self.assertEqual(out.decided + inc.decided, [])

    def assert_both_refuse(self, out: Side, inc: Side, motive: int) -> None:
        """
        Both sides notice the mismatch: each sends a Nack with C{motive}
        and raises L{RejectedNoCommonProtocol}, without asking the pool.
        """
        run(out, inc)
        for side, other in ((out, inc), (inc, out)):
            assert isinstance(side.outcome, RejectedNoCommonProtocol)
            self.assertEqual(side.outcome.motive, motive)
            self.assertEqual(side.outcome.peer_id, other.identity.peer_id)
            self.assertEqual(side.sent[1:], [Nack(motive)])
            self.assertEqual(side.decided, [])
            self.assertEqual(side.handshake.state, HandshakeState.CLOSED)

    def test_different_network(self) -> None:
        out, inc = make_pair(
            make_params(ALICE, network="a", p2p_versions=(1,)),
            make_params(BOB, network="b", p2p_versions=(2,)),
        )
        self.assert_both_refuse(out, inc, NackMotive.UNKNOWN_CHAIN_NAME)

    def test_no_common_p2p_version(self) -> None:
        out, inc = make_pair(
            make_params(ALICE, p2p_versions=(1, 2), application_versions=(1,)),
            make_params(BOB, p2p_versions=(3,), application_versions=(2,)),
        )
        self.assert_both_refuse(out, inc, NackMotive.DEPRECATED_P2P_VERSION)

    def test_no_common_application_version(self) -> None:
        out, inc = make_pair(
            make_params(ALICE, application_versions=(1, 2)),
            make_params(BOB, application_versions=(3, 4)),
        )
        self.assert_both_refuse(out, inc, NackMotive.DEPRECATED_APPLICATION_VERSION)

    def test_no_application_version_at_all(self) -> None:
        out, inc = make_pair(make_params(ALICE, application_versions=()), make_params(BOB))
        self.assert_both_refuse(out, inc, NackMotive.DEPRECATED_APPLICATION_VERSION)

    def test_refusing_side_and_nacked_side(self) -> None:
        """
        When only the listener sees a different network (the dialer's Hello
        is rewritten in transit), the listener nacks with motive 2 and
        raises L{RejectedNoCommonProtocol}; the dialer, which accepted,
        raises L{RejectedByNack} with motive 2.
        """
        out, inc = make_pair(make_params(ALICE, network="net"), make_params(BOB, network="net"))

        def other_network(data: bytes) -> bytes:
            if data[4] != Kind.HELLO:
                return data
            hello = decode_control(data[4], data[5:])
            assert isinstance(hello, Hello)
            return encode(attrs.evolve(hello, network="elsewhere"))

        out.rewrite = other_network
        run(out, inc)
        assert isinstance(inc.outcome, RejectedNoCommonProtocol)
        self.assertEqual(inc.outcome.motive, NackMotive.UNKNOWN_CHAIN_NAME)
        self.assertEqual(inc.sent[1:], [Nack(2)])
        assert isinstance(out.outcome, RejectedByNack)
        self.assertEqual(out.outcome.motive, 2)
        self.assertEqual(out.outcome.alternative_points, ())
        self.assertIn("unknown_chain_name", str(out.outcome))

    def test_network_checked_before_versions(self) -> None:
        out, inc = make_pair(
            make_params(ALICE, network="a", p2p_versions=(1,), application_versions=(1,)),
            make_params(BOB, network="b", p2p_versions=(2,), application_versions=(2,)),
        )
        self.assert_both_refuse(out, inc, NackMotive.UNKNOWN_CHAIN_NAME)

    def test_pool_refuses_with_motive(self) -> None:
        points = (Point("192.0.2.1", 9732), Point("2001:db8::7", 9733))

        def too_many(remote: RemoteInfo) -> Decision:
            return nack_refusal(remote.peer_id, NackMotive.TOO_MANY_CONNECTIONS, points)

        out, inc = make_pair(make_params(ALICE), make_params(BOB), listener_decide=too_many)
        run(out, inc)
        assert isinstance(inc.outcome, Rejected)
        self.assertEqual(inc.outcome.motive, NackMotive.TOO_MANY_CONNECTIONS)
        self.assertEqual(inc.outcome.peer_id, ALICE.peer_id)
        self.assertEqual(inc.sent[1:], [Nack(1, points)])
        assert isinstance(out.outcome, RejectedByNack)
        self.assertEqual(out.outcome.motive, NackMotive.TOO_MANY_CONNECTIONS)
        self.assertEqual(out.outcome.alternative_points, points)
        self.assertEqual(out.handshake.state, HandshakeState.CLOSED)

    def test_pool_refuses_without_motive(self) -> None:
        error = PrivateMode("not trusted")

        def private(remote: RemoteInfo) -> Decision:
            return Refuse(error)

        out, inc = make_pair(make_params(ALICE), make_params(BOB), listener_decide=private)
        run(out, inc)
        self.assertIs(inc.outcome, error)
        self.assertEqual([type(m) for m in inc.sent], [Hello])
        self.assertEqual(inc.handshake.state, HandshakeState.CLOSED)
        # No nack: the dialer only sees the connection close.
        self.assertIsNone(out.outcome)
        self.assertEqual(out.handshake.state, HandshakeState.AWAIT_ACK)

    def test_dialer_refuses(self) -> None:
        def already(remote: RemoteInfo) -> Decision:
            return nack_refusal(remote.peer_id, NackMotive.ALREADY_CONNECTED)

        out, inc = make_pair(make_params(ALICE), make_params(BOB), dialer_decide=already)
        run(out, inc)
        assert isinstance(inc.outcome, RejectedByNack)
        self.assertEqual(inc.outcome.motive, 5)
        assert isinstance(out.outcome, Rejected)
        self.assertEqual(out.outcome.peer_id, BOB.peer_id)


class UnexpectedFrameTests(SynchronousTestCase):
    """
    Frames out of order are decoding errors.
    """

    def started(self) -> Side:
        out, inc = make_pair(make_params(ALICE), make_params(BOB))
        out.start()
        return out

    def test_ack_before_hello(self) -> None:
        side = self.started()
        error = self.assertRaises(DecodingError, side.handshake.control_received, Kind.ACK, b"")
        self.assertIn("unexpected ack frame while in await_hello", str(error))

    def test_nack_before_hello(self) -> None:
        side = self.started()
        self.assertRaises(DecodingError, side.handshake.control_received, Kind.NACK, b"\x00\x01\x00")

    def test_hello_twice(self) -> None:
        side = self.started()
        hello_frame = encode(make_params(BOB).hello())
        self.assertIsNone(side.handshake.control_received(hello_frame[4], hello_frame[5:]))
        self.assertEqual(side.handshake.state, HandshakeState.AWAIT_ACK)
        error = self.assertRaises(DecodingError, side.handshake.control_received, hello_frame[4], hello_frame[5:])
        self.assertIn("unexpected hello frame while in await_ack", str(error))

    def test_hello_before_tls(self) -> None:
        out, inc = make_pair(make_params(ALICE), make_params(BOB))
        hello_frame = encode(make_params(BOB).hello())
        error = self.assertRaises(DecodingError, out.handshake.control_received, hello_frame[4], hello_frame[5:])
        self.assertIn("await_tls", str(error))
        self.assertEqual(out.sent, [])

    def test_tls_established_twice(self) -> None:
        side = self.started()
        self.assertRaises(DecodingError, side.handshake.tls_established, BOB.peer_id, BOB.public_key)

    def test_message_kind_via_control_path(self) -> None:
        side = self.started()
        error = self.assertRaises(DecodingError, side.handshake.control_received, Kind.MESSAGE, b"app")
        self.assertIn("unexpected message frame", str(error))

    def test_other_kinds_during_handshake(self) -> None:
        for kind in (Kind.PING, Kind.BOOTSTRAP, Kind.DISCONNECT, 0x7F):
            side = self.started()
            self.assertRaises(DecodingError, side.handshake.control_received, kind, b"")

    def test_malformed_hello(self) -> None:
        side = self.started()
        error = self.assertRaises(DecodingError, side.handshake.control_received, Kind.HELLO, b"\x00")
        self.assertIn("malformed hello", str(error))

    def test_ack_after_running(self) -> None:
        out, inc = make_pair(make_params(ALICE), make_params(BOB))
        run(out, inc)
        self.assertEqual(out.handshake.state, HandshakeState.RUNNING)
        self.assertRaises(DecodingError, out.handshake.control_received, Kind.ACK, b"")

    def test_after_close(self) -> None:
        side = self.started()
        side.handshake.close()
        self.assertEqual(side.handshake.state, HandshakeState.CLOSED)
        hello_frame = encode(make_params(BOB).hello())
        self.assertRaises(DecodingError, side.handshake.control_received, hello_frame[4], hello_frame[5:])


class SelectVersionTests(SynchronousTestCase):
    """
    L{select_version} picks the highest common version.
    """

    def test_highest_common(self) -> None:
        self.assertEqual(select_version((1, 2, 3), (2, 3, 4)), 3)
        self.assertEqual(select_version((3, 2, 1), (1, 2)), 2)
        self.assertEqual(select_version((0,), (0, 9)), 0)
        self.assertEqual(select_version((5, 5, 1), (1, 5)), 5)

    def test_symmetric(self) -> None:
        for a, b in (((1, 7, 9), (9, 7)), ((0, 2), (2, 3))):
            self.assertEqual(select_version(a, b), select_version(b, a))

    def test_none_in_common(self) -> None:
        self.assertIsNone(select_version((1, 2), (3, 4)))
        self.assertIsNone(select_version((), (1,)))
        self.assertIsNone(select_version((1,), ()))


class HelperTests(SynchronousTestCase):
    def test_hello_of_params(self) -> None:
        params = make_params(ALICE, port=1, application_versions=(4,), private_mode=True, metadata=b"m")
        self.assertEqual(
            params.hello(),
            Hello(1, ALICE.proof_of_work_stamp, "p2pool-test", P2P_VERSIONS, (4,), True, b"m"),
        )

    def test_nack_refusal(self) -> None:
        points = (Point("1.2.3.4", 5),)
        refusal = nack_refusal(BOB.peer_id, 1, points)
        self.assertEqual(refusal.motive, 1)
        self.assertEqual(refusal.alternative_points, points)
        assert isinstance(refusal.error, Rejected)
        self.assertEqual(refusal.error.motive, 1)
        self.assertEqual(refusal.error.peer_id, BOB.peer_id)
