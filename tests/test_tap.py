# -*- test-case-name: tests.test_tap -*-
"""
Tests for L{p2pool.daemon.tap} (the twistd command line) and the twistd plugin.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from twisted.application.service import IService, IServiceMaker, Service
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

import p2pool.daemon.tap as tap
from p2pool.config import CONFIG_KEYS, PoolConfig
from p2pool.core.addressing import PeerId, Point, PointSpec

ROOT = FilePath(__file__).parent().parent()
PEER_ID = "idtkW7rxvYCTELjjSt5cKFCqdyF8Fy"

#: For each flag: an argument and the value it must give its key.
FLAG_SAMPLES: dict[str, tuple[str, Any]] = {
    "listen": ("[::]:0", Point("::", 0)),
    "advertised-port": ("19732", 19732),
    "data-dir": ("/srv/p2pool", "/srv/p2pool"),
    "identity-file": ("/keys/id.json", "/keys/id.json"),
    "peers-file": ("/state/peers.json", "/state/peers.json"),
    "network": ("testnet", "testnet"),
    "expected-proof-of-work": ("0.5", 0.5),
    "peer": ("seed.example.org:9732", (PointSpec("seed.example.org", 9732),)),
    "bootstrap-point": ("10.0.0.1:9732", (PointSpec("10.0.0.1", 9732),)),
    "bootstrap-url": ("https://seeds.example.org/points.json", ("https://seeds.example.org/points.json",)),
    "seed-ca-file": ("/etc/p2pool/seed-ca.pem", "/etc/p2pool/seed-ca.pem"),
    "min-connections": ("1", 1),
    "expected-connections": ("40", 40),
    "max-connections": ("60", 60),
    "max-incoming-connections": ("7", 7),
    "max-known-points": ("500,100", (500, 100)),
    "max-known-peer-ids": ("false", None),
    "max-source-group-share": ("0.25", 0.25),
    "source-group-dial-rate": ("0.5", 0.5),
    "source-group-dial-burst": ("3", 3),
    "max-peers-file-size": ("1048576", 1048576),
    "peer-greylist-size": ("12", 12),
    "ip-greylist-size-in-kilobytes": ("16", 16),
    "ip-greylist-cleanup-delay": ("60", 60.0),
    "connection-timeout": ("2.5", 2.5),
    "authentication-timeout": ("3", 3.0),
    "maintenance-idle-time": ("false", None),
    "swap-linger": ("12.5", 12.5),
    "max-concurrent-dials": ("3", 3),
    "max-incoming-connections-per-netgroup": ("4", 4),
    "refusal-log-interval": ("false", None),
    "max-stalled-handshakes": ("5", 5),
    "eviction-protection": ("2", 2),
    "max-message-size": ("65536", 65536),
    "checkpoint-interval": ("30", 30.0),
    "memory-trim-interval": ("false", None),
    "keepalive-interval": ("7", 7.0),
    "send-queue-size": ("65536", 65536),
    "send-queue-budget": ("16777216", 16777216),
    "receive-buffer-budget": ("16777216", 16777216),
    "min-frame-receive-rate": ("4096", 4096),
    "frame-receive-grace": ("2.5", 2.5),
    "send-stall-timeout": ("15", 15.0),
    "close-grace-period": ("0.5", 0.5),
    "max-pending-messages": ("4", 4),
    "max-control-frame-rate": ("50", 50.0),
    "max-upload-speed": ("1000000", 1000000),
    "max-download-speed": ("2000000", 2000000),
    "reconnection-factor": ("2", 2.0),
    "reconnection-initial-delay": ("0.25", 0.25),
    "reconnection-disconnection-delay": ("0", 0.0),
    "reconnection-increase-cap": ("600", 600.0),
    "reconnection-jitter": ("0.5", 0.5),
    "admin": ("127.0.0.1:0", Point("127.0.0.1", 0)),
    "admin-token": ("kT3x-9fQ_2bV~7yZ+mW/1cR=", "kT3x-9fQ_2bV~7yZ+mW/1cR="),
    "admin-tls-certificate": ("/etc/p2pool/admin.pem", "/etc/p2pool/admin.pem"),
    "admin-tls-key": ("/etc/p2pool/admin.key", "/etc/p2pool/admin.key"),
    "log-level": ("debug", "debug"),
    "log-format": ("json", "json"),
    "admin-request-timeout": ("2.5", 2.5),
    "admin-idle-timeout": ("15", 15.0),
    "admin-max-connections": ("8", 8),
    "admin-max-connections-per-address": ("3", 3),
}


def parse(*arguments: str) -> PoolConfig:
    """
    Parse a command line and return its configuration.
    """
    options = tap.Options()
    options.parseOptions(list(arguments))
    return options.config


class OptionsTests(SynchronousTestCase):
    """
    L{tap.Options} turns flags into a L{PoolConfig}.
    """

    def write(self, text: str) -> str:
        path = FilePath(self.mktemp())
        path.setContent(text.encode("utf-8"))
        return path.path

    def test_no_arguments_gives_defaults(self) -> None:
        self.assertEqual(parse(), PoolConfig())

    def test_every_flag_sets_its_key(self) -> None:
        switches = {key.flag for key in CONFIG_KEYS if key.is_switch}
        self.assertEqual(sorted(FLAG_SAMPLES), sorted({key.flag for key in CONFIG_KEYS} - switches))
        for key in CONFIG_KEYS:
            if key.is_switch:
                continue
            text, expected = FLAG_SAMPLES[key.flag]
            config = parse(f"--{key.flag}", text)
            self.assertEqual(key.get(config), expected, key.flag)
            self.assertNotEqual(key.get(config), key.default, key.flag)

    def test_switches(self) -> None:
        config = parse("--private-mode", "--disable-peer-discovery", "--netgroup-cap-exempts-loopback")
        self.assertTrue(config.private_mode)
        self.assertTrue(config.disable_peer_discovery)
        self.assertTrue(config.netgroup_cap_exempts_loopback)

    def test_repeated_peer(self) -> None:
        config = parse("--peer", "10.0.0.1:9732", "--peer", f"[::1]:9733#{PEER_ID}", "--peer", "seed.example:1")
        self.assertEqual(
            config.trusted_points,
            (
                PointSpec("10.0.0.1", 9732),
                PointSpec("::1", 9733, PeerId.parse(PEER_ID)),
                PointSpec("seed.example", 1),
            ),
        )
        self.assertEqual(config.bootstrap_points, ())

    def test_repeated_bootstrap_point(self) -> None:
        config = parse("--bootstrap-point", "1.2.3.4:1", "--bootstrap-point", "1.2.3.5:2")
        self.assertEqual(config.bootstrap_points, (PointSpec("1.2.3.4", 1), PointSpec("1.2.3.5", 2)))
        self.assertEqual(config.trusted_points, ())

    def test_false_values(self) -> None:
        config = parse(
            "--max-known-points", "false", "--swap-linger", "false", "--admin", "false", "--advertised-port", "false"
        )
        self.assertIsNone(config.max_known_points)
        self.assertIsNone(config.swap_linger)
        self.assertIsNone(config.admin.listen)
        self.assertIsNone(config.advertised_port)

    def test_config_file(self) -> None:
        path = self.write('[p2p]\nnetwork = "from-file"\nmax_connections = 80\n')
        config = parse("-c", path)
        self.assertEqual((config.network, config.max_connections), ("from-file", 80))
        self.assertEqual(parse("--config", path), config)

    def test_flag_beats_file_beats_default(self) -> None:
        path = self.write('[p2p]\nnetwork = "from-file"\nmax_connections = 80\ntrusted_points = ["1.1.1.1:1"]\n')
        config = parse("--config", path, "--max-connections", "90", "--peer", "2.2.2.2:2")
        self.assertEqual(config.max_connections, 90)
        self.assertEqual(config.network, "from-file")
        self.assertEqual(config.trusted_points, (PointSpec("2.2.2.2", 2),))
        self.assertEqual(config.min_connections, 10)

    def test_flag_unsets_file_value(self) -> None:
        path = self.write('[p2p]\nmaintenance_idle_time = 5\n[admin]\nlisten = "127.0.0.1:1"\n')
        config = parse("-c", path, "--maintenance-idle-time", "false", "--admin", "false")
        self.assertIsNone(config.maintenance_idle_time)
        self.assertIsNone(config.admin.listen)

    def test_relative_flag_path_uses_cwd(self) -> None:
        path = self.write('[p2p]\ndata_dir = "next-to-file"\n')
        config = parse("-c", path, "--data-dir", "here")
        self.assertEqual(config.data_dir, os.path.join(os.getcwd(), "here"))

    def assert_usage_error(self, arguments: list[str], *fragments: str) -> str:
        """
        Assert that the arguments are refused with a one-line message
        containing C{fragments}.
        """
        error = self.assertRaises(usage.UsageError, parse, *arguments)
        message = str(error)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_bad_integer(self) -> None:
        message = self.assert_usage_error(["--max-connections", "x"], "p2p.max_connections")
        self.assertEqual(message, "--max-connections: p2p.max_connections: expected an integer, got 'x'")

    def test_bad_values_name_key(self) -> None:
        cases = [
            (["--listen", "nowhere"], "--listen: p2p.listen: malformed point 'nowhere'"),
            (["--peer", "1.2.3.4"], "--peer: p2p.trusted_points: malformed point '1.2.3.4': missing ':port'"),
            (["--max-known-points", "400"], "--max-known-points: p2p.max_known_points: expected MAX,TARGET"),
            (["--max-known-peer-ids", "1,2"], "p2p.max_known_peer_ids: max (1) must be >= target (2)"),
            (["--connection-timeout", "soon"], "p2p.connection_timeout: expected a number, got 'soon'"),
            (["--reconnection-jitter", "2"], "p2p.reconnection.jitter: must be between 0 and 1, got 2"),
            (["--admin", "8732"], "--admin: admin.listen: malformed point '8732'"),
            (["--network", ""], "p2p.network: must be 1 to 255 UTF-8 bytes"),
            (["--advertised-port", "0"], "p2p.advertised_port: must be between 1 and 65535"),
        ]
        for arguments, fragment in cases:
            self.assert_usage_error(arguments, fragment)

    def test_cross_key_error(self) -> None:
        message = self.assert_usage_error(["--min-connections", "60"], "p2p.min_connections")
        self.assertEqual(message, "command line: p2p.min_connections: must be <= expected_connections (50), got 60")

    def test_cross_key_error_with_default(self) -> None:
        message = self.assert_usage_error(["--expected-connections", "5"])
        self.assertEqual(message, "p2p.min_connections: must be <= expected_connections (5), got 10 (the default)")

    def test_file_errors(self) -> None:
        missing = os.path.join(self.mktemp(), "none.toml")
        self.assert_usage_error(["-c", missing], missing, "cannot read configuration file")
        bad = self.write("[p2p]\nmax_conections = 3\n")
        self.assert_usage_error(["-c", bad], bad, "p2p.max_conections: unknown key (did you mean p2p.max_connections?)")

    def test_unknown_flag(self) -> None:
        message = self.assert_usage_error(["--max-conections", "3"])
        self.assertEqual(message, "unknown option --max-conections (did you mean --max-connections?)")
        message = self.assert_usage_error(["--frobnicate"])
        self.assertEqual(message, "unknown option --frobnicate")

    def test_switch_given_a_value(self) -> None:
        expected = "--private-mode is a switch and takes no value{}: give --private-mode to turn it on, leave it out to keep it off"
        for arguments, got in (
            (["--private-mode", "false"], " (got 'false')"),
            (["--listen", "127.0.0.1:0", "--private-mode", "true", "--network", "x"], " (got 'true')"),
            (["--priv", "false"], " (got 'false')"),
            (["--private-mode=false"], ""),
        ):
            self.assertEqual(self.assert_usage_error(arguments), expected.format(got), arguments)

    def test_flag_without_its_value(self) -> None:
        self.assertEqual(self.assert_usage_error(["--listen"]), "--listen needs a value: ADDR:PORT")

    def test_stray_argument(self) -> None:
        for arguments in (["node.toml"], ["--network", "a", "node.toml"]):
            message = self.assert_usage_error(arguments)
            self.assertEqual(message, "unexpected argument 'node.toml': options are written --name VALUE")

    def twistd_error(self, *arguments: str) -> str:
        """
        Parse C{twistd -n p2pool ARGUMENTS} as twistd does; return what
        it writes to standard error before exiting with status 2.
        """
        from twisted.scripts.twistd import ServerOptions

        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.patch(sys, "argv", ["/usr/bin/twistd"])
        error = self.assertRaises(SystemExit, ServerOptions().parseOptions, ["-n", "p2pool", *arguments])
        self.assertEqual(error.code, tap.EXIT_USAGE)
        return err.getvalue()

    def test_under_twistd_an_error_and_a_hint_not_the_help(self) -> None:
        hint = "hint: 'twistd p2pool --help' lists every option; docs/CONFIGURATION.md explains each\n"
        self.assertEqual(
            self.twistd_error("--privte-mode"),
            "twistd p2pool: error: unknown option --privte-mode (did you mean --private-mode?)\n" + hint,
        )
        self.assertEqual(
            self.twistd_error("--max-connections", "x"),
            "twistd p2pool: error: --max-connections: p2p.max_connections: expected an integer, got 'x'\n" + hint,
        )
        bad = self.write("[p2p]\nmax_conections = 3\n")
        self.assertEqual(
            self.twistd_error("-c", bad),
            f"twistd p2pool: error: {bad}: p2p.max_conections: unknown key (did you mean p2p.max_connections?)\n"
            + hint,
        )

    def test_help_says_defaults(self) -> None:
        options = tap.Options()
        for key in CONFIG_KEYS:
            doc = options.docs[key.flag]
            default = ("on" if key.default else "off") if key.is_switch else key.format_value(key.default)
            self.assertIn(f"[{key.dotted}; default: {default}]", doc)
        self.assertIn("default: none", options.docs["config"])
        self.assertIn("[p2p.max_known_points; default: 400,300]", " ".join(str(options).split()))

    def test_only_config_has_a_short_option(self) -> None:
        self.assertEqual(tap.Options().shortOpt, "c:")


class MakeServiceTests(SynchronousTestCase):
    """
    L{tap.makeService} hands the configuration to C{p2pool.daemon.node}.
    """

    def test_make_service(self) -> None:
        received: list[PoolConfig] = []
        service = Service()

        def make_node_service(config: PoolConfig) -> Service:
            received.append(config)
            return service

        import p2pool.daemon.node

        self.patch(p2pool.daemon.node, "make_node_service", make_node_service)
        options = tap.Options()
        options.parseOptions(["--network", "made"])
        result = tap.makeService(options)
        self.assertIs(result, service)
        self.assertTrue(IService.providedBy(result))
        self.assertEqual([config.network for config in received], ["made"])


class PluginTests(SynchronousTestCase):
    """
    The twistd plugin is found and points at L{p2pool.daemon.tap}.
    """

    def test_plugin_found(self) -> None:
        makers = [maker for maker in getPlugins(IServiceMaker) if maker.tapname == "p2pool"]
        self.assertEqual(len(makers), 1)
        maker: Any = makers[0]
        self.assertIs(maker.options, tap.Options)
        self.assertIs(maker.makeService, tap.makeService)
        self.assertNotIn("\n", maker.description)

    def test_plugin_directory_is_not_a_package(self) -> None:
        self.assertFalse(ROOT.descendant(["twisted", "__init__.py"]).exists())
        self.assertFalse(ROOT.descendant(["twisted", "plugins", "__init__.py"]).exists())


class TacConfigTests(SynchronousTestCase):
    """
    C{tac/node.tac} and C{tac/gossip.tac} read C{$P2POOL_CONFIG} with
    L{p2pool.daemon.node.load_node_config}: a configuration error stops
    them as it stops C{twistd -n p2pool}, in two lines and with status 2,
    not with a traceback from twistd.
    """

    def test_defaults_without_a_file(self) -> None:
        from p2pool.daemon.node import load_node_config

        self.assertEqual(load_node_config(None), PoolConfig())

    def test_file_read(self) -> None:
        from p2pool.daemon.node import load_node_config

        path = FilePath(self.mktemp())
        path.setContent(b"[p2p]\nnetwork = 'from-file'\n")
        self.assertEqual(load_node_config(path.path).network, "from-file")

    def tac_error(self, tac: str) -> str:
        """
        Load C{tac/<tac>} as C{twistd -ny} does, with C{$P2POOL_CONFIG}
        naming a file with a wrong type; return what it writes to standard
        error before exiting with status 2.
        """
        from twisted.application.service import loadApplication

        from p2pool.daemon.node import EXIT_CONFIG_ERROR

        bad = FilePath(self.mktemp())
        bad.setContent(b"[p2p]\nmax_connections = 'ten'\n")
        self.patch(os, "environ", {**os.environ, "P2POOL_CONFIG": bad.path})
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        error = self.assertRaises(SystemExit, loadApplication, ROOT.descendant(["tac", tac]).path, "python")
        self.assertEqual(error.code, EXIT_CONFIG_ERROR)
        self.assertEqual(
            err.getvalue(),
            f"p2pool: error: {bad.path}: p2p.max_connections: expected an integer, got string 'ten'\n"
            "hint: 'p2pool config show --config FILE' checks a file; docs/CONFIGURATION.md explains each key\n",
        )
        return err.getvalue()

    def test_node_tac(self) -> None:
        self.tac_error("node.tac")

    def test_gossip_tac(self) -> None:
        self.tac_error("gossip.tac")
