"""
A minimal p2pool client written from C{docs/PROTOCOL.md} alone.

It imports only the standard library and C{cryptography}: nothing from
p2pool (C{tests/test_protocol_doc.py} checks that), so that it proves the
document is enough to interoperate. Each function names the section it
follows. It is blocking (plain sockets, Python's C{ssl}); tests run it in a
thread while the node runs on the reactor.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import os
import socket
import ssl
import struct
import tempfile
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

# -- §1.1 peer ids -------------------------------------------------------------

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """
    The raw 32-byte public key.
    """
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def peer_id(public_key: bytes) -> bytes:
    """
    §1.1: the 16-byte BLAKE2b digest of the raw public key.
    """
    return hashlib.blake2b(public_key, digest_size=16).digest()


def peer_id_text(raw: bytes) -> str:
    """
    §1.1: base58check of C{0x99 0x67 || peer_id} with a 4-byte double
    SHA-256 checksum.
    """
    payload = b"\x99\x67" + raw
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = ALPHABET[digit] + out
    return out


# -- §1.2 proof of work --------------------------------------------------------


def pow_target(d: float) -> int:
    """
    §1.2: Tezos's C{make_pow_target}.
    """
    frac, whole = math.modf(d)
    shift = int(whole)
    mantissa = 2**54 - 1 if frac == 0 else math.floor(2.0 ** (54 - frac))
    if shift < 202:
        return (mantissa << (202 - shift)) | ((1 << (202 - shift)) - 1)
    return mantissa >> (shift - 202)


def pow_hash(public_key: bytes, stamp: bytes) -> int:
    """
    §1.2: the BLAKE2b-256 digest of C{public_key || stamp}, little-endian.
    """
    return int.from_bytes(hashlib.blake2b(public_key + stamp, digest_size=32).digest(), "little")


def pow_valid(public_key: bytes, stamp: bytes, d: float) -> bool:
    return pow_hash(public_key, stamp) <= pow_target(d)


def find_stamp(public_key: bytes, d: float, start: int | None = None) -> bytes:
    """
    §1.2: count up from a random 24-byte big-endian value until the stamp
    is valid.
    """
    counter = int.from_bytes(os.urandom(24), "big") if start is None else start
    target = pow_target(d)
    while True:
        stamp = counter.to_bytes(24, "big")
        if pow_hash(public_key, stamp) <= target:
            return stamp
        counter = (counter + 1) % (1 << 192)


# -- §2.4 certificates ---------------------------------------------------------


def make_certificate(
    key: Any,
    common_name: str | None = None,
    *,
    issuer: str | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    signer: Any = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.Certificate:
    """
    §2.4: self-signed with the identity key, C{CN=<peer id>}, valid from a
    day ago for 3650 days, no extensions. The keyword arguments exist to
    test what receivers check (another issuer name, other dates, another
    signing key, extensions; an RSA C{key} needs a C{common_name}).
    """
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name or peer_id_text(peer_id(public_key_bytes(key))))]
    )
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]) if issuer else name
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(days=1))
        .not_valid_after(not_after or now + datetime.timedelta(days=3650))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    signer = signer or key
    return builder.sign(signer, None if isinstance(signer, Ed25519PrivateKey) else hashes.SHA256())


def check_certificate(der: bytes) -> tuple[bytes, bytes]:
    """
    §2.5: the remote's certificate must hold an Ed25519 key that verifies
    its own signature; the peer id comes from that key (the CN is ignored).

    @return: the raw public key and the raw peer id.
    @raise ValueError: the certificate is refused.
    """
    cert = x509.load_der_x509_certificate(der)
    key = cert.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("certificate key is not Ed25519")
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes)
    except InvalidSignature:
        raise ValueError("certificate is not self-signed by its key") from None
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw, peer_id(raw)


# -- §3-5 frames and bodies ----------------------------------------------------

HELLO, ACK, NACK = 0x01, 0x02, 0x03
DISCONNECT, BOOTSTRAP, ADVERTISE, SWAP_REQUEST, SWAP_ACK, PING, PONG = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16
MESSAGE = 0x20


def frame(kind: int, body: bytes = b"") -> bytes:
    """
    §3: C{u32 L}, C{u8 kind}, body; C{L = 1 + len(body)}.
    """
    return struct.pack(">IB", len(body) + 1, kind) + body


def text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return bytes([len(raw)]) + raw


def versions(values: list[int]) -> bytes:
    return bytes([len(values)]) + b"".join(struct.pack(">H", v) for v in values)


def points(values: list[str]) -> bytes:
    return bytes([len(values)]) + b"".join(text(p) for p in values)


def hello_body(
    port: int,
    stamp: bytes,
    network: str,
    p2p_versions: list[int],
    application_versions: list[int],
    private_mode: bool = False,
    metadata: bytes = b"",
) -> bytes:
    """
    §5.1.
    """
    return (
        struct.pack(">H", port)
        + stamp
        + text(network)
        + versions(p2p_versions)
        + versions(application_versions)
        + bytes([1 if private_mode else 0])
        + struct.pack(">H", len(metadata))
        + metadata
    )


def nack_body(motive: int, alternative_points: list[str]) -> bytes:
    """
    §5.2.
    """
    return struct.pack(">H", motive) + points(alternative_points)


def swap_body(point: str, raw_peer_id: bytes) -> bytes:
    """
    §5.4.
    """
    return text(point) + raw_peer_id


class Reader:
    """
    §5.0: reads the fields of one body; every body is consumed exactly.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated body")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def text(self) -> str:
        return self.take(self.u8()).decode("utf-8")

    def versions(self) -> list[int]:
        return [self.u16() for _ in range(self.u8())]

    def points(self) -> list[str]:
        return [self.text() for _ in range(self.u8())]

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{len(self.data) - self.pos} trailing bytes")


def parse_hello(body: bytes) -> dict[str, object]:
    """
    §5.1.
    """
    r = Reader(body)
    hello = {
        "port": r.u16(),
        "stamp": r.take(24),
        "network": r.text(),
        "p2p_versions": r.versions(),
        "application_versions": r.versions(),
    }
    flag = r.u8()
    if flag > 1:
        raise ValueError("bad bool")
    hello["private_mode"] = flag == 1
    hello["metadata"] = r.take(r.u16())
    r.end()
    return hello


def parse_nack(body: bytes) -> tuple[int, list[str]]:
    r = Reader(body)
    motive, alternatives = r.u16(), r.points()
    r.end()
    return motive, alternatives


def parse_swap(body: bytes) -> tuple[str, bytes]:
    r = Reader(body)
    point, raw = r.text(), r.take(16)
    r.end()
    return point, raw


# -- §2 and §6: a connection ---------------------------------------------------


class Identity:
    """
    §1: a key, its peer id and a stamp at difficulty C{d}.
    """

    def __init__(self, d: float, key: Ed25519PrivateKey | None = None) -> None:
        self.key = key or Ed25519PrivateKey.generate()
        self.public_key = public_key_bytes(self.key)
        self.peer_id = peer_id(self.public_key)
        self.stamp = find_stamp(self.public_key, d)


class Refused(Exception):
    """
    The remote ended the connection during the handshake.
    """


class Client:
    """
    One TLS 1.3 connection to a node (§2), its frames (§3) and handshake
    (§6). Blocking, with a socket timeout as the deadline of every read.
    """

    def __init__(
        self,
        identity: Identity,
        host: str,
        port: int,
        *,
        source: str | None = None,
        certificate: x509.Certificate | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.identity = identity
        cert = certificate or make_certificate(identity.key)
        self.sock = self._tls(
            socket.create_connection((host, port), timeout=timeout, source_address=(source, 0) if source else None),
            cert,
        )
        self.remote_public_key, self.remote_peer_id = check_certificate(self.sock.getpeercert(binary_form=True) or b"")
        self._buffer = b""

    def _tls(self, raw: socket.socket, cert: x509.Certificate) -> ssl.SSLSocket:
        """
        §2.3-2.4: TLS 1.3 only, no SNI, our certificate presented; the
        remote's is checked by L{check_certificate} right after the
        handshake, before anything is sent.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with tempfile.TemporaryDirectory() as directory:
            cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
            with open(cert_path, "wb") as f:
                f.write(cert.public_bytes(serialization.Encoding.PEM))
            with open(key_path, "wb") as f:
                f.write(
                    self.identity.key.private_bytes(
                        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                    )
                )
            context.load_cert_chain(cert_path, key_path)
        try:
            return context.wrap_socket(raw)
        except BaseException:
            raw.close()
            raise

    def send(self, kind: int, body: bytes = b"") -> None:
        self.sock.sendall(frame(kind, body))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> tuple[int, bytes]:
        """
        The next frame as C{(kind, body)}.

        @raise EOFError: the remote closed the connection.
        """
        while True:
            if len(self._buffer) >= 5:
                length, kind = struct.unpack(">IB", self._buffer[:5])
                if len(self._buffer) >= 4 + length:
                    body = self._buffer[5 : 4 + length]
                    self._buffer = self._buffer[4 + length :]
                    return kind, body
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self._buffer += data

    def hello(
        self,
        network: str,
        *,
        port: int = 0,
        p2p_versions: tuple[int, ...] = (1,),
        application_versions: tuple[int, ...] = (0,),
        private_mode: bool = False,
    ) -> bytes:
        """
        §5.1: send our Hello.
        """
        body = hello_body(
            port, self.identity.stamp, network, list(p2p_versions), list(application_versions), private_mode
        )
        self.send(HELLO, body)
        return body

    def handshake(self, network: str, expected_proof_of_work: float, **hello: object) -> dict[str, object]:
        """
        §6.1: send Hello, check the remote's (§6.2 steps 1-5), Ack, and
        wait for the remote's Ack.

        @return: the remote's Hello.
        @raise Refused: the remote sent a Nack (with its motive) or closed.
        """
        self.hello(network, **hello)  # type: ignore[arg-type]
        try:
            kind, body = self.receive()
        except (EOFError, ConnectionError, ssl.SSLError) as e:
            raise Refused(f"closed before its Hello: {e!r}") from None
        if kind != HELLO:
            raise ValueError(f"expected Hello, got kind 0x{kind:02x}")
        remote = parse_hello(body)
        if not pow_valid(self.remote_public_key, remote["stamp"], expected_proof_of_work):  # type: ignore[arg-type]
            raise ValueError("remote proof of work too weak")
        if remote["network"] != network or 1 not in remote["p2p_versions"]:  # type: ignore[operator]
            self.send(NACK, nack_body(2 if remote["network"] != network else 3, []))
            raise Refused("we refused the remote")
        self.send(ACK)
        try:
            kind, body = self.receive()
        except (EOFError, ConnectionError, ssl.SSLError) as e:
            raise Refused(f"closed instead of Ack: {e!r}") from None
        if kind == NACK:
            raise Refused(f"nack {parse_nack(body)}")
        if kind != ACK or body:
            raise ValueError(f"expected Ack, got kind 0x{kind:02x}")
        return remote

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
