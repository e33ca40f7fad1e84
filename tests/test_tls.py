"""
Tests for L{p2pool.transport.tls}: mutually authenticated TLS 1.3 between identities,
run in memory with L{twisted.test.iosim}.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from p2pool.core.addressing import PeerId
from p2pool.errors import IdentityCheckFailure, InvalidAuth
from p2pool.transport import tls
from p2pool.transport.tls import (
    CheckedCertificates,
    IVerifiedProtocol,
    PeerConnectionCreator,
    PeerVerification,
    TLSContext,
    make_certificate,
    peer_of_certificate,
)

ADDRESS = IPv4Address("TCP", "127.0.0.1", 9732)


def raw_public_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def peer_id_of(key: Ed25519PrivateKey) -> PeerId:
    return PeerId.from_public_key(raw_public_key(key))


def build_certificate(
    subject_key: object,
    signing_key: object,
    *,
    subject: str = "subject",
    issuer: str | None = None,
    ca: bool = False,
) -> x509.Certificate:
    """
    A certificate for C{subject_key}'s public key signed by C{signing_key}.
    """
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or subject)]))
        .public_key(subject_key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    algorithm = hashes.SHA256() if isinstance(signing_key, ec.EllipticCurvePrivateKey) else None
    return builder.sign(signing_key, algorithm)  # type: ignore[arg-type]


def creator_for(key: object, certificate: x509.Certificate, **options: object) -> PeerConnectionCreator:
    """
    A connection creator presenting an arbitrary key and certificate, with
    the same verification as L{TLSContext}.
    """
    settings: dict[str, object] = dict(raiseMinimumTo=TLSVersion.TLSv1_3)
    settings.update(options)
    context = CertificateOptions(privateKey=key, certificate=certificate, **settings).getContext()  # type: ignore[arg-type]
    return PeerConnectionCreator(context)


@implementer(IHandshakeListener, IVerifiedProtocol)
class VerifiedProtocol(Protocol):
    """
    Records what happens to one side of a TLS connection.
    """

    def __init__(self, expected: PeerId | None = None) -> None:
        self.verification = PeerVerification(expected)
        self.completed = False
        self.tls_version: str | None = None
        self.received = b""
        self.lost: Failure | None = None

    def handshakeCompleted(self) -> None:
        self.completed = True
        self.tls_version = self.transport.getHandle().get_protocol_version_name()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


class OneProtocolFactory(Factory):
    def __init__(self, protocol: Protocol) -> None:
        self.protocol_instance = protocol

    def buildProtocol(self, addr: object) -> Protocol:
        return self.protocol_instance


def connect(
    server_creator: PeerConnectionCreator,
    client_creator: PeerConnectionCreator,
    *,
    server_expects: PeerId | None = None,
    client_expects: PeerId | None = None,
) -> tuple[VerifiedProtocol, VerifiedProtocol, IOPump]:
    """
    Run a TLS handshake in memory; the server and client protocols, and
    the pump between them.
    """
    server = VerifiedProtocol(server_expects)
    client = VerifiedProtocol(client_expects)
    clock = Clock()
    server_factory = TLSMemoryBIOFactory(server_creator, False, OneProtocolFactory(server), clock=clock)
    client_factory = TLSMemoryBIOFactory(client_creator, True, OneProtocolFactory(client), clock=clock)
    _, _, pump = connectedServerAndClient(
        lambda: server_factory.buildProtocol(ADDRESS),
        lambda: client_factory.buildProtocol(ADDRESS),
        clock=clock,
    )
    for _ in range(3):
        pump.flush()
    return server, client, pump


class MutualAuthenticationTests(SynchronousTestCase):
    """
    Two identities authenticate each other.
    """

    def setUp(self) -> None:
        self.server_key = Ed25519PrivateKey.generate()
        self.client_key = Ed25519PrivateKey.generate()
        self.server_context = TLSContext(self.server_key)
        self.client_context = TLSContext(self.client_key)

    def connect(self, **expectations: PeerId | None) -> tuple[VerifiedProtocol, VerifiedProtocol, IOPump]:
        return connect(self.server_context.creator, self.client_context.creator, **expectations)

    def assert_refused(self, side: VerifiedProtocol) -> None:
        self.assertFalse(side.completed)
        self.assertIsNone(side.verification.peer_id)
        self.assertIsNotNone(side.lost)

    def test_each_side_learns_the_other(self) -> None:
        server, client, pump = self.connect()
        self.assertTrue(server.completed)
        self.assertTrue(client.completed)
        self.assertEqual(server.verification.peer_id, peer_id_of(self.client_key))
        self.assertEqual(server.verification.public_key, raw_public_key(self.client_key))
        self.assertEqual(client.verification.peer_id, peer_id_of(self.server_key))
        self.assertEqual(client.verification.public_key, raw_public_key(self.server_key))
        self.assertIsNone(server.verification.failure)
        self.assertIsNone(client.verification.failure)
        client.transport.write(b"ping")  # type: ignore[union-attr]
        server.transport.write(b"pong")  # type: ignore[union-attr]
        pump.flush()
        self.assertEqual(server.received, b"ping")
        self.assertEqual(client.received, b"pong")
        self.assertIsNone(server.lost)
        self.assertIsNone(client.lost)

    def test_tls_1_3(self) -> None:
        server, client, pump = self.connect()
        self.assertEqual(client.tls_version, "TLSv1.3")
        self.assertEqual(server.tls_version, "TLSv1.3")

    def test_client_limited_to_tls_1_2_is_refused(self) -> None:
        old_client = creator_for(
            self.client_key,
            make_certificate(self.client_key),
            raiseMinimumTo=TLSVersion.TLSv1_2,
            lowerMaximumSecurityTo=TLSVersion.TLSv1_2,
        )
        server, client, pump = connect(self.server_context.creator, old_client)
        self.assertFalse(server.completed)
        self.assertFalse(client.completed)
        self.assertIsNotNone(client.lost)

    def test_correct_pin(self) -> None:
        server, client, pump = self.connect(client_expects=peer_id_of(self.server_key))
        self.assertTrue(client.completed)
        self.assertTrue(server.completed)
        self.assertEqual(client.verification.peer_id, peer_id_of(self.server_key))

    def test_wrong_pin(self) -> None:
        wrong = peer_id_of(Ed25519PrivateKey.generate())
        server, client, pump = self.connect(client_expects=wrong)
        self.assert_refused(client)
        failure = client.verification.failure
        assert isinstance(failure, IdentityCheckFailure)
        self.assertEqual(failure.expected_peer_id, wrong)
        self.assertEqual(failure.received_peer_id, peer_id_of(self.server_key))
        # The server never gets the client's Finished.
        self.assertFalse(server.completed)
        self.assertIsNotNone(server.lost)

    def test_wrong_pin_on_server(self) -> None:
        wrong = peer_id_of(Ed25519PrivateKey.generate())
        server, client, pump = self.connect(server_expects=wrong)
        self.assert_refused(server)
        failure = server.verification.failure
        assert isinstance(failure, IdentityCheckFailure)
        self.assertEqual(failure.received_peer_id, peer_id_of(self.client_key))
        self.assertEqual(client.received, b"")

    def test_ec_client_certificate_refused(self) -> None:
        ec_key = ec.generate_private_key(ec.SECP256R1())
        ec_client = creator_for(ec_key, build_certificate(ec_key, ec_key))
        server, client, pump = connect(self.server_context.creator, ec_client)
        self.assert_refused(server)
        failure = server.verification.failure
        assert isinstance(failure, InvalidAuth)
        self.assertIn("not Ed25519", str(failure))
        # In TLS 1.3 the client finishes first, then learns of the refusal.
        self.assertIsNotNone(client.lost)

    def test_forged_server_certificate_refused(self) -> None:
        """
        A certificate for the server's key but signed by another key does
        not authenticate the server.
        """
        forged = build_certificate(self.server_key, Ed25519PrivateKey.generate())
        server, client, pump = connect(creator_for(self.server_key, forged), self.client_context.creator)
        self.assert_refused(client)
        failure = client.verification.failure
        assert isinstance(failure, InvalidAuth)
        self.assertIn("not validly self-signed", str(failure))
        self.assertFalse(server.completed)

    def test_certificate_chain_refused(self) -> None:
        """
        A leaf certificate issued by a CA, even with the CA in the chain,
        is not one self-signed certificate.
        """
        ca_key = Ed25519PrivateKey.generate()
        ca = build_certificate(ca_key, ca_key, subject="ca", ca=True)
        leaf = build_certificate(self.server_key, ca_key, subject="leaf", issuer="ca")
        chained = creator_for(self.server_key, leaf, extraCertChain=[ca])
        server, client, pump = connect(chained, self.client_context.creator)
        self.assert_refused(client)
        failure = client.verification.failure
        assert isinstance(failure, InvalidAuth)
        self.assertIn("chain", str(failure))

    def test_client_without_certificate_refused(self) -> None:
        anonymous = PeerConnectionCreator(CertificateOptions(raiseMinimumTo=TLSVersion.TLSv1_3).getContext())
        server, client, pump = connect(self.server_context.creator, anonymous)
        self.assert_refused(server)
        self.assertEqual(client.received, b"")


class ClientWrapperTests(SynchronousTestCase):
    """
    One L{TLSContext.client_wrapper} runs TLS over all of a node's dials,
    each checked against the peer id its own protocol expects; one
    L{TLSContext.server_wrapper} over all the connections it accepts.
    """

    def test_each_dial_checks_its_own_pin(self) -> None:
        """
        Two dials through one wrapper, in flight at once, to the same
        server: the one expecting the server's peer id completes, the one
        expecting another is refused during TLS, whichever goes first.
        """
        server_key, client_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        server_context, client_context = TLSContext(server_key), TLSContext(client_key)
        clock = Clock()
        wrapper = client_context.client_wrapper(clock)
        acceptor = server_context.server_wrapper(clock)
        wrong = peer_id_of(Ed25519PrivateKey.generate())
        for expectations in ((peer_id_of(server_key), wrong), (wrong, peer_id_of(server_key))):
            dials = [VerifiedProtocol(expected) for expected in expectations]
            pumps = [
                connectedServerAndClient(
                    lambda: acceptor.wrap(VerifiedProtocol()), lambda dial=dial: wrapper.wrap(dial), clock=clock
                )[2]
                for dial in dials
            ]
            for pump in pumps:
                pump.flush()
            right, refused = (dials[0], dials[1]) if expectations[1] is wrong else (dials[1], dials[0])
            self.assertTrue(right.completed)
            self.assertEqual(right.verification.peer_id, peer_id_of(server_key))
            self.assertFalse(refused.completed)
            self.assertIsNone(refused.verification.peer_id)
            failure = refused.verification.failure
            assert isinstance(failure, IdentityCheckFailure)
            self.assertEqual(failure.expected_peer_id, wrong)


class CheckedCertificatesTests(SynchronousTestCase):
    """
    L{CheckedCertificates}: a peer certificate is checked in full once, and
    again whenever any byte of it changes.
    """

    def setUp(self) -> None:
        self.checks: list[object] = []
        real = tls.peer_of_certificate

        def counted(cert: x509.Certificate) -> tuple[PeerId, bytes]:
            self.checks.append(cert)
            return real(cert)

        self.patch(tls, "peer_of_certificate", counted)
        self.certificates = CheckedCertificates(size=2)

    def as_x509(self, certificate: x509.Certificate) -> crypto.X509:
        return crypto.X509.from_cryptography(certificate)

    def test_same_certificate_checked_once(self) -> None:
        key = Ed25519PrivateKey.generate()
        certificate = make_certificate(key)
        first = self.certificates.peer_of(self.as_x509(certificate))
        second = self.certificates.peer_of(self.as_x509(certificate))
        self.assertEqual(first, (peer_id_of(key), raw_public_key(key)))
        self.assertEqual(second, first)
        self.assertEqual(len(self.checks), 1)

    def test_changed_certificate_for_same_key_checked_again(self) -> None:
        """
        Once a peer's valid certificate is remembered, another certificate
        with its key but signed by another key is still refused, and never
        remembered.
        """
        key = Ed25519PrivateKey.generate()
        self.certificates.peer_of(self.as_x509(make_certificate(key)))
        forged = self.as_x509(build_certificate(key, Ed25519PrivateKey.generate()))
        for _ in range(2):
            error = self.assertRaises(InvalidAuth, self.certificates.peer_of, forged)
            self.assertIn("not validly self-signed", str(error))
        self.assertEqual(len(self.checks), 3)
        self.assertEqual(len(self.certificates), 1)

    def test_new_certificate_of_known_key_checked(self) -> None:
        """
        A peer that makes a new certificate (at every start) is checked
        again: the memory is of certificates, not of keys.
        """
        key = Ed25519PrivateKey.generate()
        self.certificates.peer_of(self.as_x509(make_certificate(key)))
        again = self.certificates.peer_of(self.as_x509(make_certificate(key)))
        self.assertEqual(again, (peer_id_of(key), raw_public_key(key)))
        self.assertEqual(len(self.checks), 2)

    def test_least_recently_seen_forgotten(self) -> None:
        a, b, c = (self.as_x509(make_certificate(Ed25519PrivateKey.generate())) for _ in range(3))
        self.certificates.peer_of(a)
        self.certificates.peer_of(b)
        self.certificates.peer_of(a)  # a is now the most recent
        self.certificates.peer_of(c)  # forgets b
        self.assertEqual(len(self.certificates), 2)
        self.assertEqual(len(self.checks), 3)
        self.certificates.peer_of(a)
        self.assertEqual(len(self.checks), 3)
        self.certificates.peer_of(b)
        self.assertEqual(len(self.checks), 4)

    def test_handshakes_check_each_certificate_once(self) -> None:
        """
        Through TLS: repeated connections between the same two nodes check
        each side's certificate once, and a pinned peer id is still
        enforced on a remembered certificate.
        """
        server_key, client_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        server_context, client_context = TLSContext(server_key), TLSContext(client_key)
        for _ in range(3):
            server, client, pump = connect(server_context.creator, client_context.creator)
            self.assertTrue(server.completed and client.completed)
            self.assertEqual(client.verification.peer_id, peer_id_of(server_key))
            self.assertEqual(server.verification.peer_id, peer_id_of(client_key))
        self.assertEqual(len(self.checks), 2)
        self.assertEqual(len(client_context.creator.certificates), 1)
        wrong = peer_id_of(Ed25519PrivateKey.generate())
        server, client, pump = connect(server_context.creator, client_context.creator, client_expects=wrong)
        self.assertFalse(client.completed)
        self.assertIsInstance(client.verification.failure, IdentityCheckFailure)


class CertificateTests(SynchronousTestCase):
    """
    L{make_certificate} and L{peer_of_certificate}.
    """

    def test_peer_of_own_certificate(self) -> None:
        key = Ed25519PrivateKey.generate()
        certificate = make_certificate(key)
        peer_id, public_key = peer_of_certificate(certificate)
        self.assertEqual(public_key, raw_public_key(key))
        self.assertEqual(peer_id, peer_id_of(key))
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        self.assertEqual([n.value for n in names], [str(peer_id)])
        self.assertEqual(certificate.issuer, certificate.subject)

    def test_signature_by_another_key(self) -> None:
        key = Ed25519PrivateKey.generate()
        forged = build_certificate(key, Ed25519PrivateKey.generate())
        error = self.assertRaises(InvalidAuth, peer_of_certificate, forged)
        self.assertIn("not validly self-signed", str(error))

    def test_not_ed25519(self) -> None:
        ec_key = ec.generate_private_key(ec.SECP256R1())
        error = self.assertRaises(InvalidAuth, peer_of_certificate, build_certificate(ec_key, ec_key))
        self.assertIn("not Ed25519", str(error))

    def test_verify_refuses_depth_above_zero(self) -> None:
        verification = PeerVerification()
        self.assertFalse(verification.verify(None, None, 0, 1, 1))  # type: ignore[arg-type]
        self.assertIsInstance(verification.failure, InvalidAuth)
        self.assertIsNone(verification.peer_id)
