# -*- test-case-name: tests.test_protocol_doc -*-
"""
C{docs/PROTOCOL.md}, proved by a client written from it alone.

L{tests.protocol_client} imports only the standard library and
C{cryptography} (checked here). These tests run it, in a thread, against
real p2pool nodes on loopback addresses, for every behaviour the document
promises a client: the handshake, pipelining, messages, keepalive, what
closes with and without C{Disconnect}, certificate checks and the alerts a
refused dialer sees, greylisting, discovery and swaps. They also reproduce
every worked example of the document byte for byte, from the examples'
text in the document itself.
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import hashlib
import io
import os
import random
import re
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point
from p2pool.core.identity import Identity as NodeIdentity
from p2pool.errors import DisconnectReason, IdentityCheckFailure
from p2pool.events import EventKind, PoolEvent
from p2pool.interfaces import BasePoolApplication
from p2pool.pool.service import Pool
from p2pool.transport.connection import Connection
from tests import protocol_client as pc
from tests.helpers import GOODBYE_GRACE_PERIOD, HANDSHAKE_TIMEOUT, async_test, wait_for

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
#: The difficulty every node and client of these tests uses.
POW = 10.0
NETWORK = "p2pool-mainnet"
#: Seconds any single read of the client may wait.
READ_DEADLINE = 15.0


def section(title: str) -> str:
    """
    The text of the document's section whose heading starts with C{title}.
    """
    heading = re.search(rf"^(#+) {re.escape(title)}.*$", DOC, re.M)
    assert heading, f"no section {title!r} in docs/PROTOCOL.md"
    end = re.compile(rf"^#{{1,{len(heading.group(1))}}} ", re.M).search(DOC, heading.end())
    return DOC[heading.end() : end.start() if end else len(DOC)]


def text_blocks(text: str) -> list[str]:
    """
    The C{```text} blocks of C{text}, whitespace removed.
    """
    return ["".join(b.split()) for b in re.findall(r"^```text\n(.*?)^```", text, re.M | re.S)]


# -- the client's independence -------------------------------------------------------


class ClientIndependenceTests(SynchronousTestCase):
    def test_client_imports_no_project_code(self) -> None:
        """
        The client imports the standard library and C{cryptography} only.
        """
        tree = ast.parse((ROOT / "tests" / "protocol_client.py").read_text(encoding="utf-8"))
        modules: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                self.assertEqual(node.level, 0, "relative import in the client")
                modules.add((node.module or "").split(".")[0])
        self.assertIn("cryptography", modules)
        outside = {m for m in modules if m not in sys.stdlib_module_names and m not in ("__future__", "cryptography")}
        self.assertEqual(outside, set())


# -- the worked examples ---------------------------------------------------------------

SEED_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


class WorkedExampleTests(SynchronousTestCase):
    """
    §1 and §10: every value and frame of the examples, computed by the
    client and found in the document.
    """

    def test_identity_example(self) -> None:
        """
        §1.1: public key, peer id, payload, checksum and text form.
        """
        example = " ".join(section("1.1").split())
        public = pc.public_key_bytes(SEED_KEY)
        raw = pc.peer_id(public)
        payload = b"\x99\x67" + raw
        checksum = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
        for value in (public.hex(), raw.hex(), payload.hex(), checksum.hex(), pc.peer_id_text(raw)):
            self.assertIn(f"`{value}`", example)
        self.assertEqual(len(pc.peer_id_text(raw)), 30)
        self.assertTrue(pc.peer_id_text(raw).startswith("id"))

    def test_proof_of_work_example(self) -> None:
        """
        §1.2 and §10.1: the example stamp is valid at difficulty 8, its
        digest is the one shown, and the fractional target is as stated.
        """
        text = " ".join((section("1.2") + section("10.1")).split())
        public = pc.public_key_bytes(SEED_KEY)
        stamp = bytes.fromhex(re.search(r"stamp `([0-9a-f]{48})`", text).group(1))  # type: ignore[union-attr]
        self.assertTrue(pc.pow_valid(public, stamp, 8))
        self.assertFalse(pc.pow_valid(public, stamp, 9))
        digest = hashlib.blake2b(public + stamp, digest_size=32).hexdigest()
        head, tail = re.search(r"`([0-9a-f]{8})…([0-9a-f]{8})`", text).groups()  # type: ignore[union-attr]
        self.assertEqual((digest[:8], digest[-8:]), (head, tail))
        self.assertTrue(digest.endswith("00"))
        target = pc.pow_target(16.5)
        self.assertEqual(target, (int(2**53.5) << 186) | (2**186 - 1))
        self.assertEqual(target.bit_length(), 240)
        prefix = re.search(r"starting `0x([0-9a-f]+)…`", text).group(1)  # type: ignore[union-attr]
        self.assertTrue(f"{target:x}".startswith(prefix), (hex(target), prefix))

    def test_integer_difficulty_bit_order(self) -> None:
        """
        §1.2: at an integer difficulty the target is C{2**(256-d) - 1}, and a
        stamp is valid iff the last C{d // 8} digest bytes are zero and so
        are the C{d % 8} high-order bits of the byte before them.
        """
        for d in range(0, 257):
            self.assertEqual(pc.pow_target(d), 2 ** (256 - d) - 1)
        rng = random.Random(5)
        for d in (8, 12, 13, 16):
            for _ in range(3000):
                digest = bytearray(rng.randbytes(32))
                # Make the interesting cases common.
                digest[-1] = 0 if rng.random() < 0.7 else digest[-1]
                digest[-2] = rng.choice([digest[-2], digest[-2] & 0x0F, digest[-2] & 0x07, 0])
                valid = int.from_bytes(digest, "little") <= pc.pow_target(d)
                whole, bits = divmod(d, 8)
                stated = (
                    all(b == 0 for b in digest[32 - whole :]) and digest[31 - whole] >> (8 - bits) == 0
                    if bits
                    else all(b == 0 for b in digest[32 - whole :])
                )
                self.assertEqual(valid, stated, (d, digest.hex()))
        self.assertIn("the last `d // 8` digest bytes are zero", " ".join(section("1.2").split()))

    def expected_frames(self) -> list[str]:
        """
        The frames of §10, encoded by the client, as the script prints them.
        """
        public = pc.public_key_bytes(SEED_KEY)
        stamp = bytes.fromhex("1027c4d1c386bbc4cd613e30d8f16adf91b7584a2265b28f")
        return [
            pc.frame(pc.HELLO, pc.hello_body(9732, stamp, NETWORK, [1], [0], False, b"")).hex(),
            pc.frame(pc.ACK).hex(),
            pc.frame(pc.NACK, pc.nack_body(1, ["192.0.2.7:9732", "[2001:db8::1]:9733"])).hex(),
            pc.frame(pc.SWAP_REQUEST, pc.swap_body("192.0.2.7:9732", pc.peer_id(public))).hex(),
            pc.frame(pc.MESSAGE, b"hi").hex(),
            "".join(pc.frame(kind).hex() for kind in (pc.DISCONNECT, pc.PING, pc.PONG)),
        ]

    def test_frames_byte_for_byte(self) -> None:
        """
        §10: each frame shown is the client's encoding of what the text says.
        """
        self.assertEqual(text_blocks(section("10. Worked examples")), self.expected_frames())

    def test_hello_field_table(self) -> None:
        """
        §10.1: the rows of the field table, concatenated, are the frame.
        """
        rows = re.findall(r"^\| ((?:`[0-9a-f]+` ?)+)\s*\|", section("10.1"), re.M)
        joined = "".join("".join(re.findall(r"`([0-9a-f]+)`", row)) for row in rows)
        self.assertEqual(joined, self.expected_frames()[0])

    def test_example_script_prints_the_frames(self) -> None:
        """
        §10: the script shown (which uses p2pool's encoder) prints exactly
        the frames shown.
        """
        script = re.search(r"^```python\n(.*?)^```", section("10. Worked examples"), re.M | re.S).group(1)  # type: ignore[union-attr]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(script, "PROTOCOL.md §10", "exec"), {"__name__": "__doc_example__"})
        printed = ["".join(line.split()) for line in out.getvalue().splitlines()]
        self.assertEqual(printed, self.expected_frames())


# -- a real node ---------------------------------------------------------------------------


class EchoApp(BasePoolApplication):
    """
    Answers every message with C{b"echo:" + message}.
    """

    def __init__(self) -> None:
        self.connections: list[Connection] = []
        self.lost: list[tuple[Connection, Any]] = []

    def connection_made(self, conn: Connection) -> None:
        self.connections.append(conn)

    def message_received(self, conn: Connection, data: bytes) -> None:
        conn.send(b"echo:" + data)

    def connection_lost(self, conn: Connection, reason: Any) -> None:
        self.lost.append((conn, reason))


class NodeHarness:
    """
    A p2pool node on a loopback address, with its application and events.
    """

    def __init__(self, pool: Pool, app: EchoApp, events: list[PoolEvent]) -> None:
        self.pool, self.app, self.events = pool, app, events

    @property
    def port(self) -> int:
        return int(self.pool.listening_port.getHost().port)  # type: ignore

    @property
    def ip(self) -> str:
        return self.pool.config.listen.ip

    def named(self, kind: EventKind) -> list[PoolEvent]:
        return [e for e in self.events if e.event == kind]

    def event_addresses(self, kind: EventKind) -> list[str]:
        """
        The C{addr} of every event of C{kind}.
        """
        return [str(e.fields.get("addr")) for e in self.named(kind)]

    def reasons(self) -> list[DisconnectReason]:
        return [reason.reason for _, reason in self.app.lost]


_identity_cache: dict[int, NodeIdentity] = {}


def node_identity(index: int) -> NodeIdentity:
    if index not in _identity_cache:
        _identity_cache[index] = NodeIdentity.generate(POW)
    return _identity_cache[index]


class Sources:
    """
    Distinct loopback source addresses, one per connection that may be
    greylisted.
    """

    def __init__(self, base: int) -> None:
        self._next = 0
        self._base = base

    def __call__(self) -> str:
        self._next += 1
        return f"127.{self._base}.{self._next}.9"


def run(f: Callable[..., Any], *args: Any) -> Any:
    """
    Run blocking client code in a thread while the node runs.
    """
    return deferToThread(f, *args)


def frames_until_eof(client: pc.Client) -> list[int]:
    """
    The kinds of the frames received until the node closes.
    """
    kinds: list[int] = []
    while True:
        try:
            kind, _ = client.receive()
        except (EOFError, OSError):
            return kinds
        kinds.append(kind)


def ping_pong(client: pc.Client, answer_pings: bool = False) -> list[int]:
    """
    Send Ping; the kinds of the frames received up to its Pong (each Ping
    among them answered with Pong if C{answer_pings}).
    """
    client.send(pc.PING)
    kinds: list[int] = []
    while True:
        kind, _ = client.receive()
        if kind == pc.PONG:
            return kinds
        kinds.append(kind)
        if answer_pings and kind == pc.PING:
            if len(kinds) > 3:
                raise AssertionError(f"no Pong, and {len(kinds)} Pings came meanwhile: {kinds}")
            client.send(pc.PONG)


def closed_before_tls(identity: pc.Identity, node: NodeHarness, source: str) -> bool:
    """
    Whether the node closes a connection from C{source} before sending
    any TLS byte.
    """
    try:
        client = pc.Client(identity, node.ip, node.port, source=source, timeout=READ_DEADLINE)
    except (ssl.SSLEOFError, ConnectionResetError):
        return True
    client.close()
    return False


def raw_tls(node: NodeHarness, source: str, **versions: ssl.TLSVersion) -> ssl.SSLSocket:
    """
    A TLS connection to C{node} presenting no certificate, within
    C{versions} (C{minimum_version}, C{maximum_version}).
    """
    raw = socket.create_connection((node.ip, node.port), timeout=READ_DEADLINE, source_address=(source, 0))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    for name, version in versions.items():
        setattr(context, name, version)
    try:
        return context.wrap_socket(raw)
    except BaseException:
        raw.close()
        raise


def alert(attempt: Callable[[], object]) -> str:
    """
    The reason of the TLS alert C{attempt} meets, or C{"no alert"}.
    """
    try:
        attempt()
    except ssl.SSLError as e:
        return str(e.reason)
    return "no alert"


class _RSAIdentity(pc.Identity):
    """
    A client identity whose TLS key is RSA (for a refused certificate).
    """

    def __init__(self, stamp: bytes) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # type: ignore[assignment]
        self.stamp = stamp


class NodeTestCase(TestCase):
    timeout = 120
    #: Third octet base of this class's loopback addresses.
    base = 0

    async def start_node(self, index: int = 0, **settings: Any) -> NodeHarness:
        config: dict[str, Any] = dict(
            listen=Point(f"127.{self.base}.0.{index + 1}", 0),
            expected_proof_of_work=POW,
            maintenance_idle_time=None,
            netgroup_cap_exempts_loopback=True,
            max_message_size=100_000,
            keepalive_interval=None,
            close_grace_period=GOODBYE_GRACE_PERIOD,
            authentication_timeout=HANDSHAKE_TIMEOUT,
            data_dir=self.mktemp(),
        )
        config.update(settings)
        events: list[PoolEvent] = []
        app = EchoApp()
        pool = Pool(PoolConfig(**config), app, identity=node_identity(index), log=events.append)  # type: ignore[arg-type]
        pool.startService()
        self.addCleanup(lambda: pool.stopService() if pool.running else None)
        await pool.when_started()
        return NodeHarness(pool, app, events)

    def setUp(self) -> None:
        self.sources = Sources(self.base)
        self.client_identity = pc.Identity(POW)


class SessionTests(NodeTestCase):
    base = 61

    @async_test
    async def test_session(self) -> None:
        """
        A whole session: TLS, Hello, Ack pipelined with a message larger
        than the handshake limit, the echo, a Ping of the client's own,
        keepalive Pings answered (the connection outlives three intervals),
        then silence: Disconnect, then the end of the stream.
        """
        interval = 0.5
        node = await self.start_node(keepalive_interval=interval)
        source = self.sources()
        big = bytes(range(256)) * 280  # 71,680 bytes: over 65,535, under 100,000

        def session() -> dict[str, Any]:
            client = pc.Client(self.client_identity, node.ip, node.port, source=source, timeout=READ_DEADLINE)
            result: dict[str, Any] = {"remote_peer_id": client.remote_peer_id}
            client.hello(NETWORK)
            kind, body = client.receive()
            assert kind == pc.HELLO, kind
            hello = pc.parse_hello(body)
            result["hello"] = hello
            assert pc.pow_valid(client.remote_public_key, hello["stamp"], POW)  # type: ignore[arg-type]
            # Ack and a message in one write, before the node's Ack.
            client.send_raw(pc.frame(pc.ACK) + pc.frame(pc.MESSAGE, big))
            # The node's first keepalive check of the running connection
            # pings it to measure its round trip: on a busy machine that may
            # come before the echo (the message takes several reads); such
            # a Ping is answered and left out.
            answers = []
            while len(answers) < 2:
                answer = client.receive()
                if answer[0] == pc.PING and len(answers) == 1:
                    client.send(pc.PONG)
                else:
                    answers.append(answer)
            result["answers"] = answers
            # The node's keepalive Pings a client silent for an interval: one
            # may come first when the client took that long to read the echo
            # (a busy machine); it is answered, as below.
            result["own_ping"] = ping_pong(client, answer_pings=True)
            # Answered, Pings keep coming one at a time: three of them (where
            # silence would have closed the connection after two).
            result["answered"] = []
            while len(result["answered"]) < 3:
                kind, _ = client.receive()
                result["answered"].append(kind)
                client.send(pc.PONG)
            result["after_silence"] = frames_until_eof(client)
            client.close()
            return result

        result = await run(session)
        self.assertEqual(result["remote_peer_id"], node.pool.peer_id.raw)
        self.assertEqual(
            result["hello"],
            {
                "port": node.port,
                "stamp": node.pool.identity.proof_of_work_stamp,  # type: ignore[union-attr]
                "network": NETWORK,
                "p2p_versions": [1],
                "application_versions": [0],
                "private_mode": False,
                "metadata": b"",
            },
        )
        self.assertEqual(result["answers"], [(pc.ACK, b""), (pc.MESSAGE, b"echo:" + big)])
        self.assertEqual([kind for kind in result["own_ping"] if kind != pc.PING], [], "only keepalive Pings")
        self.assertEqual(result["answered"], [pc.PING, pc.PING, pc.PING])
        # Silent: pinged twice more, then Disconnect and the end. One Ping
        # more may come first: the round-trip Ping of a connection not yet
        # silent, due an interval after the last one when the node's check
        # after the client's last Pong comes that late (a busy machine).
        # When exactly the close comes is checked on a simulated clock
        # (test_keepalive).
        after_silence = result["after_silence"]
        self.assertIn(after_silence, ([pc.PING] * 2 + [pc.DISCONNECT], [pc.PING] * 3 + [pc.DISCONNECT]))
        await wait_for(lambda: bool(node.app.lost))
        self.assertEqual(node.reasons(), [DisconnectReason.IDLE_TIMEOUT])
        self.assertFalse(node.pool.acl.banned_addr(source))

    @async_test
    async def test_requested_disconnect(self) -> None:
        """
        §8.1: a close the node decides sends Disconnect first; a
        Disconnect from the client is not answered.
        """
        node = await self.start_node()

        def connect() -> pc.Client:
            client = pc.Client(self.client_identity, node.ip, node.port, source=self.sources(), timeout=READ_DEADLINE)
            client.handshake(NETWORK, POW)
            return client

        client = await run(connect)
        await wait_for(lambda: len(node.app.connections) == 1)
        node.app.connections[0].disconnect()
        self.assertEqual(await run(frames_until_eof, client), [pc.DISCONNECT])
        client.close()

        def client_disconnects() -> list[int]:
            client = connect()
            client.send(pc.DISCONNECT)
            kinds = frames_until_eof(client)
            client.close()
            return kinds

        self.assertEqual(await run(client_disconnects), [])
        await wait_for(lambda: len(node.app.lost) == 2)
        self.assertEqual(node.reasons(), [DisconnectReason.REQUESTED, DisconnectReason.REMOTE_DISCONNECT])


class RefusalTests(NodeTestCase):
    base = 62

    @async_test
    async def test_certificate_checks(self) -> None:
        """
        §2.3-2.5: the name and the dates are not checked; a certificate not
        self-issued, not Ed25519, not self-signed or restricted to servers
        is refused with unknown_ca, no certificate with
        certificate_required, TLS 1.2 with protocol_version; every refusal
        greylists the source, whose next connection closes before TLS.
        """
        node = await self.start_node()
        key = self.client_identity.key
        now = datetime.datetime.now(datetime.UTC)
        day = datetime.timedelta(days=1)
        eku_server = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        rsa_identity = _RSAIdentity(self.client_identity.stamp)
        accepted = {
            "any CN": pc.make_certificate(key, common_name="not a peer id"),
            "expired": pc.make_certificate(key, not_before=now - 30 * day, not_after=now - 20 * day),
            "not yet valid": pc.make_certificate(key, not_before=now + 20 * day, not_after=now + 30 * day),
        }
        refused = {
            "issued by another name": (self.client_identity, pc.make_certificate(key, issuer="someone else")),
            "signed by another key": (
                self.client_identity,
                pc.make_certificate(key, signer=ed25519.Ed25519PrivateKey.generate()),
            ),
            "server-only usage": (self.client_identity, pc.make_certificate(key, extensions=[(eku_server, False)])),
            "RSA": (rsa_identity, pc.make_certificate(rsa_identity.key, "x")),
        }

        def attempts() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, cert in accepted.items():
                source = self.sources()
                client = pc.Client(
                    self.client_identity, node.ip, node.port, source=source, certificate=cert, timeout=READ_DEADLINE
                )
                client.handshake(NETWORK, POW)
                out[name] = ("running", source)
                client.close()
            for name, (identity, cert) in refused.items():
                source = self.sources()
                # TLS completes on the dialer's side; the alert comes next.
                client = pc.Client(identity, node.ip, node.port, source=source, certificate=cert, timeout=READ_DEADLINE)
                out[name] = (alert(lambda c=client: (c.hello(NETWORK), c.receive())), source)  # type: ignore[misc]
                client.close()
            source = self.sources()
            tls = raw_tls(node, source, minimum_version=ssl.TLSVersion.TLSv1_3)
            out["no certificate"] = (alert(lambda: tls.recv(1)), source)
            tls.close()
            source = self.sources()
            out["TLS 1.2"] = (
                alert(lambda: raw_tls(node, source, maximum_version=ssl.TLSVersion.TLSv1_2).close()),
                source,
            )
            return out

        out = await run(attempts)
        self.assertEqual(
            {name: reason for name, (reason, _) in out.items()},
            {
                "any CN": "running",
                "expired": "running",
                "not yet valid": "running",
                "issued by another name": "TLSV1_ALERT_UNKNOWN_CA",
                "signed by another key": "TLSV1_ALERT_UNKNOWN_CA",
                "server-only usage": "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
                "RSA": "TLSV1_ALERT_UNKNOWN_CA",
                "no certificate": "TLSV13_ALERT_CERTIFICATE_REQUIRED",
                "TLS 1.2": "TLSV1_ALERT_PROTOCOL_VERSION",
            },
        )
        # Once the node has seen each connection end: the refused sources
        # are greylisted, and their next connection closes before TLS.
        await wait_for(lambda: len(node.app.lost) == len(accepted))
        for reason, source in out.values():
            if reason != "running":
                await wait_for(lambda source=source: node.pool.acl.banned_addr(source))  # type: ignore[misc]
        sources = {name: source for name, (_, source) in out.items()}
        before_tls = await run(
            lambda: {name: closed_before_tls(self.client_identity, node, s) for name, s in sources.items()}
        )
        self.assertEqual(before_tls, {name: reason != "running" for name, (reason, _) in out.items()})
        for name, (reason, source) in out.items():
            self.assertEqual(node.pool.acl.banned_addr(source), reason != "running", name)

    @async_test
    async def test_pin_refusal(self) -> None:
        """
        §2.5, §8.2: a node dialing a point pinned to another peer id aborts
        the TLS handshake with unknown_ca; it does not greylist the
        listener, but the listener greylists it (a TLS failure).
        """
        dialer = await self.start_node(0)
        listener = await self.start_node(1)
        point = Point(listener.ip, listener.port)
        dialer.pool.register_point(point, expected_peer_id=PeerId(os.urandom(16)))
        with self.assertRaises(IdentityCheckFailure):
            await dialer.pool.connect(point)
        await wait_for(lambda: bool(listener.named(EventKind.AUTHENTICATION_FAILED)))
        detail = listener.named(EventKind.AUTHENTICATION_FAILED)[0].fields["detail"]
        self.assertIn("alert unknown ca", detail)
        self.assertFalse(dialer.pool.acl.banned_addr(listener.ip))
        self.assertTrue(listener.pool.acl.banned_addr(dialer.ip))

    @async_test
    async def test_handshake_refusals(self) -> None:
        """
        §6.1, §6.2, §8.2: a refused client receives the node's Hello, then a
        Nack and the end (no greylisting), or the end alone; too little
        proof of work and a message before the Ack greylist the address.
        """
        node = await self.start_node()
        weak = pc.Identity(0)
        while pc.pow_valid(weak.public_key, weak.stamp, POW):
            weak = pc.Identity(0)

        def exchange(identity: pc.Identity, source: str, first: bytes) -> list[tuple[int, bytes]]:
            client = pc.Client(identity, node.ip, node.port, source=source, timeout=READ_DEADLINE)
            client.send_raw(first)
            frames = []
            while True:
                try:
                    frames.append(client.receive())
                except (EOFError, ConnectionError):
                    client.close()
                    return frames

        def attempts() -> dict[str, Any]:
            me = self.client_identity
            hello = pc.frame(pc.HELLO, pc.hello_body(0, me.stamp, NETWORK, [1], [0]))
            cases = {
                "network": (me, pc.frame(pc.HELLO, pc.hello_body(0, me.stamp, "another-net", [1], [0]))),
                "p2p version": (me, pc.frame(pc.HELLO, pc.hello_body(0, me.stamp, NETWORK, [2], [0]))),
                "application version": (me, pc.frame(pc.HELLO, pc.hello_body(0, me.stamp, NETWORK, [1], [7]))),
                "proof of work": (weak, pc.frame(pc.HELLO, pc.hello_body(0, weak.stamp, NETWORK, [1], [0]))),
                "message before ack": (me, hello + pc.frame(pc.MESSAGE, b"early")),
            }
            out = {}
            for name, (identity, first) in cases.items():
                source = self.sources()
                out[name] = (exchange(identity, source, first), source)
            return out

        out = await run(attempts)
        nack = {"network": 2, "p2p version": 3, "application version": 4}
        # Once the node has ended each handshake (a nack, or a greylisting):
        for name, (_, source) in out.items():
            if name in nack:
                await wait_for(lambda s=source: s in node.event_addresses(EventKind.REJECTING_REQUEST))  # type: ignore[misc]
            else:
                await wait_for(lambda source=source: node.pool.acl.banned_addr(source))  # type: ignore[misc]
        before = await run(
            lambda: {name: closed_before_tls(self.client_identity, node, s) for name, (_, s) in out.items()}
        )
        for name, (frames, source) in out.items():
            before_tls = before[name]
            kinds = [kind for kind, _ in frames]
            if name in nack:
                self.assertEqual(kinds, [pc.HELLO, pc.NACK], name)
                self.assertEqual(pc.parse_nack(frames[1][1]), (nack[name], []), name)
            elif name == "proof of work":
                self.assertEqual(kinds, [pc.HELLO], name)
            else:
                # The node accepted the Hello (Ack), then met the message.
                self.assertEqual(kinds, [pc.HELLO, pc.ACK], name)
            greylisted = name not in nack
            self.assertEqual(before_tls, greylisted, name)
            self.assertEqual(node.pool.acl.banned_addr(source), greylisted, name)

    @async_test
    async def test_running_errors_close_without_disconnect(self) -> None:
        """
        §8.1, §8.2, §3: an unknown kind or an oversized frame on a running
        connection closes it without Disconnect and greylists the address
        and the peer id.
        """
        node = await self.start_node()
        cases = {
            "unknown kind": pc.frame(0x7F),
            "oversized": pc.frame(pc.MESSAGE, bytes(100_001)),
            "empty frame": b"\x00\x00\x00\x00\x20",
        }

        def attempts() -> dict[str, Any]:
            out = {}
            for name, data in cases.items():
                identity = pc.Identity(POW)
                source = self.sources()
                client = pc.Client(identity, node.ip, node.port, source=source, timeout=READ_DEADLINE)
                client.handshake(NETWORK, POW)
                with contextlib.suppress(OSError):  # the node may close while we send
                    client.send_raw(data)
                kinds = frames_until_eof(client)
                client.close()
                out[name] = (kinds, source, identity.peer_id)
            return out

        out = await run(attempts)
        await wait_for(lambda: len(node.app.lost) == len(cases))
        before = await run(
            lambda: {name: closed_before_tls(pc.Identity(0), node, s) for name, (_, s, _) in out.items()}
        )
        self.assertEqual(
            node.reasons(),
            [DisconnectReason.DECODING_ERROR, DisconnectReason.MESSAGE_TOO_LARGE, DisconnectReason.DECODING_ERROR],
        )
        for name, (kinds, source, raw_peer_id) in out.items():
            self.assertEqual(kinds, [], name)
            self.assertTrue(before[name], name)
            self.assertTrue(node.pool.acl.banned_addr(source), name)
            self.assertTrue(node.pool.acl.banned_peer(PeerId(raw_peer_id)), name)


class DiscoveryTests(NodeTestCase):
    base = 63

    @async_test
    async def test_bootstrap_and_advertise(self) -> None:
        """
        §7.2: nothing to advertise, no answer; a client that said it
        listens (not private) becomes a public point, advertised to the
        next one; a private client gets no answer.
        """
        node = await self.start_node()

        def scenario() -> dict[str, Any]:
            out: dict[str, Any] = {}
            first = pc.Client(pc.Identity(POW), node.ip, node.port, source=self.sources(), timeout=READ_DEADLINE)
            first.handshake(NETWORK, POW)
            first.send(pc.BOOTSTRAP)
            out["nothing known"] = ping_pong(first)
            listening_source = self.sources()
            listener = pc.Client(pc.Identity(POW), node.ip, node.port, source=listening_source, timeout=READ_DEADLINE)
            listener.handshake(NETWORK, POW, port=4567)
            out["listener point"] = f"{listening_source}:4567"
            # Within the 0.1 s cooldown of Bootstrap, this one is handled
            # when the cooldown ends: answered all the same.
            first.send(pc.BOOTSTRAP)
            kind, body = first.receive()
            out["advertised"] = (kind, pc.Reader(body).points() if kind == pc.ADVERTISE else body)
            out["then"] = ping_pong(first)
            private = pc.Client(pc.Identity(POW), node.ip, node.port, source=self.sources(), timeout=READ_DEADLINE)
            private.handshake(NETWORK, POW, private_mode=True)
            private.send(pc.BOOTSTRAP)
            out["private asks"] = ping_pong(private)
            for c in (first, listener, private):
                c.close()
            return out

        out = await run(scenario)
        self.assertEqual(out["nothing known"], [])
        self.assertEqual(out["advertised"], (pc.ADVERTISE, [out["listener point"]]))
        self.assertEqual(out["then"], [])
        self.assertEqual(out["private asks"], [])

    @async_test
    async def test_node_sends_bootstrap(self) -> None:
        """
        §7.2: a node with too few connections and nothing to dial sends
        Bootstrap to a newly connected public client.
        """
        node = await self.start_node(maintenance_idle_time=120.0)

        def scenario() -> int:
            client = pc.Client(self.client_identity, node.ip, node.port, source=self.sources(), timeout=READ_DEADLINE)
            client.handshake(NETWORK, POW)
            kind, _ = client.receive()
            client.close()
            return kind

        self.assertEqual(await run(scenario), pc.BOOTSTRAP)


class SwapTests(NodeTestCase):
    base = 64

    @async_test
    async def test_swap_request(self) -> None:
        """
        §7.3: a request offering an unknown point gets no answer and
        teaches the node that point; for a known point the node answers
        SwapAck with its other peer, dials the offered point without pinning
        it to the offered id, and on success closes its connection to the
        peer it offered, with Disconnect; a second request within
        swap_linger gets no answer.
        """
        node = await self.start_node(0)
        other = await self.start_node(1)
        node.pool.register_point(Point(other.ip, other.port))

        def scenario() -> dict[str, Any]:
            out: dict[str, Any] = {}
            teacher = pc.Client(pc.Identity(POW), node.ip, node.port, source=self.sources(), timeout=READ_DEADLINE)
            teacher.handshake(NETWORK, POW)
            teacher.send(pc.SWAP_REQUEST, pc.swap_body("127.64.98.1:4567", os.urandom(16)))
            out["unknown point"] = ping_pong(teacher)
            teacher.close()
            offered_source = self.sources()
            offered = pc.Client(pc.Identity(POW), node.ip, node.port, source=offered_source, timeout=READ_DEADLINE)
            offered.handshake(NETWORK, POW, port=4567)
            requester = pc.Client(pc.Identity(POW), node.ip, node.port, source=self.sources(), timeout=READ_DEADLINE)
            requester.handshake(NETWORK, POW)
            wrong_id = os.urandom(16)
            requester.send(pc.SWAP_REQUEST, pc.swap_body(f"{other.ip}:{other.port}", wrong_id))
            kind, body = requester.receive()
            out["answer"] = (kind, pc.parse_swap(body) if kind == pc.SWAP_ACK else body)
            out["offered"] = (f"{offered_source}:4567", offered.identity.peer_id)
            out["offered peer sees"] = frames_until_eof(offered)
            late = pc.Client(pc.Identity(POW), node.ip, node.port, source=self.sources(), timeout=READ_DEADLINE)
            late.handshake(NETWORK, POW)
            late.send(pc.SWAP_REQUEST, pc.swap_body("127.64.99.1:4567", wrong_id))
            out["within linger"] = ping_pong(late)
            for c in (offered, requester, late):
                c.close()
            return out

        out = await run(scenario)
        self.assertEqual(out["unknown point"], [])
        self.assertIsNotNone(node.pool.points.info(Point("127.64.98.1", 4567)))
        self.assertEqual(out["answer"], (pc.SWAP_ACK, out["offered"]))
        # The node connected to the other node (whose id is not the one
        # offered), then dropped the peer it offered, saying goodbye.
        self.assertIsNotNone(node.pool.connections.find_by_peer_id(other.pool.peer_id))
        self.assertEqual(out["offered peer sees"], [pc.DISCONNECT])
        await wait_for(lambda: DisconnectReason.PEER_SWAPPED in node.reasons())
        swapped = [conn.peer_id.raw for conn, reason in node.app.lost if reason.reason is DisconnectReason.PEER_SWAPPED]
        self.assertEqual(swapped, [out["offered"][1]])
        self.assertEqual(out["within linger"], [])
