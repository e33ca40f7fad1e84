"""
The admin API over HTTPS (C{[admin] tls_certificate}, C{tls_key}): the
start-time rules, a real HTTPS admin service, and the C{p2pool} CLI
verifying its certificate and host name (C{--ca-file}).
"""

from __future__ import annotations

import io
import os
import shutil
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.resource import Resource

import p2pool.cli.commands as cli
from p2pool.admin.service import AdminListenError, AdminService, load_tls_options
from p2pool.config import AdminConfig, ConfigError, config_from_mapping
from p2pool.core.addressing import Point
from tests.adminhelpers import TOKEN
from tests.helpers import async_test, start_node
from tests.test_seeds import Pki


class RuleTests(SynchronousTestCase):
    """
    A non-loopback C{admin.listen} needs a token and TLS; a key needs a
    certificate.
    """

    def test_non_loopback_needs_token_and_tls(self) -> None:
        listen = Point("0.0.0.0", 8732)
        for kwargs, missing in (
            ({}, "admin.token"),
            ({"token": TOKEN}, "admin.tls_certificate"),
            ({"tls_certificate": "/c.pem", "tls_key": "/k.pem"}, "admin.token"),
        ):
            error = self.assertRaises(ConfigError, AdminConfig, listen, **kwargs)
            self.assertEqual(error.key, "admin.listen")
            self.assertIn(missing, str(error))
        config = AdminConfig(listen, TOKEN, "/c.pem", "/k.pem")
        self.assertTrue(config.tls)

    def test_refused_from_file(self) -> None:
        document = {"admin": {"listen": "[::]:8732", "token": TOKEN}}
        error = self.assertRaises(ConfigError, config_from_mapping, document, source="node.toml")
        self.assertTrue(
            str(error).startswith("node.toml: admin.listen: [::]:8732 is not a loopback address"), str(error)
        )
        self.assertIn("HTTPS", str(error))

    def test_loopback_may_be_plain(self) -> None:
        self.assertFalse(AdminConfig(Point("127.0.0.1", 8732)).tls)

    def test_key_without_certificate_refused(self) -> None:
        error = self.assertRaises(
            AdminListenError, load_tls_options, AdminConfig(Point("127.0.0.1", 0), tls_key="/k.pem")
        )
        self.assertIn("admin.tls_key", str(error))

    def test_unreadable_and_bad_files(self) -> None:
        missing = self.mktemp()
        error = self.assertRaises(
            AdminListenError, load_tls_options, AdminConfig(tls_certificate=missing, tls_key=missing)
        )
        self.assertTrue(str(error).startswith("admin.tls_certificate: cannot read"), str(error))
        pki = Pki.create(self.mktemp())
        cert, key = pki.leaf("admin.test")
        error = self.assertRaises(AdminListenError, load_tls_options, AdminConfig(tls_certificate=cert, tls_key=cert))
        self.assertTrue(str(error).startswith("admin.tls_key: no PEM private key"), str(error))
        other_cert, other_key = pki.leaf("other.test")
        error = self.assertRaises(
            AdminListenError, load_tls_options, AdminConfig(tls_certificate=cert, tls_key=other_key)
        )
        self.assertIn("does not fit", str(error))


class HttpsAdminTests(TestCase):
    """
    A node's admin API served over HTTPS, called with the CLI.
    """

    async def serve(self, cert: str, key: Any, token: str = TOKEN) -> str:
        node = await start_node(self, "127.0.0.1", 0)
        config = AdminConfig(listen=Point("127.0.0.1", 0), token=token, tls_certificate=cert, tls_key=key)
        service = AdminService(node.pool, config)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        await service.when_listening()
        return f"https://{service.address}"

    async def cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = await cli.admin_main(list(argv), None, out, err)
        return status, out.getvalue(), err.getvalue()

    def setUp(self) -> None:
        self.pki = Pki.create(self.mktemp())

    @async_test
    async def test_good_certificate_with_token(self) -> None:
        url = await self.serve(*self.pki.leaf("admin.test"))
        status, out, err = await self.cli(
            "--api", url, "--ca-file", self.pki.ca_file, "--token", TOKEN, "--json", "status"
        )
        self.assertEqual((status, err), (cli.EXIT_OK, ""))
        self.assertIn("peer_id", out)

    @async_test
    async def test_without_token_refused(self) -> None:
        url = await self.serve(*self.pki.leaf("admin.test"))
        status, out, err = await self.cli("--api", url, "--ca-file", self.pki.ca_file, "status")
        self.assertEqual(status, cli.EXIT_ERROR)
        self.assertIn("401", err)

    @async_test
    async def test_combined_pem_file(self) -> None:
        cert, key = self.pki.leaf("admin.test")
        combined = os.path.join(self.pki.directory, "combined.pem")
        with open(combined, "wb") as f, open(cert, "rb") as c, open(key, "rb") as k:
            f.write(c.read() + k.read())
        url = await self.serve(combined, None)
        status, out, err = await self.cli("--api", url, "--ca-file", self.pki.ca_file, "--token", TOKEN, "status")
        self.assertEqual((status, err), (cli.EXIT_OK, ""))

    @async_test
    async def test_wrong_host_name(self) -> None:
        url = await self.serve(*self.pki.leaf("other.test", ip=False))
        status, out, err = await self.cli("--api", url, "--ca-file", self.pki.ca_file, "--token", TOKEN, "status")
        self.assertEqual(status, cli.EXIT_UNREACHABLE)
        self.assertIn("does not match the host name", err)
        self.flushLoggedErrors()

    @async_test
    async def test_untrusted_certificate(self) -> None:
        url = await self.serve(*self.pki.leaf("admin.test", self_signed=True))
        status, out, err = await self.cli("--api", url, "--ca-file", self.pki.ca_file, "--token", TOKEN, "status")
        self.assertEqual(status, cli.EXIT_UNREACHABLE)
        self.assertIn("TLS certificate verification failed", err)
        self.flushLoggedErrors()

    @async_test
    async def test_system_trust_store_by_default(self) -> None:
        url = await self.serve(*self.pki.leaf("admin.test"))
        status, out, err = await self.cli("--api", url, "--token", TOKEN, "status")
        self.assertEqual(status, cli.EXIT_UNREACHABLE)
        self.assertIn("TLS certificate verification failed", err)
        self.flushLoggedErrors()

    @async_test
    async def test_bad_ca_file(self) -> None:
        status, out, err = await self.cli("--api", "https://127.0.0.1:1", "--ca-file", self.mktemp(), "status")
        self.assertEqual(status, cli.EXIT_USAGE)
        self.assertIn("--ca-file: cannot read", err)

    @async_test
    async def test_plain_http_to_https_port_fails(self) -> None:
        url = await self.serve(*self.pki.leaf("admin.test"))
        status, out, err = await self.cli("--api", url.replace("https://", "http://"), "--token", TOKEN, "status")
        self.assertEqual(status, cli.EXIT_UNREACHABLE)
        self.flushLoggedErrors()


class _Client(Protocol):
    """
    Sends one request over TLS and keeps what comes back.
    """

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(
            b"GET /network/self HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nConnection: close\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


class AlpnTests(TestCase):
    """
    The HTTPS admin API negotiates ALPN C{http/1.1} with clients that offer
    it (curl and browsers offer C{h2,http/1.1}); it used to answer them
    with a TLS internal-error alert.
    """

    def setUp(self) -> None:
        self.pki = Pki.create(self.mktemp())

    async def serve(self) -> AdminService:
        node = await start_node(self, "127.0.0.1", 0)
        cert, key = self.pki.leaf("admin.test")
        config = AdminConfig(listen=Point("127.0.0.1", 0), token=TOKEN, tls_certificate=cert, tls_key=key)
        service = AdminService(node.pool, config)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        await service.when_listening()
        return service

    @async_test
    async def test_offering_h2_and_http_1_1_gets_http_1_1(self) -> None:
        service = await self.serve()
        address = service.address
        assert address is not None
        with open(self.pki.ca_file, "rb") as f:
            authority = Certificate.loadPEM(f.read())
        options = optionsForClientTLS("admin.test", trustRoot=authority, acceptableProtocols=[b"h2", b"http/1.1"])
        endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, address.ip, address.port))
        client = _Client()
        await endpoint.connect(Factory.forProtocol(lambda: client))
        await client.closed
        self.assertTrue(client.data.startswith(b"HTTP/1.1 200 "), client.data[:200])
        self.assertIn(str(service.pool.peer_id).encode(), client.data)
        self.assertEqual(client.transport.negotiatedProtocol, b"http/1.1")  # type: ignore[union-attr]

    @async_test
    async def test_curl_with_default_options(self) -> None:
        curl = shutil.which("curl")
        if curl is None:
            raise SkipTest("curl is not installed (Debian: apt-get install curl)")
        service = await self.serve()
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        out, err, code = await getProcessOutputAndValue(
            curl,
            [
                "-sS",
                "--cacert",
                self.pki.ca_file,
                "-H",
                f"Authorization: Bearer {TOKEN}",
                "-w",
                "\nhttp_version=%{http_version}",
                f"https://{service.address}/network/self",
            ],
            env=env,
        )
        self.assertEqual(code, 0, err)
        self.assertIn(f'"{service.pool.peer_id}"'.encode(), out)
        self.assertTrue(out.endswith(b"http_version=1.1"), out)

    def test_site_offers_only_http_1_1(self) -> None:
        """
        The site never offers C{h2} (its channels speak HTTP/1.1 only),
        even where Twisted's HTTP/2 support is installed.
        """
        from p2pool.admin.limits import ConnectionTable
        from p2pool.admin.service import ALPN_PROTOCOLS, AdminSite
        from p2pool.pool.refusals import RefusalLog

        clock = Clock()
        site = AdminSite(Resource(), ConnectionTable(1, 1), RefusalLog(clock, None, print), 1.0, 1.0, clock)
        self.assertEqual(site.acceptableProtocols(), [b"http/1.1"])
        self.assertEqual(ALPN_PROTOCOLS, [b"http/1.1"])
