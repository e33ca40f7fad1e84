# -*- test-case-name: tests.test_tls -*-
"""
Mutually authenticated TLS 1.3 between identities: each node presents a
self-signed certificate made from its Ed25519 key, and a peer's id is derived
from the key of the one certificate it presents.
"""

from __future__ import annotations

import collections
import datetime
import hmac
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IReactorTime,
)
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from p2pool.core.addressing import PeerId, Point
from p2pool.core.lifetime import without_traceback
from p2pool.errors import IdentityCheckFailure, InvalidAuth, P2PError
from p2pool.transport.tls_link import TLSLinks

__all__ = [
    "CERTIFICATE_CACHE_SIZE",
    "CheckedCertificates",
    "IVerifiedProtocol",
    "PeerConnectionCreator",
    "PeerVerification",
    "TLSContext",
    "make_certificate",
    "peer_of_certificate",
]

_VERIFY_MODE = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
#: Verification results OpenSSL reports for a lone self-signed certificate;
#: validity dates are not checked (the certificate is made at every start and
#: clocks differ), the signature is checked by L{peer_of_certificate}.
_ACCEPTED_CODES = frozenset(
    {
        SSL.X509VerificationCodes.OK,
        SSL.X509VerificationCodes.ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
        SSL.X509VerificationCodes.ERR_CERT_NOT_YET_VALID,
        SSL.X509VerificationCodes.ERR_CERT_HAS_EXPIRED,
    }
)


def make_certificate(private_key: Ed25519PrivateKey) -> x509.Certificate:
    """
    A self-signed certificate for C{private_key}, valid from a day ago for
    ten years, named after the peer id.
    """
    public_raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(PeerId.from_public_key(public_raw)))])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(private_key, None)
    )


def peer_of_certificate(cert: crypto.X509 | x509.Certificate) -> tuple[PeerId, bytes]:
    """
    The peer id and raw public key of a peer's certificate.

    @raise InvalidAuth: the key is not Ed25519 or the self-signature is
        invalid.
    """
    c = cert.to_cryptography() if isinstance(cert, crypto.X509) else cert
    key = c.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidAuth("peer certificate key is not Ed25519")
    try:
        key.verify(c.signature, c.tbs_certificate_bytes)
    except InvalidSignature:
        raise InvalidAuth("peer certificate is not validly self-signed") from None
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PeerId.from_public_key(raw), raw


#: How many checked peer certificates a node remembers (L{CheckedCertificates}).
CERTIFICATE_CACHE_SIZE = 1024


class CheckedCertificates:
    """
    The peer certificates a node has found valid, by their exact bytes, with
    the peer id and public key of each: a peer that comes back with the
    same certificate is not checked again (the self-signature of given bytes
    is either valid or not). A certificate not seen before, or changed in
    any byte, is checked in full; a refused one is never remembered. At
    C{size} certificates the least recently seen is forgotten.
    """

    def __init__(self, size: int = CERTIFICATE_CACHE_SIZE) -> None:
        self.size = size
        self._known: collections.OrderedDict[bytes, tuple[PeerId, bytes]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._known)

    def peer_of(self, cert: crypto.X509) -> tuple[PeerId, bytes]:
        """
        The peer id and raw public key of C{cert} (see
        L{peer_of_certificate}).

        @raise InvalidAuth: the certificate is not a valid self-signed
            Ed25519 certificate.
        """
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)
        known = self._known
        found = known.get(der)
        if found is not None:
            known.move_to_end(der)
            return found
        found = peer_of_certificate(x509.load_der_x509_certificate(der))
        known[der] = found
        if len(known) > self.size:
            known.popitem(last=False)
        return found


class PeerVerification:
    """
    The verification of one TLS connection's peer: the verify callback that
    accepts exactly one valid self-signed Ed25519 certificate, enforcing
    the pinned peer id when one is expected, and what it found.

    @ivar peer_id: the peer id of the accepted certificate.
    @ivar public_key: its raw public key.
    @ivar failure: why the certificate was refused, if it was.
    """

    _log = Logger()

    def __init__(self, expected: PeerId | None = None, point: Point | None = None) -> None:
        """
        @param expected: the peer id pinned at the dialed point, if any.
        @param point: the dialed point, named when the pin is not met.
        """
        self.expected = expected
        self.point = point
        self.peer_id: PeerId | None = None
        self.public_key: bytes | None = None
        self.failure: P2PError | None = None
        self._certificates: CheckedCertificates | None = None

    def remember_in(self, certificates: CheckedCertificates) -> None:
        """
        Look the certificate up in C{certificates} (the node's), checking
        it only if it is not there.
        """
        self._certificates = certificates

    def verify(self, conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
        """
        The OpenSSL verify callback.
        """
        if depth != 0:
            self.failure = InvalidAuth("peer presented a certificate chain, not one self-signed certificate")
            return False
        if self.peer_id is not None:
            # OpenSSL asks again about the same leaf certificate (once with
            # the self-signed verdict, once with the final one).
            return errno in _ACCEPTED_CODES
        if errno not in _ACCEPTED_CODES:
            self.failure = InvalidAuth(f"peer certificate refused by OpenSSL (error {errno})")
            return False
        try:
            certificates = self._certificates
            peer_id, public_key = peer_of_certificate(cert) if certificates is None else certificates.peer_of(cert)
        except InvalidAuth as e:
            self.failure = without_traceback(e)
            return False
        return self.accept(peer_id, public_key)

    def accept(self, peer_id: PeerId, public_key: bytes) -> bool:
        """
        The peer proved it holds C{public_key} (whose id is C{peer_id}):
        take it as this connection's peer, unless another peer id is
        pinned.
        """
        if self.expected is not None and not hmac.compare_digest(peer_id.raw, self.expected.raw):
            self.failure = IdentityCheckFailure(self.point, self.expected, peer_id)
            return False
        self.peer_id, self.public_key = peer_id, public_key
        return True

    def refuse(self, failure: P2PError) -> None:
        """
        The peer could not prove an identity: C{failure} says why.
        """
        self.failure = failure


class IVerifiedProtocol(Interface):
    """
    A protocol run over TLS whose peer certificate is checked by its own
    L{PeerVerification}.
    """

    verification = Attribute("The PeerVerification of this connection.")


class TLSLayer(Protocol):
    """
    The TLS layer of a connection as the connection creator sees it: a
    L{p2pool.transport.tls_link.TLSLink}, or Twisted's TLS protocol (tests
    and benchmarks wrap peers in it), with the verified protocol inside.
    """

    wrappedProtocol: Any


def _verify(connection: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    """
    The context's verify callback: the verdict of the connection's own
    L{PeerVerification} (its protocol's, found through the app data; the
    protocol was adapted to L{IVerifiedProtocol} when the connection was
    made, so it is read without adapting it again).
    """
    tls_protocol: TLSLayer = connection.get_app_data()
    verified: Any = tls_protocol.wrappedProtocol
    verification: PeerVerification = verified.verification
    return verification.verify(connection, cert, errno, depth, ok)


@implementer(IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator)
class PeerConnectionCreator:
    """
    Makes the OpenSSL connection of each TLS connection, client or server,
    verified by the wrapped protocol's own L{PeerVerification}.
    """

    def __init__(self, context: SSL.Context, certificates: CheckedCertificates | None = None) -> None:
        """
        @param certificates: the peer certificates already checked; a new
            set when not given.
        """
        # One verify callback on the context, which hands each certificate to
        # its connection's own verification: a callback set on each
        # connection makes pyOpenSSL build a helper per connection that sits
        # in a reference cycle until a full collection.
        context.set_verify(_VERIFY_MODE, _verify)
        self._context = context
        self.certificates = CheckedCertificates() if certificates is None else certificates

    def _connection(self, tls_protocol: TLSLayer) -> SSL.Connection:
        verification = IVerifiedProtocol(tls_protocol.wrappedProtocol).verification
        verification.remember_in(self.certificates)
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tls_protocol)
        return connection

    def clientConnectionForTLS(self, tlsProtocol: TLSLayer) -> SSL.Connection:
        return self._connection(tlsProtocol)

    def serverConnectionForTLS(self, tlsProtocol: TLSLayer) -> SSL.Connection:
        return self._connection(tlsProtocol)


class TLSContext:
    """
    A node's TLS configuration: its certificate and key in a TLS 1.3-only
    OpenSSL context, and the connection creator for dialing and accepting;
    the L{p2pool.transport.channel.PeerChannel} of every node.
    """

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.certificate = make_certificate(private_key)
        # Twisted annotates privateKey and certificate as pyOpenSSL's PKey
        # and X509, but hands them to pyOpenSSL, which takes cryptography's.
        options = CertificateOptions(
            privateKey=private_key,  # type: ignore[arg-type]
            certificate=self.certificate,  # type: ignore[arg-type]
            raiseMinimumTo=TLSVersion.TLSv1_3,
        )
        self.creator = PeerConnectionCreator(options.getContext())

    def client_wrapper(self, clock: IReactorTime) -> TLSLinks:
        """
        What runs TLS over the dialed connections of a pool, each with its
        own protocol inside (whose L{PeerVerification} holds the peer id
        that dial expects).
        """
        return TLSLinks(self.creator, True, clock)

    def server_wrapper(self, clock: IReactorTime) -> TLSLinks:
        """
        What runs TLS over the accepted connections of a pool, each with
        its own protocol inside.
        """
        return TLSLinks(self.creator, False, clock)
