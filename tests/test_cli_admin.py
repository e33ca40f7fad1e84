# -*- test-case-name: tests.test_cli_admin -*-
"""
Tests for the admin commands of the C{p2pool} command line: in process
(L{cli.admin_main} with a treq client) against real nodes on loopback, and
as a separate process (C{python -m p2pool.cli}) for exit statuses,
one-line errors and Ctrl-C.
"""

from __future__ import annotations

import io
import json
import signal
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource

import p2pool.cli.commands as cli
from p2pool.core.addressing import PeerId, Point
from p2pool.events import EventKind
from tests import processes
from tests.adminhelpers import TOKEN, base_url, http_client, start_admin
from tests.helpers import Node, async_test, closed_port, start_node, wait_for

ROOT = FilePath(__file__).parent().parent()
UNKNOWN_PEER = str(PeerId.from_public_key(b"\x03" * 32))


class Nodes:
    """
    Node A (with its admin API) connected to node B.
    """

    a: Node
    b: Node
    url: str


class InProcessTests(TestCase):
    """
    L{cli.admin_main} against a running node.
    """

    timeout = 120

    async def nodes(self, suffix: int, connect: bool = True) -> Nodes:
        nodes = Nodes()
        nodes.a = await start_node(self, f"127.0.0.{suffix}", 50 + suffix % 10)
        nodes.b = await start_node(self, f"127.0.0.{suffix + 1}", 60 + suffix % 10)
        self.admin = await start_admin(self, nodes.a.pool, f"127.0.0.{suffix}")
        nodes.url = base_url(self.admin)
        if connect:
            await nodes.a.pool.connect(nodes.b.point)
        self.url = nodes.url
        return nodes

    async def run_cli(self, *argv: str, url: str | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = await cli.admin_main(["--api", url or self.url, *argv], http_client(self), out, err)
        if status in (cli.EXIT_ERROR, cli.EXIT_UNREACHABLE):
            self.assertEqual(err.getvalue().count("\n"), 1, err.getvalue())
        if status != 0:
            self.assertIn("error: ", err.getvalue())
        return status, out.getvalue(), err.getvalue()

    @async_test
    async def test_status(self) -> None:
        n = await self.nodes(71)
        status, out, _ = await self.run_cli("status")
        self.assertEqual(status, 0)
        self.assertIn(f"peer id:      {n.a.pool.peer_id}\n", out)
        self.assertIn("connections:  1 (0 incoming, 1 outgoing)\n", out)
        self.assertIn("known points: 1 (1 running)\n", out)
        status, out, _ = await self.run_cli("status", "--json")
        summary = json.loads(out)
        self.assertEqual(summary["peer_id"], str(n.a.pool.peer_id))
        self.assertEqual(summary["connections"], {"total": 1, "incoming": 0, "outgoing": 1})
        self.assertEqual(summary["points"], {"running": 1})
        _, before, _ = await self.run_cli("--json", "status")
        self.assertEqual(json.loads(before)["peer_id"], summary["peer_id"])

    @async_test
    async def test_lists(self) -> None:
        n = await self.nodes(73)
        peer = str(n.b.pool.peer_id)
        status, out, _ = await self.run_cli("connections")
        header, row = out.splitlines()
        self.assertEqual(header.split(), ["PEER", "ID", "POINT", "DIRECTION", "PRIVATE", "SENT", "RECEIVED", "SINCE"])
        self.assertEqual(row.split()[:4], [peer, str(n.b.point), "outgoing", "no"])
        _, out, _ = await self.run_cli("connections", "--json")
        self.assertEqual([c["peer_id"] for c in json.loads(out)], [peer])
        _, out, _ = await self.run_cli("points")
        self.assertEqual(out.splitlines()[1].split()[:4], [str(n.b.point), "running", "no", peer])
        _, out, _ = await self.run_cli("points", "--json")
        self.assertEqual(json.loads(out)[0][0], str(n.b.point))
        _, out, _ = await self.run_cli("peers")
        self.assertEqual(out.splitlines()[1].split()[:5], [peer, "running", "no", "0", str(n.b.point)])
        _, out, _ = await self.run_cli("peers", "--json")
        self.assertEqual(json.loads(out)[0][1]["state"], "running")

    @async_test
    async def test_empty_lists_and_greylist(self) -> None:
        n = await self.nodes(75, connect=False)
        self.assertEqual((await self.run_cli("connections"))[1], "no connections\n")
        self.assertEqual((await self.run_cli("peers"))[1], "no known peers\n")
        n.a.pool.greylist_addr("10.7.7.7")
        status, out, _ = await self.run_cli("greylist")
        self.assertEqual(status, 0)
        self.assertEqual(out, "greylisted addresses: 1\n  10.7.7.7\ngreylisted peers: 0\n")
        _, out, _ = await self.run_cli("greylist", "--json")
        self.assertEqual(json.loads(out), {"ips": ["10.7.7.7"], "not_reliable_since": None, "peers": []})

    @async_test
    async def test_acl_commands(self) -> None:
        n = await self.nodes(77)
        pool, point, peer = n.a.pool, n.b.point, n.b.pool.peer_id
        self.assertEqual(await self.run_cli("ban", str(point)), (0, f"banned point {point}\n", ""))
        self.assertTrue(pool.points.banned(point))
        await wait_for(lambda: pool.active_connections() == 0)
        self.assertEqual(await self.run_cli("unban", str(point)), (0, f"unbanned point {point}\n", ""))
        self.assertFalse(pool.points.banned(point))
        self.assertEqual((await self.run_cli("trust", str(point)))[1], f"trusted point {point}\n")
        self.assertTrue(pool.points.get_trusted(point))
        pool.greylist_addr(point.ip)
        self.assertEqual((await self.run_cli("unban", str(point)))[1], f"point {point} was not banned\n")
        self.assertFalse(pool.points.banned(point), "the greylisting is lifted all the same")
        self.assertTrue(pool.points.get_trusted(point), "unban keeps a trusted point trusted")
        self.assertEqual((await self.run_cli("untrust", str(point)))[1], f"untrusted point {point}\n")
        self.assertFalse(pool.points.get_trusted(point))
        self.assertEqual((await self.run_cli("untrust", str(point)))[1], f"point {point} is not trusted\n")
        status, out, _ = await self.run_cli("ban", str(peer), "--json")
        self.assertEqual((status, json.loads(out)["trusted"]), (0, False))
        self.assertTrue(pool.peers.banned(peer))
        self.assertEqual((await self.run_cli("unban", str(peer)))[1], f"unbanned peer {peer}\n")
        self.assertFalse(pool.peers.banned(peer))
        self.assertEqual((await self.run_cli("unban", str(peer)))[1], f"peer {peer} was not banned\n")
        self.assertEqual(await self.run_cli("untrust", UNKNOWN_PEER), (0, f"peer {UNKNOWN_PEER} is not trusted\n", ""))
        status, out, _ = await self.run_cli("untrust", UNKNOWN_PEER, "--json")
        self.assertEqual((status, json.loads(out)), (0, {"trusted": False, "known": False}))

    @async_test
    async def test_trust_with_expected_peer_id_and_host_name(self) -> None:
        n = await self.nodes(79, connect=False)
        point = n.b.point
        await self.run_cli("trust", f"{point}#{n.b.pool.peer_id}")
        info = n.a.pool.points.info(point)
        assert info is not None
        self.assertEqual((info.trusted, info.expected_peer_id), (True, n.b.pool.peer_id))
        status, out, _ = await self.run_cli("ban", "localhost:9")
        self.assertEqual(status, 0)
        self.assertIn(out, ("banned point 127.0.0.1:9\n", "banned point [::1]:9\n"))

    @async_test
    async def test_connect_and_disconnect(self) -> None:
        n = await self.nodes(81, connect=False)
        peer = str(n.b.pool.peer_id)
        status, out, _ = await self.run_cli("connect", str(n.b.point), "--timeout", "5")
        self.assertEqual((status, out), (0, f"connected to {peer} at {n.b.point}\n"))
        status, _, err = await self.run_cli("connect", str(n.b.point))
        self.assertEqual(status, 1)
        self.assertIn("(409 connected)", err)
        self.assertEqual(await self.run_cli("disconnect", peer), (0, f"disconnected {peer}\n", ""))
        self.assertEqual(n.a.pool.active_connections(), 0)
        status, _, err = await self.run_cli("disconnect", peer)
        self.assertEqual(status, 1)
        self.assertIn(f"no connection to {peer} (404 not_found)", err)
        closed = Point("127.0.0.81", closed_port(self, "127.0.0.81"))
        status, _, err = await self.run_cli("connect", str(closed))
        self.assertEqual(status, 1)
        self.assertIn("(502 connection_failed)", err)

    @async_test
    async def test_usage_errors(self) -> None:
        await self.nodes(83, connect=False)
        for argv, fragment in (
            (["ban", "nonsense"], "neither a peer id nor a point"),
            (["connect", UNKNOWN_PEER], "connect takes a point"),
            (["disconnect", "idXXX"], "malformed peer id"),
            (["identity", "show"], "not an admin command"),
        ):
            status, _, err = await self.run_cli(*argv)
            self.assertEqual(status, 2, argv)
            self.assertIn(fragment, err)
        self.assertEqual((await self.run_cli("connect", "1.2.3.4:1", "--timeout", "0"))[0], 2)
        self.assertEqual((await self.run_cli("status", url="ftp://x"))[0], 2)

    @async_test
    async def test_unreachable(self) -> None:
        url = f"http://127.0.0.85:{closed_port(self, '127.0.0.85')}"
        status, _, err = await self.run_cli("status", url=url)
        self.assertEqual(status, 3)
        self.assertIn(f"cannot reach the node's admin API at {url}", err)

    @async_test
    async def test_token(self) -> None:
        a = await start_node(self, "127.0.0.86", 56)
        admin = await start_admin(self, a.pool, "127.0.0.86", token=TOKEN)
        self.url = base_url(admin)
        status, _, err = await self.run_cli("status")
        self.assertEqual(status, 1)
        self.assertIn("(401 unauthorized)", err)
        status, out, _ = await self.run_cli("--token", TOKEN, "status")
        self.assertEqual(status, 0)
        self.assertIn(str(a.pool.peer_id), out)
        status, _, err = await self.run_cli("log", "--follow")
        self.assertEqual(status, 1)
        self.assertIn("(401 unauthorized)", err)

    @async_test
    async def test_log(self) -> None:
        n = await self.nodes(87)
        status, out, _ = await self.run_cli("log")
        self.assertEqual(status, 0)
        self.assertRegex(
            out,
            rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\dZ connection_established point={n.b.point} peer_id={n.b.pool.peer_id}",
        )
        _, out, _ = await self.run_cli("log", "--json")
        records = [json.loads(line) for line in out.splitlines()]
        self.assertIn(EventKind.CONNECTION_ESTABLISHED, [r["event"] for r in records])

    @async_test
    async def test_log_follow(self) -> None:
        """
        C{log --follow} prints events as they happen until cancelled; the
        node then forgets the stream.
        """
        n = await self.nodes(89, connect=False)
        out, err = io.StringIO(), io.StringIO()
        running = ensureDeferred(cli.admin_main(["--api", self.url, "log", "-f"], http_client(self), out, err))
        await wait_for(lambda: self.admin.feed.streams == 1)
        n.a.pool.events.emit(EventKind.NEW_PEER, n=42)
        await wait_for(lambda: "new_peer n=42" in out.getvalue())
        running.cancel()
        with self.assertRaises(CancelledError):
            await running
        await wait_for(lambda: self.admin.feed.streams == 0)
        self.assertEqual(err.getvalue(), "")


class _Canned(Resource):
    """
    A node that answers every request with the same JSON.
    """

    isLeaf = True

    def __init__(self, value: Any) -> None:
        super().__init__()
        self._body = json.dumps(value).encode()

    def render(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return self._body


class UnexpectedReplyTests(SynchronousTestCase):
    """
    A reply this version does not understand is a one-line error.
    """

    def run_cli(self, value: Any, *argv: str) -> tuple[int, str]:
        stub = StubTreq(_Canned(value))
        out, err = io.StringIO(), io.StringIO()
        d = ensureDeferred(cli.admin_main(["--api", "http://127.0.0.1:8732", *argv], stub, out, err))
        stub.flush()
        return self.successResultOf(d), err.getvalue()

    def test_ipv6_api_address(self) -> None:
        """
        An admin API on an IPv6 address is reached (treq's URL handling
        alone refuses an IPv6 literal host).
        """
        stub = StubTreq(_Canned([]))
        out, err = io.StringIO(), io.StringIO()
        d = ensureDeferred(cli.admin_main(["--api", "http://[::1]:8732", "connections"], stub, out, err))
        stub.flush()
        self.assertEqual((self.successResultOf(d), err.getvalue()), (cli.EXIT_OK, ""))
        self.assertEqual(out.getvalue(), "no connections\n")

    def test_missing_fields(self) -> None:
        status, err = self.run_cli([{"peer": "x"}], "connections")
        self.assertEqual(status, cli.EXIT_ERROR)
        self.assertEqual(err, "p2pool: error: unexpected reply from the node (KeyError: 'peer_id')\n")

    def test_not_json(self) -> None:
        self.patch(_Canned, "render", lambda self, request: b"<html>a proxy's page</html>")
        status, err = self.run_cli(None, "points")
        self.assertEqual(status, cli.EXIT_ERROR)
        self.assertIn("is not JSON (200 bad_reply)", err)

    def test_http_error_from_another_server(self) -> None:
        def bad_gateway(self: Any, request: Any) -> bytes:
            request.setResponseCode(502)
            return b"<html>bad gateway</html>"

        self.patch(_Canned, "render", bad_gateway)
        status, err = self.run_cli(None, "peers")
        self.assertEqual(status, cli.EXIT_ERROR)
        self.assertEqual(err, "p2pool: error: Bad Gateway from http://127.0.0.1:8732/network/peers (502 http_error)\n")


class SubprocessTests(TestCase):
    """
    C{python -m p2pool.cli} as a user runs it: exit statuses and one-line
    errors, never a traceback.
    """

    timeout = 120

    def spawn(self, *argv: str, env: dict[str, str] | None = None) -> processes.Collect:
        return processes.spawn(self, [*processes.p2pool_cli(), *argv], ROOT.path, processes.environment(**(env or {})))

    async def run_cli(self, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        outcome = await self.spawn(*argv, env=env).ended
        self.assertNotIn("Traceback", outcome.err)
        return outcome.status, outcome.out, outcome.err

    @async_test
    async def test_status_and_errors(self) -> None:
        a = await start_node(self, "127.0.0.91", 57)
        admin = await start_admin(self, a.pool, "127.0.0.91", token=TOKEN)
        url = base_url(admin)
        status, out, _ = await self.run_cli("--api", url, "status", env={cli.TOKEN_ENVIRONMENT: TOKEN})
        self.assertEqual(status, 0)
        self.assertIn(str(a.pool.peer_id), out)
        status, _, err = await self.run_cli("--api", url, "points")
        self.assertEqual((status, err.count("\n")), (1, 1))
        self.assertIn("(401 unauthorized)", err)
        closed = f"http://127.0.0.91:{closed_port(self, '127.0.0.91')}"
        status, _, err = await self.run_cli("--api", closed, "connections")
        self.assertEqual((status, err.count("\n")), (3, 1))
        self.assertTrue(err.startswith(f"p2pool: error: cannot reach the node's admin API at {closed}"), err)
        status, _, err = await self.run_cli("--api", url, "connect")
        self.assertEqual(status, 2)
        self.assertIn("the following arguments are required: POINT", err)

    @async_test
    async def test_interrupted_follow(self) -> None:
        a = await start_node(self, "127.0.0.92", 58)
        admin = await start_admin(self, a.pool, "127.0.0.92")
        protocol = self.spawn("--api", base_url(admin), "log", "--follow")
        await wait_for(lambda: admin.feed.streams == 1)
        a.pool.events.emit(EventKind.NEW_PEER, n=7)
        await wait_for(lambda: b"new_peer n=7" in protocol.out)
        protocol.transport.signalProcess(signal.SIGINT)  # type: ignore[union-attr]
        outcome = await protocol.ended
        self.assertEqual((outcome.status, outcome.err), (cli.EXIT_INTERRUPTED, "p2pool: interrupted\n"))
        await wait_for(lambda: admin.feed.streams == 0)
