"""
Tests for L{p2pool.pool.bootstrap_urls}: bootstrap URLs fetched over HTTPS from a local
server with a test CA (good name, wrong name, self-signed), bad documents,
huge bodies, time-outs, back-off, and the pool hooks.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import random
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point
from p2pool.core.identity import Identity
from p2pool.events import EventKind, EventLog, PoolEvent
from p2pool.pool.bootstrap_urls import (
    BACKOFF_CAP,
    SeedError,
    SeedFetcher,
    load_trust_root,
    parse_seed_document,
)
from p2pool.pool.service import Pool
from tests.helpers import async_test, identity, wait_for

PEER_ID = str(Identity.generate(0).peer_id)


@attrs.define
class Pki:
    """
    A test CA, and PEM files for leaf certificates it signs.
    """

    directory: str
    ca_key: Any
    ca_cert: Any
    ca_file: str

    @classmethod
    def create(cls, directory: str) -> Pki:
        os.makedirs(directory, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p2pool test CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca_file = os.path.join(directory, "ca.pem")
        with open(ca_file, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, key, cert, ca_file)

    def leaf(self, name: str, self_signed: bool = False, ip: bool = True) -> tuple[str, str]:
        """
        A certificate for DNS C{name} (and 127.0.0.1 and ::1 unless not C{ip}): its
        PEM file (the leaf, then the CA unless self-signed) and its key's
        PEM file.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer = subject if self_signed else self.ca_cert.subject
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(name)]
                    + (
                        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
                        if ip
                        else []
                    )
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        if not self_signed:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False
            )
        cert = builder.sign(key if self_signed else self.ca_key, hashes.SHA256())
        tag = f"{name}{'-self' if self_signed else ''}{'' if ip else '-noip'}"
        cert_file = os.path.join(self.directory, f"{tag}.pem")
        key_file = os.path.join(self.directory, f"{tag}.key")
        with open(cert_file, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
            if not self_signed:
                f.write(self.ca_cert.public_bytes(serialization.Encoding.PEM))
        with open(key_file, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        return cert_file, key_file


def server_options(cert_file: str, key_file: str) -> CertificateOptions:
    """
    Server TLS options (TLS 1.2 or later) from PEM files.
    """
    with open(cert_file, "rb") as f:
        cert = x509.load_pem_x509_certificates(f.read())[0]
    with open(key_file, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    return CertificateOptions(privateKey=key, certificate=cert, raiseMinimumTo=TLSVersion.TLSv1_2)


class _Document(Resource):
    isLeaf = True

    def __init__(self, body: bytes, status: int = 200) -> None:
        super().__init__()
        self.body = body
        self.status = status

    def render_GET(self, request: Any) -> bytes:
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"application/json")
        return self.body


class _Streaming(Resource):
    """
    An endless body without a Content-Length, in 64 KiB writes.
    """

    isLeaf = True

    def render_GET(self, request: Any) -> Any:
        chunk = b" " * 65536
        written = [0]

        def more() -> None:
            if request.finished or request._disconnected:
                return
            request.write(chunk)
            written[0] += 1
            if written[0] < 200:
                reactor.callLater(0, more)
            else:
                request.finish()

        more()
        return NOT_DONE_YET


class _Hanging(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render_GET(self, request: Any) -> Any:
        self.requests.append(request)
        return NOT_DONE_YET


#: The fetch timeout of the tests whose fetch must not time out: longer
#: than a test, since it runs on the reactor's clock and a test process
#: descheduled that long (a busy machine) would see a good server time out.
#: test_timeout sets its own.
FETCH_TIMEOUT = 60.0
GOOD_POINTS = ["10.0.0.1:9732", f"10.0.0.2:9733#{PEER_ID}", "seed-node.test:9734"]


def site() -> Site:
    root = Resource()
    root.putChild(b"good", _Document(json.dumps(GOOD_POINTS).encode()))
    root.putChild(b"mixed", _Document(json.dumps(["10.0.0.3:9732", "nonsense", 42, "10.0.0.4:70000"]).encode()))
    root.putChild(b"notjson", _Document(b"<html>hello</html>"))
    root.putChild(b"object", _Document(b'{"points": []}'))
    root.putChild(b"huge", _Document(b"[" + b'"10.0.0.9:1",' * 200000 + b'"10.0.0.9:2"]'))
    root.putChild(b"stream", _Streaming())
    root.putChild(b"hang", _Hanging())
    root.putChild(b"missing", _Document(b"no", status=404))
    return Site(root)


class FakePool:
    """
    The parts of a pool a L{SeedFetcher} uses, recording registrations.
    """

    def __init__(self) -> None:
        self.recorded: list[PoolEvent] = []
        self.events = EventLog(self.recorded.append)
        self.registered: list[tuple[Point, str, str]] = []
        self.groups: set[str | None] = set()
        self.pinned: dict[Point, PeerId] = {}

    def register_list_of_new_points(
        self, points: Any, medium: str, source: str, trusted: bool | None = None, source_group: str | None = None
    ) -> None:
        self.groups.add(source_group)
        for point in points:
            assert trusted is None
            self.registered.append((point, medium, source))

    def set_expected_peer_id(self, point: Point, peer_id: PeerId) -> None:
        assert any(point == p for p, _, _ in self.registered), "pinned after it is registered"
        self.pinned[point] = peer_id

    def named(self, name: EventKind) -> list[PoolEvent]:
        return [e for e in self.recorded if e.event == name]


def fake_resolve(name: str) -> Deferred[str]:
    if name == "seed-node.test":
        return succeed("10.0.0.7")
    raise OSError(f"unknown host {name}")


class ServedTestCase(TestCase):
    """
    Three local HTTPS servers: one with a CA-signed "seed.test" certificate,
    one with a CA-signed "other.test" one, and one self-signed "seed.test".
    """

    pki: Pki
    ports: dict[str, int]

    def setUp(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._serve())

    async def _serve(self) -> None:
        self.pki = Pki.create(self.mktemp())
        self.ports = {}
        for tag, (name, self_signed) in {
            "good": ("seed.test", False),
            "wrong": ("other.test", False),
            "self": ("seed.test", True),
        }.items():
            options = server_options(*self.pki.leaf(name, self_signed))
            port = await SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(site())
            self.addCleanup(port.stopListening)
            self.ports[tag] = port.getHost().port

    def url(self, server: str, path: str) -> str:
        return f"https://seed.test:{self.ports[server]}/{path}"

    def fetcher(self, pool: FakePool, *urls: str, **kwargs: Any) -> SeedFetcher:
        kwargs.setdefault("ca_file", self.pki.ca_file)
        kwargs.setdefault("timeout", FETCH_TIMEOUT)
        fetcher = SeedFetcher(
            pool, urls, host_addresses={"seed.test": "127.0.0.1"}, resolve=fake_resolve, rng=random.Random(1), **kwargs
        )
        fetcher._started = True
        self.addCleanup(fetcher.stop)
        return fetcher


class FetchTests(ServedTestCase):
    """
    Fetching over verified HTTPS, and every failure a clear C{seed_error}.
    """

    @async_test
    async def test_good_name(self) -> None:
        pool = FakePool()
        url = self.url("good", "good")
        count = await self.fetcher(pool, url).fetch(url)
        self.assertEqual(count, 3)
        self.assertEqual(
            pool.registered,
            [
                (Point("10.0.0.1", 9732), "seed", url),
                (Point("10.0.0.2", 9733), "seed", url),
                (Point("10.0.0.7", 9734), "seed", url),
            ],
        )
        self.assertEqual(pool.pinned, {Point("10.0.0.2", 9733): PeerId.parse(PEER_ID)})
        # The points are learnt from the URL's host, as one source group.
        self.assertEqual(pool.groups, {"seed:seed.test"})
        [fetched] = pool.named(EventKind.SEED_FETCHED)
        self.assertEqual((fetched.fields["url"], fetched.fields["points"]), (url, 3))
        self.assertEqual(pool.named(EventKind.SEED_ERROR), [])

    @async_test
    async def test_ipv6_address_host(self) -> None:
        """
        A URL whose host is an IPv6 address is fetched (treq's URL handling
        alone refuses an IPv6 literal host), its certificate checked
        against that address.
        """
        options = server_options(*self.pki.leaf("seed.test"))
        port = await TCP6ServerEndpoint(reactor, 0, interface="::1").listen(TLSMemoryBIOFactory(options, False, site()))
        self.addCleanup(port.stopListening)
        pool = FakePool()
        url = f"https://[::1]:{port.getHost().port}/good"
        self.assertEqual(await self.fetcher(pool, url).fetch(url), 3)
        self.assertEqual(pool.named(EventKind.SEED_ERROR), [])

    async def _error(self, server: str, path: str, **kwargs: Any) -> str:
        pool = FakePool()
        url = self.url(server, path)
        fetcher = self.fetcher(pool, url, **kwargs)
        self.assertEqual(await fetcher.fetch(url), 0)
        self.assertEqual(pool.registered, [])
        self.assertEqual(fetcher.errors[url], 1)
        errors = pool.named(EventKind.SEED_ERROR)
        self.assertEqual(len(errors), 1, errors)
        self.assertEqual(errors[0].fields["url"], url)
        self.flushLoggedErrors()
        return str(errors[0].fields["reason"])

    @async_test
    async def test_wrong_name(self) -> None:
        reason = await self._error("wrong", "good")
        self.assertIn("does not match the host name", reason)
        self.assertIn("seed.test", reason)

    @async_test
    async def test_self_signed(self) -> None:
        reason = await self._error("self", "good")
        self.assertIn("TLS certificate verification failed", reason)

    @async_test
    async def test_system_trust_store_refuses_test_ca(self) -> None:
        pool = FakePool()
        url = self.url("good", "good")
        fetcher = SeedFetcher(pool, [url], None, host_addresses={"seed.test": "127.0.0.1"}, timeout=FETCH_TIMEOUT)
        fetcher._started = True
        self.assertEqual(await fetcher.fetch(url), 0)
        self.assertIn("TLS certificate verification failed", pool.named(EventKind.SEED_ERROR)[0].fields["reason"])

    @async_test
    async def test_bad_json(self) -> None:
        self.assertIn("body is not JSON", await self._error("good", "notjson"))

    @async_test
    async def test_not_an_array(self) -> None:
        self.assertIn("not an array", await self._error("good", "object"))

    @async_test
    async def test_http_status(self) -> None:
        self.assertIn("HTTP status 404", await self._error("good", "missing"))

    @async_test
    async def test_huge_body_with_length(self) -> None:
        self.assertIn("exceeds 65536 bytes", await self._error("good", "huge", max_body=65536))

    @async_test
    async def test_huge_streamed_body(self) -> None:
        self.assertIn("body exceeds 65536 bytes", await self._error("good", "stream", max_body=65536))

    @async_test
    async def test_timeout(self) -> None:
        self.assertIn("timed out after 0.5 s", await self._error("good", "hang", timeout=0.5))

    @async_test
    async def test_malformed_entries_are_skipped(self) -> None:
        pool = FakePool()
        url = self.url("good", "mixed")
        self.assertEqual(await self.fetcher(pool, url).fetch(url), 1)
        self.assertEqual(pool.registered, [(Point("10.0.0.3", 9732), "seed", url)])
        reasons = [e.fields["reason"] for e in pool.named(EventKind.SEED_ERROR)]
        self.assertEqual(len(reasons), 3, reasons)
        self.assertTrue(all(r.startswith("malformed entry skipped: entry ") for r in reasons), reasons)
        self.assertEqual(pool.named(EventKind.SEED_FETCHED)[0].fields["skipped"], 3)

    @async_test
    async def test_stop_cancels_quietly(self) -> None:
        pool = FakePool()
        url = self.url("good", "hang")
        fetcher = self.fetcher(pool, url)
        d = fetcher.fetch(url)
        fetcher.stop()
        self.assertEqual(await d, 0)
        self.assertEqual(pool.named(EventKind.SEED_ERROR), [])


class BackoffTests(SynchronousTestCase):
    """
    Each URL is fetched at most once per back-off delay (30 s doubling to
    1 h), and not while a fetch of it runs.
    """

    def test_backoff(self) -> None:
        clock = Clock()
        pool = FakePool()
        gets: list[str] = []
        pending: list[Deferred[Any]] = []

        class Client:
            def get(self, url: str, headers: Any = None) -> Deferred[Any]:
                gets.append(url)
                d: Deferred[Any] = Deferred()
                pending.append(d)
                return d

        fetcher = SeedFetcher(pool, ["https://a.test/"], http_client=Client(), clock=clock, rng=random.Random(2))
        fetcher.start()
        self.assertEqual(len(gets), 1)
        fetcher.request()
        self.assertEqual(len(gets), 1, "no second fetch while one runs")
        pending[0].errback(SeedError("boom"))
        self.assertEqual(pool.named(EventKind.SEED_ERROR)[0].fields["reason"], "boom")
        clock.advance(26)
        fetcher.request()
        self.assertEqual(len(gets), 1, "within the first back-off delay")
        clock.advance(8)
        fetcher.request()
        self.assertEqual(len(gets), 2)
        pending[1].errback(SeedError("boom"))
        clock.advance(50)
        fetcher.request()
        self.assertEqual(len(gets), 2, "the delay doubled to about 60 s")
        clock.advance(20)
        fetcher.request()
        self.assertEqual(len(gets), 3)
        for _ in range(10):
            pending[-1].errback(SeedError("boom"))
            clock.advance(BACKOFF_CAP * 1.11)
            fetcher.request()
        self.assertEqual(len(gets), 13, "capped at an hour")
        fetcher.stop()
        clock.advance(BACKOFF_CAP * 2)
        fetcher.request()
        self.assertEqual(len(gets), 13, "stopped")


class DocumentTests(SynchronousTestCase):
    """
    L{parse_seed_document} and L{load_trust_root}.
    """

    def test_entries(self) -> None:
        specs, problems = parse_seed_document(json.dumps(["1.2.3.4:1", "x", None, f"h.test:2#{PEER_ID}"]).encode())
        self.assertEqual([str(s) for s in specs], ["1.2.3.4:1", f"h.test:2#{PEER_ID}"])
        self.assertEqual(len(problems), 2)
        self.assertIn("entry 2: expected a point string, got NoneType", problems)

    def test_entry_cap(self) -> None:
        specs, problems = parse_seed_document(json.dumps(["1.2.3.4:1"] * 5).encode(), max_entries=3)
        self.assertEqual(len(specs), 3)
        self.assertEqual(problems, ["2 entries past the first 3 ignored"])

    def test_not_utf8(self) -> None:
        self.assertRaises(SeedError, parse_seed_document, b"\xff[]")

    def test_bad_ca_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("not a certificate")
        self.assertIn("no PEM certificate", str(self.assertRaises(SeedError, load_trust_root, path)))
        self.assertIn("cannot read", str(self.assertRaises(SeedError, load_trust_root, path + ".missing")))


class PoolHookTests(ServedTestCase):
    """
    A pool fetches its bootstrap URLs at start, registers the points
    non-trusted with medium "seed", asks again when maintenance finds no
    candidate, and stops fetching when it stops.
    """

    def make_pool(self, **config: Any) -> tuple[Pool, list[PoolEvent]]:
        settings: dict[str, Any] = dict(
            listen=Point("127.0.0.1", 0),
            expected_proof_of_work=0,
            maintenance_idle_time=None,
            data_dir=self.mktemp(),
        )
        settings.update(config)
        events: list[PoolEvent] = []
        pool = Pool(PoolConfig(**settings), identity=identity(0), log=events.append)
        return pool, events

    @async_test
    async def test_fetched_at_start(self) -> None:
        url = self.url("good", "good")
        pool, events = self.make_pool(bootstrap_urls=[url], seed_ca_file=self.pki.ca_file)
        assert pool.seeds is not None
        self.assertEqual(pool.seeds.urls, (url,))
        pool.seeds = SeedFetcher(
            pool, [url], self.pki.ca_file, host_addresses={"seed.test": "127.0.0.1"}, resolve=fake_resolve
        )
        pool.startService()
        self.addCleanup(pool.stopService)
        await pool.when_started()
        await wait_for(lambda: any(e.event == EventKind.SEED_FETCHED for e in events))
        info = pool.points.info(Point("10.0.0.2", 9733))
        self.assertIsNotNone(info)
        self.assertFalse(info.trusted)
        self.assertEqual(info.expected_peer_id, PeerId.parse(PEER_ID))
        self.assertIsNotNone(pool.points.info(Point("10.0.0.7", 9734)))
        [got] = [e for e in events if e.event == EventKind.GET_POINTS]
        self.assertEqual((got.fields["medium"], got.fields["source"], got.fields["points"]), ("seed", url, 3))

    @async_test
    async def test_private_mode_does_not_fetch(self) -> None:
        pool, events = self.make_pool(bootstrap_urls=["https://seed.test/x"], private_mode=True)
        pool.startService()
        self.addCleanup(pool.stopService)
        await pool.when_started()
        assert pool.seeds is not None
        self.assertEqual(pool.seeds.fetches, {"https://seed.test/x": 0})
        self.assertEqual(pool.seeds.fetching(), [])

    @async_test
    async def test_maintenance_asks_when_no_candidate(self) -> None:
        pool, events = self.make_pool(
            maintenance_idle_time=60.0, min_connections=1, expected_connections=1, max_connections=2
        )
        requests: list[None] = []

        class Seeds:
            def start(self) -> None:
                pass

            def stop(self) -> None:
                pass

            def request(self) -> None:
                requests.append(None)

        pool.seeds = Seeds()  # type: ignore[assignment]
        pool.startService()
        self.addCleanup(pool.stopService)
        await pool.when_started()
        await wait_for(lambda: len(requests) >= 1)
        self.assertEqual(pool.config.bootstrap_urls, ())
