# -*- test-case-name: tests.test_operations -*-
"""
What an operator relies on, tried as an operator does: the version
everywhere it is shown, the health routes and process metrics, clean exits
when a node cannot start, short errors for a wrong command line, a quiet
log, bans that can be listed and set by range, and the effective
configuration, printed as TOML the node accepts back (issue 15,
"Operators", items 1 to 7; item 8 is in tests.test_service).
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import re
import socket
import sys
import tomllib
from typing import Any

import attrs
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

import p2pool
import p2pool.cli.commands as cli
import p2pool.daemon.tap as tap
from p2pool._version import version_line
from p2pool.admin import AdminService
from p2pool.config import CONFIG_KEYS, AdminConfig, PoolConfig, config_to_toml, load_config
from p2pool.core.addressing import Point, PointSpec
from p2pool.pool.service import Pool
from tests.adminhelpers import (
    IP_B,
    TOKEN,
    MemoryAdmin,
    base_url,
    http_client,
    start_admin,
)
from tests.helpers import async_test, identity, start_node, wait_for
from tests.processes import SOURCE_ROOT, Collect, p2pool_cli, run, spawn, twistd


class LogCapture:
    """
    Collects the events of C{twisted.logger} while a test runs.
    """

    def __init__(self, test: Any) -> None:
        self.events: list[LogEvent] = []
        observer: Any = self.events.append
        globalLogPublisher.addObserver(observer)
        test.addCleanup(globalLogPublisher.removeObserver, observer)

    def texts(self) -> list[str]:
        return [formatEvent(event) for event in self.events]


class VersionTests(SynchronousTestCase):
    """
    One version, written in C{p2pool/_version.py}, shown everywhere.
    """

    def test_one_source(self) -> None:
        with open(os.path.join(SOURCE_ROOT, "pyproject.toml"), "rb") as f:
            project = tomllib.load(f)
        self.assertNotIn("version", project["project"])
        self.assertIn("version", project["project"]["dynamic"])
        self.assertEqual(project["tool"]["setuptools"]["dynamic"]["version"], {"attr": "p2pool._version.__version__"})
        # A public PEP 440 version (release, pre-, post- and dev-release parts).
        self.assertRegex(p2pool.__version__, r"^[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?$")

    def test_installed_metadata_agrees(self) -> None:
        try:
            installed = importlib.metadata.version("p2pool-twisted")
        except importlib.metadata.PackageNotFoundError:
            raise self.skipTest("p2pool-twisted is not installed here (run from the source tree)") from None
        self.assertEqual(installed, p2pool.__version__)

    def test_version_line(self) -> None:
        import platform

        import twisted

        self.assertEqual(
            version_line(),
            f"p2pool {p2pool.__version__} (Twisted {twisted.__version__}, Python {platform.python_version()})",
        )

    def test_version_route_and_metric(self) -> None:
        h = MemoryAdmin(self)
        result = h.request("GET", "/version")
        self.assertEqual(result.code, 200)
        self.assertEqual(result.json(), {"version": p2pool.__version__, "network": "p2pool-mainnet"})
        metrics = h.request("GET", "/metrics").body.decode()
        self.assertIn(f'version="{p2pool.__version__}"', metrics)

    def test_node_logs_its_version_when_it_starts(self) -> None:
        from p2pool.daemon.node import NodeService

        capture = LogCapture(self)
        config = PoolConfig(
            listen=Point("127.0.0.70", 0),
            expected_proof_of_work=0,
            maintenance_idle_time=None,
            data_dir=self.mktemp(),
            admin=AdminConfig(None),
        )
        service = NodeService(Pool(config, identity=identity(41)))
        service.startService()
        self.addCleanup(service.stopService)
        started = [text for text in capture.texts() if text.startswith(version_line())]
        self.assertEqual(len(started), 1, capture.texts())
        self.assertIn("network p2pool-mainnet, listening on 127.0.0.70:0", started[0])


class VersionCommandTests(TestCase):
    """
    C{--version} of both programs, run as a user runs them.
    """

    timeout = 60

    @async_test
    async def test_p2pool_version(self) -> None:
        outcome = await run(self, [*p2pool_cli(), "--version"])
        self.assertEqual((outcome.status, outcome.out, outcome.err), (0, version_line() + "\n", ""))

    @async_test
    async def test_twistd_plugin_version(self) -> None:
        outcome = await run(self, [*twistd(), "-n", "p2pool", "--version"], cwd=self.mktemp_dir())
        self.assertEqual((outcome.status, outcome.out.strip()), (0, version_line()))
        help = await run(self, [*twistd(), "-n", "p2pool", "--help"], cwd=self.mktemp_dir())
        self.assertIn(f"This is p2pool {p2pool.__version__}.", " ".join(help.out.split()))

    def mktemp_dir(self) -> str:
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        return path


class HealthTests(SynchronousTestCase):
    """
    C{/health/live} and C{/health/ready}, for container orchestrators.
    """

    def test_started_node_is_live_and_ready(self) -> None:
        h = MemoryAdmin(self)
        live = h.request("GET", "/health/live")
        self.assertEqual((live.code, live.json()), (200, {"live": True}))
        ready = h.request("GET", "/health/ready")
        self.assertEqual(
            (ready.code, ready.json()),
            (200, {"ready": True, "checks": {"identity": True, "peers_file": True, "listening": True}}),
        )

    def test_not_ready_until_started(self) -> None:
        h = MemoryAdmin(self)
        pool = h.network.add_pool("10.0.0.3", start=False, maintenance_idle_time=None)
        admin = AdminService(pool, AdminConfig(listen=None), reactor=h.network.reactor("10.0.0.3"))
        h.admin = admin
        from treq.testing import StubTreq

        h.stub = StubTreq(admin.resource)
        ready = h.request("GET", "/health/ready")
        self.assertEqual(ready.code, 503)
        self.assertEqual(
            ready.json(),
            {
                "ready": False,
                "checks": {"identity": True, "peers_file": False, "listening": False},
                "error": "not_ready",
                "detail": "waiting for: peers_file, listening",
            },
        )
        self.assertEqual(h.request("GET", "/health/live").code, 200)
        pool.startService()
        h.network.clock.advance(0)
        self.successResultOf(pool.when_started())
        self.assertEqual(h.request("GET", "/health/ready").code, 200)
        h.network.stop()
        ready = h.request("GET", "/health/ready")
        self.assertEqual((ready.code, ready.json()["checks"]["listening"]), (503, False))

    def test_probes_need_no_token(self) -> None:
        h = MemoryAdmin(self, token=TOKEN)
        for path in ("/health/live", "/health/ready"):
            self.assertEqual(h.request("GET", path, headers={"Host": "node.example"}).code, 200, path)
        self.assertEqual(h.request("GET", "/version").code, 401)
        self.assertEqual(h.request("GET", "/health/other").code, 401)

    def test_process_metrics(self) -> None:
        h = MemoryAdmin(self)
        text = h.request("GET", "/metrics").body.decode()
        self.assertIn("python_info{", text)
        self.assertIn("python_gc_collections_total{", text)
        if not os.path.exists("/proc/self/stat"):
            raise self.skipTest("no /proc: prometheus_client reports no process metrics here")
        for name in (
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_cpu_seconds_total",
        ):
            self.assertRegex(text, f"(?m)^{name} [0-9.e+]+$")


def _temp_dir(test: Any) -> str:
    path = os.path.abspath(test.mktemp())
    os.makedirs(path)
    return path


def _holding(test: Any, ip: str) -> int:
    """
    A port on C{ip} that a listening socket holds until the test ends.
    """
    held = socket.socket()
    test.addCleanup(held.close)
    held.bind((ip, 0))
    held.listen(1)
    return int(held.getsockname()[1])


async def _admin_url(node: Collect, ip: str, timeout: float = 30.0) -> str:
    """
    The URL of the admin API of C{node} (a process started with C{--admin
    IP:0}), learnt from its C{admin API listening} log line.
    """
    pattern = re.compile(rf"admin API listening on (https?://{re.escape(ip)}:\d+)/".encode())
    await wait_for(
        lambda: pattern.search(node.out) or node.ended.called,
        timeout=timeout,
        what=f"the node's 'admin API listening on' line for {ip}",
    )
    match = pattern.search(node.out)
    assert match is not None, f"the node ended without its admin API listening; output:\n{node.out.decode()}"
    return match.group(1).decode()


class StartFailureTests(TestCase):
    """
    A node that cannot start says why in one line, without a traceback,
    and exits with status 1, whatever stops it.
    """

    timeout = 120

    async def node(self, *args: str, pidfile: bool = False) -> tuple[str, str]:
        """
        Run C{twistd -n p2pool} with C{args} in a directory of its own
        until it exits; assert it failed in one line, and return that line
        and the directory.
        """
        cwd = _temp_dir(self)
        argv = [
            *twistd(),
            "-n",
            *([] if pidfile else ["--pidfile="]),
            "--logfile=-",
            "p2pool",
            "--expected-proof-of-work",
            "0",
            *args,
        ]
        outcome = await run(self, argv, cwd=cwd)
        self.assertEqual(outcome.status, 1, outcome.output)
        self.assertNotIn("Traceback", outcome.output)
        errors = [line for line in outcome.output.splitlines() if "could not start" in line or "error:" in line]
        self.assertEqual(len(errors), 1, outcome.output)
        return errors[0], cwd

    @async_test
    async def test_p2p_port_in_use(self) -> None:
        ip = "127.0.0.71"
        port = _holding(self, ip)
        line, cwd = await self.node("--listen", f"{ip}:{port}", "--admin", "false", pidfile=True)
        self.assertTrue(
            line.endswith(
                f"p2pool could not start: p2p.listen {ip}:{port}: address already in use "
                "(another program, perhaps another node, listens there)"
            ),
            line,
        )
        self.assertFalse(os.path.exists(os.path.join(cwd, "twistd.pid")), "the pid file is removed")

    @async_test
    async def test_admin_port_in_use(self) -> None:
        ip = "127.0.0.72"
        port = _holding(self, ip)
        line, _ = await self.node("--listen", f"{ip}:0", "--admin", f"{ip}:{port}")
        self.assertTrue(
            line.endswith(
                f"p2pool could not start: admin.listen {ip}:{port}: address already in use "
                "(another program, perhaps another node, listens there)"
            ),
            line,
        )

    @async_test
    async def test_admin_certificate_missing(self) -> None:
        missing = os.path.join(_temp_dir(self), "admin.pem")
        line, _ = await self.node(
            "--listen", "127.0.0.73:0", "--admin", "127.0.0.73:0", "--admin-tls-certificate", missing
        )
        self.assertIn(f"p2pool could not start: admin.tls_certificate: cannot read {missing}: No such file", line)

    @async_test
    async def test_damaged_identity(self) -> None:
        data_dir = _temp_dir(self)
        with open(os.path.join(data_dir, "identity.json"), "w") as f:
            f.write("{}")
        line, _ = await self.node("--listen", "127.0.0.74:0", "--admin", "false", "--data-dir", data_dir)
        self.assertTrue(line.startswith("p2pool: error: "), line)
        self.assertIn("identity.json", line)

    @async_test
    async def test_connection_limits_above_the_file_limit(self) -> None:
        line, _ = await self.node(
            "--listen",
            "127.0.0.75:0",
            "--admin",
            "false",
            "--max-connections",
            "10000000",
            "--expected-connections",
            "50",
        )
        self.assertTrue(line.startswith("p2pool: error: p2p.max_connections: needs 10000084 file descriptors"), line)


class InterruptedStartTests(TestCase):
    """
    A node stopped while it searches the proof of work of its first
    identity stops as asked: no error, not exit status 1.
    """

    timeout = 60

    @async_test
    async def test_sigterm_during_proof_of_work(self) -> None:
        node = spawn(
            self,
            [
                *twistd(),
                "-n",
                "--pidfile=",
                "p2pool",
                "--listen",
                "127.0.0.84:0",
                "--admin",
                "false",
                "--expected-proof-of-work",
                "60",
            ],
            cwd=_temp_dir(self),
        )
        await wait_for(
            lambda: b"generating one with proof of work" in node.out or node.ended.called,
            what="the node's 'generating one with proof of work' line",
        )
        self.assertIn(b"generating one with proof of work 60", node.out)
        node.signal("TERM")
        outcome = await node.ended
        self.assertEqual(outcome.status, -15, outcome.output)  # twistd ends by the signal it got
        self.assertNotIn("could not start", outcome.output)

    @async_test
    async def test_node_stopped_while_making_its_identity(self) -> None:
        """
        In process: the search ends with an error once the node stops; that
        is logged as an interrupted start, and is no start failure.
        """
        import threading

        import p2pool.pool.service
        from p2pool.core.identity import IdentityError
        from p2pool.daemon.node import NodeService

        release = threading.Event()

        def search(path: str, difficulty: float, should_stop: Any = None, **kwargs: Any) -> Any:
            release.wait(10)
            assert should_stop is not None and should_stop()
            raise IdentityError("proof-of-work search interrupted")

        self.patch(p2pool.pool.service, "load_or_create_identity", search)
        capture = LogCapture(self)
        config = PoolConfig(listen=Point("127.0.0.85", 0), data_dir=self.mktemp(), admin=AdminConfig(None))
        node = NodeService(Pool(config))
        node.startService()
        stopped = node.stopService()
        release.set()
        await stopped
        await wait_for(
            lambda: any("stopped before it had started" in text for text in capture.texts()),
            what="the 'stopped before it had started' log line",
        )
        self.assertIn("p2pool stopped before it had started: proof-of-work search interrupted", capture.texts())
        self.assertIsNone(node.start_error)
        self.assertFalse([text for text in capture.texts() if "could not start" in text])


class CommandLineErrorTests(TestCase):
    """
    A wrong command line under twistd: the error and one hint line, not
    the whole C{--help}.
    """

    timeout = 60

    @async_test
    async def test_switch_given_a_value(self) -> None:
        outcome = await run(self, [*twistd(), "-n", "p2pool", "--private-mode", "false"], cwd=_temp_dir(self))
        self.assertEqual(outcome.status, 2)
        self.assertEqual(outcome.out, "")
        lines = outcome.err.splitlines()
        self.assertEqual(len(lines), 2, outcome.err)
        self.assertEqual(
            lines[0],
            "twistd p2pool: error: --private-mode is a switch and takes no value (got 'false'): "
            "give --private-mode to turn it on, leave it out to keep it off",
        )
        self.assertTrue(lines[1].startswith("hint: 'twistd p2pool --help'"), lines[1])


async def _metric(test: Any, url: str, name: str) -> float:
    """
    The value of an unlabelled sample of C{url}'s metrics (0 if absent).
    """
    response = await http_client(test).get(url + "/metrics")
    text = (await response.content()).decode()
    match = re.search(f"(?m)^{re.escape(name)} ([0-9.e+]+)$", text)
    return float(match.group(1)) if match else 0.0


class QuietLogTests(TestCase):
    """
    A lone node's log at the default level: its start, and no line per
    maintenance round or admin request.
    """

    timeout = 120

    @async_test
    async def test_lone_node_in_json(self) -> None:
        ip = "127.0.0.79"
        node = spawn(
            self,
            [
                *twistd(),
                "-n",
                "--pidfile=",
                "p2pool",
                "--listen",
                f"{ip}:0",
                "--admin",
                f"{ip}:0",
                "--expected-proof-of-work",
                "0",
                "--log-format",
                "json",
            ],
            cwd=_temp_dir(self),
        )
        url = await _admin_url(node, ip)
        rounds = 'p2pool_events_total{event="too_few_connections"}'
        seen = 0.0

        async def two_rounds() -> bool:
            nonlocal seen
            if node.ended.called:
                return True
            seen = await _metric(self, url, rounds)
            return seen >= 2

        # Maintenance reports every 5 s: two rounds take about 10 s when idle.
        await wait_for(two_rounds, timeout=60, step=0.2, what=f"two maintenance rounds counted in {rounds}")
        self.assertGreaterEqual(seen, 2, node.out.decode())
        node.signal("TERM")
        outcome = await node.ended
        self.assertIn(outcome.status, (0, -15), outcome.output)  # twistd ends by the signal it got
        records = [json.loads(line) for line in outcome.out.splitlines()]
        self.assertEqual(
            [r["event"] for r in records if r.get("event") == "too_few_connections"], ["too_few_connections"]
        )
        self.assertEqual([r for r in records if r["level"] == "debug"], [])
        self.assertEqual([r for r in records if "admin API: GET" in r["message"]], [])
        self.assertIn("listening", [r.get("event") for r in records])
        self.assertLess(len(records), 30, outcome.out)


class BanAPITests(SynchronousTestCase):
    """
    C{GET /network/bans} and C{PUT|DELETE /network/bans/ips/<address or
    range>}.
    """

    def setUp(self) -> None:
        self.h = MemoryAdmin(self)

    def bans(self) -> Any:
        result = self.h.request("GET", "/network/bans")
        self.assertEqual(result.code, 200)
        return result.json()

    def test_list_and_ban_a_range(self) -> None:
        self.assertEqual(self.bans(), {"ips": [], "peers": []})
        result = self.h.request("PUT", "/network/bans/ips/192.0.2.0%2F24")
        self.assertEqual((result.code, result.json()), (200, {"ip": "192.0.2.0/24", "disconnected": 0}))
        self.h.request("PUT", "/network/bans/ips/2001:db8::7")
        self.h.request("PATCH", f"/network/peers/{self.h.b.peer_id}", {"acl": "ban"})
        self.assertEqual(self.bans(), {"ips": ["192.0.2.0/24", "2001:db8::7"], "peers": [str(self.h.b.peer_id)]})
        self.assertTrue(self.h.a.acl.banned_addr("192.0.2.200"))
        self.assertFalse(self.h.a.acl.banned_addr("192.0.3.1"))

    def test_range_ban_closes_connections_inside_it(self) -> None:
        self.h.connect()
        result = self.h.request("PUT", "/network/bans/ips/10.0.0.0%2F30")
        self.assertEqual(result.json(), {"ip": "10.0.0.0/30", "disconnected": 1})
        self.h.network.run_until(lambda: self.h.a.active_connections() == 0, timeout=10)
        self.assertFalse(self.h.a.peers.banned(self.h.b.peer_id), "a range ban bans addresses only")
        self.assertTrue(self.h.a.points.banned(Point(IP_B, 9732)))

    def test_unban_exactly_the_entry(self) -> None:
        self.h.request("PUT", "/network/bans/ips/192.0.2.0%2F24")
        self.h.request("PUT", "/network/bans/ips/192.0.2.9")
        result = self.h.request("DELETE", "/network/bans/ips/192.0.2.9")
        self.assertEqual(result.json(), {"ip": "192.0.2.9", "was_banned": True})
        self.assertTrue(self.h.a.acl.banned_addr("192.0.2.9"), "still inside the banned range")
        result = self.h.request("DELETE", "/network/bans/ips/192.0.2.0%2F24")
        self.assertEqual(result.json(), {"ip": "192.0.2.0/24", "was_banned": True})
        self.assertEqual(self.h.request("DELETE", "/network/bans/ips/192.0.2.0%2F24").json()["was_banned"], False)
        self.assertEqual(self.bans(), {"ips": [], "peers": []})

    def test_bad_addresses(self) -> None:
        for text in ("192.0.2.1%2F24", "example.org", "10.0.0.0%2F33", "1.2.3.4:5"):
            result = self.h.request("PUT", f"/network/bans/ips/{text}")
            self.assertEqual((result.code, result.json()["error"]), (400, "malformed_address"), text)
        self.assertEqual(self.bans(), {"ips": [], "peers": []})

    def test_unauthorized_says_how_to_give_the_token(self) -> None:
        h = MemoryAdmin(self, token=TOKEN)
        for headers in (None, {"Authorization": "Bearer wrong-token-0123456789"}):
            detail = h.request("GET", "/network/bans", headers=headers).json()["detail"]
            for way in ("p2pool --token", "$P2POOL_ADMIN_TOKEN", "Authorization: Bearer", "/?access_token="):
                self.assertIn(way, detail)


class BanCommandTests(TestCase):
    """
    C{p2pool bans} and C{p2pool ban|unban} of addresses and ranges against
    a running node.
    """

    timeout = 120

    async def run_cli(self, url: str, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = await cli.admin_main(["--api", url, *argv], http_client(self), out, err)
        return status, out.getvalue(), err.getvalue()

    @async_test
    async def test_ban_a_range(self) -> None:
        a = await start_node(self, "127.0.0.80", 47)
        b = await start_node(self, "127.0.0.81", 48)
        url = base_url(await start_admin(self, a.pool, "127.0.0.80"))
        await a.pool.connect(b.point)
        self.assertEqual(await self.run_cli(url, "bans"), (0, "no bans\n", ""))
        self.assertEqual(
            await self.run_cli(url, "ban", "127.0.0.81/32"), (0, "banned 127.0.0.81 (1 connection closed)\n", "")
        )
        await wait_for(lambda: a.pool.active_connections() == 0)
        self.assertEqual(await self.run_cli(url, "ban", "192.0.2.0/24"), (0, "banned 192.0.2.0/24\n", ""))
        await self.run_cli(url, "ban", str(b.pool.peer_id))
        status, out, _ = await self.run_cli(url, "bans")
        self.assertEqual(
            [line.split() for line in out.splitlines()],
            [["KIND", "BANNED"], ["address", "127.0.0.81"], ["range", "192.0.2.0/24"], ["peer", str(b.pool.peer_id)]],
        )
        status, out, _ = await self.run_cli(url, "bans", "--json")
        self.assertEqual(json.loads(out), {"ips": ["127.0.0.81", "192.0.2.0/24"], "peers": [str(b.pool.peer_id)]})
        self.assertEqual(await self.run_cli(url, "unban", "192.0.2.0/24"), (0, "unbanned 192.0.2.0/24\n", ""))
        self.assertEqual(await self.run_cli(url, "unban", "192.0.2.0/24"), (0, "192.0.2.0/24 was not banned\n", ""))
        status, _, err = await self.run_cli(url, "trust", "192.0.2.0/24")
        self.assertEqual(status, cli.EXIT_USAGE)
        self.assertEqual(
            err, "p2pool: error: trust takes a point (host:port) or a peer id; an address or range can only be banned\n"
        )


def _absolute(config: PoolConfig) -> PoolConfig:
    """
    C{config} with its relative paths made absolute, as the dump writes them.
    """
    for key in CONFIG_KEYS:
        value = key.get(config)
        resolved = key.kind.resolve(value, os.getcwd())
        if resolved != value:
            holder = {"p2p": None, "admin": "admin", "log": "log", "p2p.reconnection": "reconnection"}[key.table]
            if holder is None:
                config = attrs.evolve(config, **{key.name: resolved})
            else:
                config = attrs.evolve(config, **{holder: attrs.evolve(getattr(config, holder), **{key.name: resolved})})
    return config


class EffectiveConfigTests(SynchronousTestCase):
    """
    L{config_to_toml}, C{twistd -n p2pool --dump-config} and C{p2pool config
    show}: the merged configuration as TOML that reads back the same.
    """

    def round_trip(self, config: PoolConfig) -> str:
        text = config_to_toml(config)
        path = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        self.assertEqual(load_config(path), _absolute(config))
        self.assertEqual(config_to_toml(load_config(path)), text, "a fixpoint")
        return text

    def test_defaults(self) -> None:
        text = self.round_trip(PoolConfig())
        document = tomllib.loads(text)
        self.assertEqual(list(document), ["p2p", "admin", "log"])
        self.assertEqual(document["p2p"]["data_dir"], os.path.abspath("p2pool-data"))
        self.assertEqual(document["admin"]["listen"], "127.0.0.1:8732")

    def test_every_key_changed(self) -> None:
        from tests.test_tap import FLAG_SAMPLES

        arguments = [
            a
            for flag, (text, _) in FLAG_SAMPLES.items()
            if flag not in ("admin", "admin-token")
            for a in (f"--{flag}", text)
        ]
        switches = [f"--{key.flag}" for key in CONFIG_KEYS if key.is_switch]
        options = tap.Options()
        options.parseOptions([*arguments, *switches, "--admin-token", "kT3x-9fQ_2bV~7yZ+mW/1cR="])
        self.round_trip(options.config)

    def test_awkward_strings(self) -> None:
        config = PoolConfig(
            network='quote " backslash \\ réseau 网络 😀',
            data_dir="/srv/p2pool data/\x7f\x01#[x]",
            trusted_points=(
                PointSpec.parse("seed.example.org:9732"),
                PointSpec.parse("[2001:db8::1]:9732#idtkW7rxvYCTELjjSt5cKFCqdyF8Fy"),
            ),
            bootstrap_urls=("https://seeds.example.org/points.json?net=a&b=c",),
            max_known_points=None,
        )
        self.round_trip(config)

    def dump(self, *arguments: str) -> tuple[int, str]:
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        error = self.assertRaises(SystemExit, tap.Options().parseOptions, [*arguments, "--dump-config"])
        return error.code, out.getvalue()

    def test_dump_config_flag(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write('[p2p]\nmax_connections = 80\n[log]\nformat = "json"\n')
        status, text = self.dump("--config", path, "--network", "flagged")
        self.assertEqual(status, 0)
        header, body = text.split("\n\n", 1)
        self.assertEqual(
            header,
            f"# p2pool {p2pool.__version__}: the effective configuration: the built-in defaults, then {path}, "
            "then the command line.",
        )
        document = tomllib.loads(body)
        self.assertEqual((document["p2p"]["max_connections"], document["p2p"]["network"]), (80, "flagged"))
        self.assertEqual(document["log"]["format"], "json")
        self.assertEqual(
            self.dump()[1].splitlines()[0],
            f"# p2pool {p2pool.__version__}: the effective configuration: the built-in defaults.",
        )

    def test_token_is_flagged(self) -> None:
        _, text = self.dump("--admin-token", TOKEN)
        self.assertIn("# It holds the admin token: keep it private.", text)
        self.assertEqual(tomllib.loads(text)["admin"]["token"], TOKEN)

    def test_config_show(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        self.assertEqual(cli.main(["config", "show", "--max-connections", "70", "-c", os.devnull]), 0)
        self.assertEqual(tomllib.loads(out.getvalue())["p2p"]["max_connections"], 70)
        self.assertEqual(err.getvalue(), "")
        out.truncate(0)
        self.assertEqual(cli.main(["config", "show", "--private-mode", "false"]), cli.EXIT_USAGE)
        self.assertTrue(
            err.getvalue().startswith("p2pool: error: --private-mode is a switch and takes no value"), err.getvalue()
        )


class EffectiveConfigProcessTests(TestCase):
    """
    The round trip with the programs: C{p2pool config show} writes a file,
    C{twistd -n p2pool --config FILE --dump-config} prints the same
    settings, and a node runs from that file until it is ready.
    """

    timeout = 120

    @async_test
    async def test_round_trip(self) -> None:
        ip = "127.0.0.82"
        cwd = _temp_dir(self)
        flags = [
            "--listen",
            f"{ip}:0",
            "--admin",
            f"{ip}:0",
            "--expected-proof-of-work",
            "0",
            "--network",
            "round-trip",
            "--max-connections",
            "60",
            "--peer",
            "127.0.0.83:9732",
            "--log-format",
            "json",
        ]
        shown = await run(self, [*p2pool_cli(), "config", "show", *flags], cwd=cwd)
        self.assertEqual((shown.status, shown.err), (0, ""))
        path = os.path.join(cwd, "effective.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(shown.out)
        dumped = await run(self, [*twistd(), "-n", "p2pool", "--config", path, "--dump-config"], cwd=cwd)
        self.assertEqual(dumped.status, 0, dumped.output)
        self.assertEqual(tomllib.loads(dumped.out), tomllib.loads(shown.out))
        self.assertEqual(dumped.out.split("\n\n", 1)[1], shown.out.split("\n\n", 1)[1])

        node = spawn(self, [*twistd(), "-n", "--pidfile=", "p2pool", "--config", path], cwd=cwd)
        url = await _admin_url(node, ip) + "/health/ready"
        ready: tuple[int, Any] | None = None

        async def is_ready() -> bool:
            nonlocal ready
            if node.ended.called:
                return True
            response = await http_client(self).get(url)
            code: int = response.code
            ready = (code, json.loads(await response.content()))
            return code == 200

        await wait_for(is_ready, timeout=60, step=0.2, what=f"{url} answering 200")
        self.assertEqual(
            ready, (200, {"ready": True, "checks": {"identity": True, "peers_file": True, "listening": True}})
        )
        node.signal("TERM")
        outcome = await node.ended
        records = [json.loads(line) for line in outcome.out.splitlines()]
        started = [r for r in records if r["namespace"] == "p2pool.daemon.node.NodeService"]
        self.assertIn("network round-trip", started[0]["message"])
