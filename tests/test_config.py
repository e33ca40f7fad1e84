# -*- test-case-name: tests.test_config -*-
"""
Tests for L{p2pool.config}: defaults, TOML reading, validation, overrides,
relative paths, maintenance bounds and the open-file budget.
"""

from __future__ import annotations

import os
import pathlib
import re
import tomllib
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from p2pool.config import (
    CONFIG_KEYS,
    FILE_DESCRIPTOR_HEADROOM,
    AdminConfig,
    ConfigError,
    LogConfig,
    PoolConfig,
    ReconnectionConfig,
    check_file_budget,
    config_from_mapping,
    file_descriptors_needed,
    load_config,
    raise_file_limit,
)
from p2pool.core.addressing import PeerId, Point, PointSpec

ROOT = FilePath(__file__).parent().parent()
PEER_ID = "idtkW7rxvYCTELjjSt5cKFCqdyF8Fy"


def _document(dotted: str, value: Any) -> dict[str, Any]:
    """
    A TOML-like document setting one dotted key.
    """
    *tables, name = dotted.split(".")
    document: dict[str, Any] = {name: value}
    for table in reversed(tables):
        document = {table: document}
    return document


class ConfigTestMixin:
    """
    Helpers shared by the test cases.
    """

    def write(self: Any, text: str, name: str = "node.toml") -> str:
        """
        Write C{text} to a new file called C{name} in a new directory.
        """
        directory = FilePath(self.mktemp())
        directory.makedirs()
        path = directory.child(name)
        path.setContent(text.encode("utf-8"))
        return path.path

    def refused(self: Any, data: Any, source: str = "<config>") -> ConfigError:
        """
        Assert that C{config_from_mapping} refuses C{data}, and that the message
        names the source; return the error.
        """
        error: ConfigError = self.assertRaises(ConfigError, config_from_mapping, data, source=source)
        self.assertTrue(str(error).startswith(f"{source}: "), str(error))
        return error


class DefaultsTests(SynchronousTestCase):
    """
    The defaults are those of the contract (ARCHITECTURE A4, Tezos section 9).
    """

    def test_pool_defaults(self) -> None:
        config = PoolConfig()
        self.assertEqual(config.listen, Point("0.0.0.0", 9732))
        self.assertIsNone(config.advertised_port)
        self.assertEqual(config.data_dir, "p2pool-data")
        self.assertEqual(config.network, "p2pool-mainnet")
        self.assertEqual(config.expected_proof_of_work, 16.0)
        self.assertEqual((config.trusted_points, config.bootstrap_points), ((), ()))
        self.assertFalse(config.private_mode)
        self.assertEqual((config.min_connections, config.expected_connections, config.max_connections), (10, 50, 100))
        self.assertEqual(config.max_incoming_connections, 20)
        self.assertEqual(config.max_known_points, (400, 300))
        self.assertEqual(config.max_known_peer_ids, (400, 300))
        self.assertEqual(config.max_source_group_share, 0.1)
        self.assertEqual((config.source_group_dial_rate, config.source_group_dial_burst), (1.0, 10))
        self.assertEqual(config.max_peers_file_size, "auto")
        self.assertEqual(config.peers_file_size_limit, 1024 * 1024 + 400 * 64 * 1024 + 400 * 1024)
        self.assertEqual(config.peer_greylist_size, 1023)
        self.assertEqual(config.ip_greylist_size_in_kilobytes, 2048)
        self.assertEqual(config.ip_greylist_cleanup_delay, 86400.0)
        self.assertEqual((config.connection_timeout, config.authentication_timeout), (10.0, 5.0))
        self.assertEqual((config.maintenance_idle_time, config.swap_linger), (120.0, 30.0))
        self.assertFalse(config.disable_peer_discovery)
        self.assertEqual(config.max_message_size, 8388608)
        self.assertEqual(config.checkpoint_interval, 300.0)

    def test_reconnection_and_admin_defaults(self) -> None:
        config = PoolConfig()
        self.assertEqual(attrs.astuple(config.reconnection), (1.2, 1.0, 60.0, 172800.0, 0.1))
        self.assertEqual(config.admin, AdminConfig(Point("127.0.0.1", 8732)))

    def test_default_paths_inside_data_dir(self) -> None:
        config = PoolConfig()
        self.assertEqual(config.identity_path, os.path.join("p2pool-data", "identity.json"))
        self.assertEqual(config.peers_path, os.path.join("p2pool-data", "peers.json"))

    def test_explicit_paths(self) -> None:
        config = PoolConfig(identity_file="/keys/id.json", peers_file="/state/p.json")
        self.assertEqual((config.identity_path, config.peers_path), ("/keys/id.json", "/state/p.json"))

    def test_path_objects(self) -> None:
        """
        A C{pathlib.Path} (any C{os.PathLike}) is a path, kept as a string.
        """
        config = PoolConfig(data_dir=pathlib.Path("/var/p2pool"), peers_file=pathlib.PurePosixPath("/state/p.json"))
        self.assertEqual((config.data_dir, config.peers_path), ("/var/p2pool", "/state/p.json"))
        self.assertEqual(config.identity_path, os.path.join("/var/p2pool", "identity.json"))
        with self.assertRaises(ConfigError) as raised:
            PoolConfig(data_dir=b"/var/p2pool")  # type: ignore[arg-type]
        self.assertEqual(str(raised.exception), "p2p.data_dir: expected a path, got bytes b'/var/p2pool'")

    def test_empty_document(self) -> None:
        self.assertEqual(config_from_mapping({}), PoolConfig())
        self.assertEqual(config_from_mapping({"p2p": {"reconnection": {}}, "admin": {}}), PoolConfig())

    def test_no_file(self) -> None:
        self.assertEqual(load_config(None), PoolConfig())

    def test_keys_match_fields(self) -> None:
        """
        L{CONFIG_KEYS} describes every field once, with unique flags.
        """
        fields = {("p2p", f.name) for f in attrs.fields(PoolConfig) if f.name not in ("reconnection", "admin", "log")}
        fields |= {("p2p.reconnection", f.name) for f in attrs.fields(ReconnectionConfig)}
        fields |= {("admin", f.name) for f in attrs.fields(AdminConfig)}
        fields |= {("log", f.name) for f in attrs.fields(LogConfig)}
        keys = [(key.table, key.name) for key in CONFIG_KEYS]
        self.assertEqual(sorted(keys), sorted(fields))
        flags = [key.flag for key in CONFIG_KEYS]
        self.assertEqual(len(flags), len(set(flags)))


class ExampleFilesTests(SynchronousTestCase):
    """
    The shipped example configuration and the documentation agree with the code.
    """

    def test_tac_node_toml_is_the_defaults(self) -> None:
        path = ROOT.descendant(["tac", "node.toml"]).path
        with open(path, "rb") as f:
            document = tomllib.load(f)
        self.assertEqual(config_from_mapping(document, source=path), PoolConfig())
        for key in CONFIG_KEYS:
            table: Any = document
            for part in key.table.split("."):
                table = table[part]
            self.assertIn(key.name, table, f"tac/node.toml lacks {key.dotted}")

    def test_tac_node_toml_paths_relative_to_file(self) -> None:
        path = ROOT.descendant(["tac", "node.toml"]).path
        config = load_config(path)
        self.assertEqual(config.data_dir, os.path.join(os.path.dirname(os.path.abspath(path)), "p2pool-data"))

    def test_documentation_names_every_key_and_flag(self) -> None:
        text = ROOT.descendant(["docs", "CONFIGURATION.md"]).getContent().decode("utf-8")
        for key in CONFIG_KEYS:
            self.assertIn(f"`{key.name}`", text)
            self.assertIn(f"`--{key.flag}", text)

    def test_documentation_example_is_valid(self) -> None:
        text = ROOT.descendant(["docs", "CONFIGURATION.md"]).getContent().decode("utf-8")
        example = text.split("## Example `node.toml`", 1)[1]
        match = re.search(r"```toml\n(.*?)```", example, re.S)
        assert match is not None
        config = config_from_mapping(tomllib.loads(match.group(1)), source="CONFIGURATION.md")
        self.assertEqual(config.listen, Point("127.0.0.2", 9732))
        self.assertEqual(config.trusted_points[1].expected_peer_id, PeerId.parse(PEER_ID))
        self.assertIsNone(config.max_known_peer_ids)
        self.assertEqual(config.maintenance_bounds(), (12, 16, 28, 34))


class FullFileTests(ConfigTestMixin, SynchronousTestCase):
    """
    A file setting every key is read into the matching configuration.
    """

    FULL = f"""
[p2p]
listen = "[::]:0"
advertised_port = 19732
data_dir = "/srv/p2pool"
identity_file = "/keys/identity.json"
peers_file = "/state/peers.json"
network = "réseau-test"
expected_proof_of_work = 0
trusted_points = ["seed.example.org:9732", "10.0.0.1:9733#{PEER_ID}"]
bootstrap_points = ["[2001:db8::1]:9732"]
private_mode = true
min_connections = 3
expected_connections = 6
max_connections = 9
max_incoming_connections = 4
max_known_points = [50, 40]
max_known_peer_ids = false
peer_greylist_size = 7
ip_greylist_size_in_kilobytes = 8191
ip_greylist_cleanup_delay = 60
connection_timeout = 2.5
authentication_timeout = 1
maintenance_idle_time = false
swap_linger = false
disable_peer_discovery = true
max_message_size = 1073741824
receive_buffer_budget = 2147483648
checkpoint_interval = 1.5

[p2p.reconnection]
factor = 2
initial_delay = 0.5
disconnection_delay = 0
increase_cap = 10
jitter = 0

[admin]
listen = false
"""

    def test_full_file(self) -> None:
        config = load_config(self.write(self.FULL))
        self.assertEqual(config.listen, Point("::", 0))
        self.assertEqual(config.advertised_port, 19732)
        self.assertEqual(
            (config.data_dir, config.identity_path, config.peers_path),
            ("/srv/p2pool", "/keys/identity.json", "/state/peers.json"),
        )
        self.assertEqual(config.network, "réseau-test")
        self.assertEqual(config.expected_proof_of_work, 0.0)
        self.assertEqual(
            config.trusted_points,
            (PointSpec("seed.example.org", 9732), PointSpec("10.0.0.1", 9733, PeerId.parse(PEER_ID))),
        )
        self.assertEqual(config.bootstrap_points, (PointSpec("2001:db8::1", 9732),))
        self.assertTrue(config.private_mode)
        self.assertEqual((config.min_connections, config.expected_connections, config.max_connections), (3, 6, 9))
        self.assertEqual(config.max_incoming_connections, 4)
        self.assertEqual((config.max_known_points, config.max_known_peer_ids), ((50, 40), None))
        self.assertEqual((config.peer_greylist_size, config.ip_greylist_size_in_kilobytes), (7, 8191))
        self.assertEqual(config.ip_greylist_cleanup_delay, 60.0)
        self.assertEqual((config.connection_timeout, config.authentication_timeout), (2.5, 1.0))
        self.assertEqual((config.maintenance_idle_time, config.swap_linger), (None, None))
        self.assertTrue(config.disable_peer_discovery)
        self.assertEqual((config.max_message_size, config.receive_buffer_budget), (2**30, 2**31))
        self.assertEqual(config.checkpoint_interval, 1.5)
        self.assertEqual(config.reconnection, ReconnectionConfig(2.0, 0.5, 0.0, 10.0, 0.0))
        self.assertIsNone(config.admin.listen)

    def test_integers_become_floats(self) -> None:
        config = config_from_mapping({"p2p": {"connection_timeout": 3, "reconnection": {"factor": 2}}})
        self.assertIsInstance(config.connection_timeout, float)
        self.assertIsInstance(config.reconnection.factor, float)
        self.assertEqual((config.connection_timeout, config.reconnection.factor), (3.0, 2.0))


class TypeErrorTests(ConfigTestMixin, SynchronousTestCase):
    """
    A value of the wrong type is refused with its dotted key named.
    """

    CASES: list[tuple[str, Any, str]] = [
        ("p2p.listen", 9732, "expected a point"),
        ("p2p.listen", "localhost:9732", "not an IP address"),
        ("p2p.listen", "1.2.3.4", "missing ':port'"),
        ("p2p.advertised_port", "9732", "expected an integer or false, got string '9732'"),
        ("p2p.advertised_port", True, "got boolean true"),
        ("p2p.data_dir", 3, "expected a path, got integer 3"),
        ("p2p.identity_file", ["a"], "expected a path or false"),
        ("p2p.network", 1, "expected a string, got integer 1"),
        ("p2p.expected_proof_of_work", "16", "expected a number, got string '16'"),
        ("p2p.expected_proof_of_work", True, "got boolean true"),
        ("p2p.trusted_points", "1.2.3.4:9732", "expected an array of points"),
        ("p2p.trusted_points", [1], "expected a string, got integer 1"),
        ("p2p.bootstrap_points", ["1.2.3.4:9732", "nope"], "item 1: malformed point 'nope'"),
        ("p2p.private_mode", 1, "expected true or false, got integer 1"),
        ("p2p.private_mode", "yes", "expected true or false, got string 'yes'"),
        ("p2p.min_connections", True, "expected an integer, got boolean true"),
        ("p2p.max_connections", 10.0, "expected an integer, got float 10.0"),
        ("p2p.max_connections", "100", "expected an integer, got string '100'"),
        ("p2p.max_known_points", 400, "expected [max, target] (two integers) or false"),
        ("p2p.max_known_points", [400], "expected [max, target]"),
        ("p2p.max_known_points", [400, "300"], "expected [max, target]"),
        ("p2p.max_known_peer_ids", [400, True], "expected [max, target]"),
        ("p2p.max_known_peer_ids", True, "got boolean true"),
        ("p2p.connection_timeout", "10s", "expected a number, got string '10s'"),
        ("p2p.maintenance_idle_time", True, "expected a number or false, got boolean true"),
        ("p2p.swap_linger", "never", "expected a number or false, got string 'never'"),
        ("p2p.disable_peer_discovery", "false", "expected true or false"),
        ("p2p.max_message_size", 1.5, "expected an integer"),
        ("p2p.reconnection.factor", "1.2", "expected a number"),
        ("p2p.reconnection.jitter", False, "expected a number, got boolean false"),
        ("admin.listen", True, "expected a point like '1.2.3.4:9732' or false, got boolean true"),
        ("admin.listen", 8732, "or false, got integer 8732"),
    ]

    def test_wrong_types(self) -> None:
        for dotted, value, detail in self.CASES:
            error = self.refused(_document(dotted, value))
            self.assertEqual(error.key, dotted, (dotted, value))
            self.assertIn(f"{dotted}: ", str(error), (dotted, value))
            self.assertIn(detail, str(error), (dotted, value))

    def test_table_that_is_not_a_table(self) -> None:
        for document, dotted in [
            ({"p2p": 3}, "p2p"),
            ({"p2p": {"reconnection": [1]}}, "p2p.reconnection"),
            ({"admin": "127.0.0.1:8732"}, "admin"),
        ]:
            error = self.refused(document)
            self.assertEqual(error.key, dotted)
            self.assertIn("expected a table", str(error))

    def test_top_level_not_a_table(self) -> None:
        error = self.refused([("p2p", {})])
        self.assertIsNone(error.key)
        self.assertIn("expected a table of settings", str(error))


class RangeErrorTests(ConfigTestMixin, SynchronousTestCase):
    """
    A value of the right type but out of range is refused with the range.
    """

    CASES: list[tuple[str, Any, str]] = [
        ("p2p.listen", "1.2.3.4:65536", "port must be 0-65535"),
        ("p2p.advertised_port", 0, "must be between 1 and 65535, got 0"),
        ("p2p.advertised_port", 65536, "must be between 1 and 65535, got 65536"),
        ("p2p.data_dir", "", "non-empty path"),
        ("p2p.network", "", "must be 1 to 255 UTF-8 bytes, got 0"),
        ("p2p.network", "é" * 128, "must be 1 to 255 UTF-8 bytes, got 256"),
        ("p2p.network", "main\nnet", "must be printable"),
        ("p2p.expected_proof_of_work", 256.5, "must be between 0 and 256, got 256.5"),
        ("p2p.expected_proof_of_work", -1, "must be between 0 and 256, got -1"),
        ("p2p.expected_proof_of_work", float("nan"), "expected a finite number"),
        ("p2p.trusted_points", ["1.2.3.4:0"], "port 0 cannot be dialled"),
        ("p2p.min_connections", -1, "must be >= 0, got -1"),
        ("p2p.max_incoming_connections", -5, "must be >= 0, got -5"),
        ("p2p.peer_greylist_size", 0, "must be >= 1, got 0"),
        ("p2p.ip_greylist_size_in_kilobytes", 0, "must be between 1 and 8191, got 0"),
        ("p2p.ip_greylist_size_in_kilobytes", 8192, "must be between 1 and 8191, got 8192"),
        ("p2p.ip_greylist_cleanup_delay", 0, "must be > 0, got 0"),
        ("p2p.connection_timeout", -0.5, "must be > 0, got -0.5"),
        ("p2p.authentication_timeout", 0, "must be > 0, got 0"),
        ("p2p.maintenance_idle_time", 0, "must be > 0, got 0"),
        ("p2p.swap_linger", float("inf"), "expected a finite number"),
        ("p2p.max_message_size", 0, "must be between 1 and 1073741824, got 0"),
        ("p2p.max_message_size", 2**30 + 1, "must be between 1 and 1073741824"),
        ("p2p.checkpoint_interval", 0, "must be > 0, got 0"),
        ("p2p.reconnection.factor", 0.5, "must be >= 1, got 0.5"),
        ("p2p.reconnection.initial_delay", 0, "must be > 0, got 0"),
        ("p2p.reconnection.disconnection_delay", -1, "must be >= 0, got -1"),
        ("p2p.reconnection.jitter", 1.5, "must be between 0 and 1, got 1.5"),
        ("p2p.max_source_group_share", 0, "must be > 0, got 0"),
        ("p2p.max_source_group_share", 1.5, "must be <= 1, got 1.5"),
        ("p2p.source_group_dial_rate", 0, "must be > 0, got 0"),
        ("p2p.source_group_dial_burst", 0, "must be >= 1, got 0"),
        ("p2p.min_frame_receive_rate", 0, "must be between 1 and 1099511627776, got 0"),
        ("p2p.min_frame_receive_rate", 0.5, "expected an integer"),
        ("p2p.frame_receive_grace", 0, "must be > 0, got 0"),
        ("p2p.frame_receive_grace", -2.5, "must be > 0, got -2.5"),
        ("p2p.frame_receive_grace", float("inf"), "expected a finite number"),
        ("admin.listen", "127.0.0.1", "missing ':port'"),
    ]

    def test_out_of_range(self) -> None:
        for dotted, value, detail in self.CASES:
            error = self.refused(_document(dotted, value))
            self.assertEqual(error.key, dotted, (dotted, value))
            self.assertIn(detail, str(error), (dotted, value))

    def test_boundaries_accepted(self) -> None:
        config = config_from_mapping(
            {
                "p2p": {
                    "advertised_port": 65535,
                    "expected_proof_of_work": 256,
                    "ip_greylist_size_in_kilobytes": 1,
                    "max_message_size": 1,
                    "network": "x" * 255,
                    "listen": "127.0.0.1:0",
                    "reconnection": {"factor": 1, "jitter": 1},
                },
            }
        )
        self.assertEqual((config.advertised_port, config.expected_proof_of_work), (65535, 256.0))
        self.assertEqual((config.ip_greylist_size_in_kilobytes, config.max_message_size), (1, 1))
        self.assertEqual(config.listen.port, 0)
        self.assertEqual((config.reconnection.factor, config.reconnection.jitter), (1.0, 1.0))

    def test_frame_receive_pace(self) -> None:
        """
        C{min_frame_receive_rate} and C{frame_receive_grace} are checked
        from Python as from a file, the error naming the key; their
        defaults are 64 KiB/s and 10 s.
        """
        error = self.assertRaises(ConfigError, PoolConfig, min_frame_receive_rate=0)
        self.assertEqual(error.key, "p2p.min_frame_receive_rate")
        error = self.assertRaises(ConfigError, PoolConfig, frame_receive_grace=0.0)
        self.assertEqual(error.key, "p2p.frame_receive_grace")
        error = self.refused({"p2p": {"min_frame_receive_rate": True}})
        self.assertEqual(error.key, "p2p.min_frame_receive_rate")
        config = config_from_mapping({"p2p": {"min_frame_receive_rate": 1, "frame_receive_grace": 0.25}})
        self.assertEqual((config.min_frame_receive_rate, config.frame_receive_grace), (1, 0.25))
        self.assertEqual((PoolConfig().min_frame_receive_rate, PoolConfig().frame_receive_grace), (65536, 10.0))

    def test_increase_cap_below_initial_delay(self) -> None:
        error = self.refused({"p2p": {"reconnection": {"initial_delay": 5, "increase_cap": 4}}})
        self.assertEqual(str(error), "<config>: p2p.reconnection.increase_cap: must be >= initial_delay (5), got 4")


class UnknownNameTests(ConfigTestMixin, SynchronousTestCase):
    """
    Unknown keys and tables are refused and named, with a hint when close.
    """

    def test_misspelt_key(self) -> None:
        error = self.refused({"p2p": {"max_conections": 3}}, source="node.toml")
        self.assertEqual(error.key, "p2p.max_conections")
        self.assertEqual(str(error), "node.toml: p2p.max_conections: unknown key (did you mean p2p.max_connections?)")

    def test_key_in_wrong_table(self) -> None:
        error = self.refused({"p2p": {"jitter": 0.2}})
        self.assertIn("p2p.jitter: unknown key (did you mean p2p.reconnection.jitter?)", str(error))

    def test_key_outside_tables(self) -> None:
        error = self.refused({"max_connections": 3})
        self.assertIn("max_connections: unknown key (did you mean p2p.max_connections?)", str(error))

    def test_unrelated_key_has_no_hint(self) -> None:
        error = self.refused({"p2p": {"colour": "blue"}})
        self.assertEqual(str(error), "<config>: p2p.colour: unknown key")

    def test_misspelt_table(self) -> None:
        error = self.refused({"p2pp": {"listen": "1.2.3.4:1"}})
        self.assertEqual(str(error), "<config>: p2pp: unknown table (did you mean p2p?)")

    def test_misspelt_subtable(self) -> None:
        error = self.refused({"p2p": {"reconection": {"factor": 2}}})
        self.assertIn("p2p.reconection: unknown table (did you mean p2p.reconnection?)", str(error))

    def test_unrelated_table_lists_tables(self) -> None:
        error = self.refused({"logging": {"level": "debug"}})
        self.assertIn("logging: unknown table (the tables are [p2p], [p2p.reconnection], [admin], [log])", str(error))

    def test_unknown_key_in_file_names_file(self) -> None:
        path = self.write("[admin]\nlisten = false\nport = 3\n")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(error), f"{path}: admin.port: unknown key")


class OrderingTests(ConfigTestMixin, SynchronousTestCase):
    """
    C{min_connections <= expected_connections <= max_connections}, and
    C{receive_buffer_budget >= max_message_size + 5}.
    """

    def test_max_below_expected(self) -> None:
        error = self.refused({"p2p": {"max_connections": 20}}, source="node.toml")
        self.assertEqual(error.key, "p2p.max_connections")
        self.assertEqual(str(error), "node.toml: p2p.max_connections: must be >= expected_connections (50), got 20")

    def test_min_above_expected(self) -> None:
        error = self.refused({"p2p": {"min_connections": 60}})
        self.assertEqual(str(error), "<config>: p2p.min_connections: must be <= expected_connections (50), got 60")

    def test_expected_above_max(self) -> None:
        error = self.refused({"p2p": {"expected_connections": 101}})
        self.assertEqual(error.key, "p2p.max_connections")
        self.assertIn("must be >= expected_connections (101), got 100 (the default)", str(error))

    def test_receive_budget_holds_a_whole_frame(self) -> None:
        """
        C{receive_buffer_budget} is at least one frame of C{max_message_size}
        with its 5-byte header, whichever key is set.
        """
        error = self.refused({"p2p": {"max_message_size": 1000, "receive_buffer_budget": 1004}})
        self.assertEqual(
            str(error),
            "<config>: p2p.receive_buffer_budget: must be >= max_message_size (1000) + 5 "
            "(a whole frame with its header), got 1004",
        )
        error = self.refused({"p2p": {"max_message_size": 2**30}})
        self.assertEqual(error.key, "p2p.receive_buffer_budget")
        self.assertIn("max_message_size (1073741824) + 5", str(error))
        self.assertIn("got 268435456 (the default)", str(error))
        config = config_from_mapping({"p2p": {"max_message_size": 1000, "receive_buffer_budget": 1005}})
        self.assertEqual(config.receive_buffer_budget, 1005)
        self.assertEqual(PoolConfig().receive_buffer_budget, 256 * 1024 * 1024)

    def test_equal_counts_accepted(self) -> None:
        config = config_from_mapping({"p2p": {"min_connections": 0, "expected_connections": 0, "max_connections": 0}})
        self.assertEqual(config.maintenance_bounds(), (0, 0, 0, 0))

    def test_direct_construction_checked(self) -> None:
        error = self.assertRaises(ConfigError, PoolConfig, min_connections=5, expected_connections=4)
        self.assertEqual(str(error), "p2p.min_connections: must be <= expected_connections (4), got 5")
        error = self.assertRaises(ConfigError, attrs.evolve, PoolConfig(), max_connections=True)
        self.assertEqual(error.key, "p2p.max_connections")

    def test_direct_construction_converts_text(self) -> None:
        config = PoolConfig(listen="[::1]:9000", trusted_points=["a.example:1"])
        self.assertEqual(config.listen, Point("::1", 9000))
        self.assertEqual(config.trusted_points, (PointSpec("a.example", 1),))


class PairTests(ConfigTestMixin, SynchronousTestCase):
    """
    C{[max, target]} pairs for the known points and peer ids tables.
    """

    def test_max_below_target(self) -> None:
        for name in ("max_known_points", "max_known_peer_ids"):
            error = self.refused({"p2p": {name: [300, 400]}})
            self.assertEqual(str(error), f"<config>: p2p.{name}: max (300) must be >= target (400)")

    def test_negative_target(self) -> None:
        error = self.refused({"p2p": {"max_known_points": [10, -1]}})
        self.assertIn("target must be >= 0, got -1", str(error))

    def test_pair_values(self) -> None:
        config = config_from_mapping({"p2p": {"max_known_points": [0, 0], "max_known_peer_ids": [1000, 1]}})
        self.assertEqual((config.max_known_points, config.max_known_peer_ids), ((0, 0), (1000, 1)))


class OptionalValueTests(SynchronousTestCase):
    """
    C{false} makes an optional value absent (C{None}).
    """

    OPTIONAL = [
        "p2p.advertised_port",
        "p2p.identity_file",
        "p2p.peers_file",
        "p2p.max_known_points",
        "p2p.max_known_peer_ids",
        "p2p.max_peers_file_size",
        "p2p.maintenance_idle_time",
        "p2p.swap_linger",
        "p2p.seed_ca_file",
        "p2p.keepalive_interval",
        "p2p.memory_trim_interval",
        "p2p.refusal_log_interval",
        "p2p.max_stalled_handshakes",
        "p2p.eviction_protection",
        "p2p.max_upload_speed",
        "p2p.max_download_speed",
        "admin.listen",
        "admin.tls_certificate",
        "admin.tls_key",
    ]

    def test_false_is_none(self) -> None:
        for dotted in self.OPTIONAL:
            config = config_from_mapping(_document(dotted, False))
            key = next(k for k in CONFIG_KEYS if k.dotted == dotted)
            self.assertIsNone(key.get(config), dotted)

    def test_only_optional_keys_accept_false(self) -> None:
        for key in CONFIG_KEYS:
            if key.dotted in self.OPTIONAL or key.is_switch:
                continue
            error = self.assertRaises(ConfigError, config_from_mapping, _document(key.dotted, False))
            self.assertEqual(error.key, key.dotted)
            self.assertIn("got boolean false", str(error))


class ReachKeyTests(ConfigTestMixin, SynchronousTestCase):
    """
    C{[p2p] bootstrap_urls}, C{seed_ca_file}, C{[admin] tls_certificate}
    and C{tls_key}.
    """

    def test_bootstrap_urls(self) -> None:
        urls = ["https://seeds.example.org/p.json", "https://[2001:db8::1]:8443/x"]
        self.assertEqual(config_from_mapping({"p2p": {"bootstrap_urls": urls}}).bootstrap_urls, tuple(urls))

    def test_bad_bootstrap_urls(self) -> None:
        for value, fragment in (
            ("https://a.example/", "expected an array"),
            (["http://a.example/"], "is not an https:// URL"),
            (["https://user@a.example/"], "must name a host"),
            (["https:///path"], "must name a host"),
            (["https://a.example:99999/"], "malformed URL"),
            (["https://a.example/", 3], "item 1: expected a string"),
            (["https://a.example/ x"], "not a URL"),
        ):
            error = self.refused({"p2p": {"bootstrap_urls": value}}, source="node.toml")
            self.assertEqual(error.key, "p2p.bootstrap_urls")
            self.assertIn(fragment, str(error))

    def test_tls_paths_relative_to_file(self) -> None:
        data = {
            "p2p": {"seed_ca_file": "ca.pem"},
            "admin": {"tls_certificate": "tls/cert.pem", "tls_key": "tls/key.pem"},
        }
        config = config_from_mapping(data, base_dir="/etc/p2pool")
        self.assertEqual(config.seed_ca_file, "/etc/p2pool/ca.pem")
        self.assertEqual(
            (config.admin.tls_certificate, config.admin.tls_key),
            ("/etc/p2pool/tls/cert.pem", "/etc/p2pool/tls/key.pem"),
        )
        self.assertTrue(config.admin.tls)

    def test_non_loopback_admin_needs_token_and_tls(self) -> None:
        token = "0123456789abcdefghij"
        error = self.refused({"admin": {"listen": "192.0.2.1:8732", "token": token}}, source="node.toml")
        self.assertEqual(error.key, "admin.listen")
        self.assertIn("admin.tls_certificate", str(error))
        tls = {"tls_certificate": "/c.pem", "tls_key": "/k.pem"}
        error = self.refused({"admin": {"listen": "192.0.2.1:8732", **tls}}, source="node.toml")
        self.assertIn("admin.token", str(error))
        config = config_from_mapping({"admin": {"listen": "192.0.2.1:8732", "token": token, **tls}})
        self.assertEqual(config.admin.listen, Point("192.0.2.1", 8732))


class PathTests(ConfigTestMixin, SynchronousTestCase):
    """
    Relative paths in a file are relative to the file's directory; in
    overrides, to the working directory.
    """

    PATHS = {"p2p": {"data_dir": "data", "identity_file": "keys/id.json", "peers_file": "/abs/peers.json"}}

    def test_resolved_against_base_dir(self) -> None:
        config = config_from_mapping(self.PATHS, base_dir="/etc/p2pool")
        self.assertEqual(config.data_dir, "/etc/p2pool/data")
        self.assertEqual(config.identity_path, "/etc/p2pool/keys/id.json")
        self.assertEqual(config.peers_path, "/abs/peers.json")

    def test_kept_without_base_dir(self) -> None:
        config = config_from_mapping(self.PATHS)
        self.assertEqual((config.data_dir, config.identity_file), ("data", "keys/id.json"))
        self.assertEqual(config.peers_path, "/abs/peers.json")

    def test_home_expanded(self) -> None:
        config = config_from_mapping({"p2p": {"data_dir": "~/p2pool"}}, base_dir="/etc")
        self.assertEqual(config.data_dir, os.path.join(os.path.expanduser("~"), "p2pool"))

    def test_file_paths_relative_to_file(self) -> None:
        path = self.write('[p2p]\ndata_dir = "state"\n')
        config = load_config(path)
        self.assertEqual(config.data_dir, os.path.join(os.path.dirname(os.path.abspath(path)), "state"))
        self.assertEqual(config.identity_path, os.path.join(config.data_dir, "identity.json"))

    def test_override_paths_relative_to_cwd(self) -> None:
        path = self.write('[p2p]\ndata_dir = "state"\n')
        config = load_config(path, {"p2p.data_dir": "other", "p2p.peers_file": "p.json"})
        self.assertEqual(config.data_dir, os.path.join(os.getcwd(), "other"))
        self.assertEqual(config.peers_path, os.path.join(os.getcwd(), "p.json"))

    def test_default_data_dir_stays_relative(self) -> None:
        self.assertEqual(load_config(self.write("[p2p]\n")).data_dir, "p2pool-data")


class FileReadingTests(ConfigTestMixin, SynchronousTestCase):
    """
    Unreadable and malformed files are reported with the file named.
    """

    def test_syntax_error_mentions_line(self) -> None:
        path = self.write("[p2p]\nmax_connections = 10\nlisten = = 3\n")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIsNone(error.key)
        self.assertTrue(str(error).startswith(f"{path}: TOML syntax error: "), str(error))
        self.assertIn("line 3", str(error))

    def test_missing_file(self) -> None:
        path = os.path.join(self.mktemp(), "absent.toml")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(error), f"{path}: cannot read configuration file: No such file or directory")

    def test_directory(self) -> None:
        path = self.mktemp()
        os.makedirs(path)
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIn(f"{path}: cannot read configuration file", str(error))

    def test_not_utf8(self) -> None:
        path = FilePath(self.mktemp())
        path.setContent(b'[p2p]\nnetwork = "\xff"\n')
        error = self.assertRaises(ConfigError, load_config, path.path)
        self.assertIn(path.path, str(error))

    def test_value_error_names_file(self) -> None:
        path = self.write('[p2p]\nlisten = "x"\n')
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(error), f"{path}: p2p.listen: malformed point 'x': missing ':port'")
        self.assertEqual((error.key, error.source), ("p2p.listen", path))


class OverrideTests(ConfigTestMixin, SynchronousTestCase):
    """
    Overrides beat the file, which beats the defaults.
    """

    FILE = '[p2p]\nmax_connections = 80\nmin_connections = 5\nnetwork = "from-file"\n'

    def test_precedence(self) -> None:
        config = load_config(self.write(self.FILE), {"p2p.max_connections": 90})
        self.assertEqual(config.max_connections, 90)  # override beats file
        self.assertEqual(config.min_connections, 5)  # file beats default
        self.assertEqual(config.network, "from-file")
        self.assertEqual(config.expected_connections, 50)  # default

    def test_typed_values(self) -> None:
        overrides = {
            "p2p.listen": Point("127.0.0.3", 1),
            "p2p.trusted_points": (PointSpec("10.0.0.1", 2),),
            "p2p.maintenance_idle_time": None,
            "admin.listen": None,
            "p2p.reconnection.factor": 3,
        }
        config = load_config(None, overrides)
        self.assertEqual(config.listen, Point("127.0.0.3", 1))
        self.assertEqual(config.trusted_points, (PointSpec("10.0.0.1", 2),))
        self.assertIsNone(config.maintenance_idle_time)
        self.assertIsNone(config.admin.listen)
        self.assertEqual(config.reconnection.factor, 3.0)

    def test_override_can_unset_file_value(self) -> None:
        path = self.write("[p2p]\nadvertised_port = 4000\n")
        self.assertIsNone(load_config(path, {"p2p.advertised_port": None}).advertised_port)

    def test_unknown_override(self) -> None:
        error = self.assertRaises(ConfigError, load_config, None, {"p2p.max_connection": 3})
        self.assertEqual(
            str(error), "command line: p2p.max_connection: unknown key (did you mean p2p.max_connections?)"
        )

    def test_table_override(self) -> None:
        error = self.assertRaises(ConfigError, load_config, None, {"p2p.reconnection": {}})
        self.assertIn("p2p.reconnection: is a table", str(error))

    def test_override_error_names_command_line(self) -> None:
        path = self.write(self.FILE)
        error = self.assertRaises(ConfigError, load_config, path, {"p2p.max_connections": 20})
        self.assertEqual(str(error), "command line: p2p.max_connections: must be >= expected_connections (50), got 20")
        error = self.assertRaises(ConfigError, load_config, path, {"p2p.listen": 3}, overrides_source="env")
        self.assertTrue(str(error).startswith("env: p2p.listen: "))

    def test_cross_check_sees_merged_values(self) -> None:
        """
        Validation runs once, on the merged values: an override can repair a
        combination the file alone would not allow.
        """
        path = self.write("[p2p]\nmin_connections = 60\n")
        self.assertRaises(ConfigError, load_config, path)
        config = load_config(path, {"p2p.expected_connections": 70})
        self.assertEqual((config.min_connections, config.expected_connections), (60, 70))


class MaintenanceBoundsTests(SynchronousTestCase):
    """
    L{PoolConfig.maintenance_bounds} follows Tezos C{make_maintenance_bounds}.
    """

    def test_defaults(self) -> None:
        self.assertEqual(PoolConfig().maintenance_bounds(), (23, 36, 68, 84))

    def test_small(self) -> None:
        config = PoolConfig(min_connections=3, expected_connections=6, max_connections=9)
        self.assertEqual(config.maintenance_bounds(), (4, 5, 7, 8))

    @given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=3, max_size=3).map(sorted))
    def test_ordered_within_limits(self, counts: list[int]) -> None:
        low, expected, high = counts
        config = PoolConfig(min_connections=low, expected_connections=expected, max_connections=high)
        bounds = config.maintenance_bounds()
        self.assertEqual(list(bounds), sorted(bounds))
        self.assertTrue(low <= bounds[0] and bounds[1] <= expected <= bounds[2] and bounds[3] <= high)


class FileBudgetTests(SynchronousTestCase):
    """
    The open-file budget: connections plus headroom against RLIMIT_NOFILE.
    """

    def test_needed(self) -> None:
        self.assertEqual(FILE_DESCRIPTOR_HEADROOM, 64)
        self.assertEqual(file_descriptors_needed(PoolConfig()), 100 + 20 + 64)

    def test_refused_over_limit(self) -> None:
        error = self.assertRaises(ConfigError, check_file_budget, PoolConfig(), 100)
        self.assertEqual(error.key, "p2p.max_connections")
        self.assertIn("needs 184 file descriptors", str(error))
        self.assertIn("max_connections 100 + max_incoming_connections 20 + 64", str(error))
        self.assertIn("open-file limit (RLIMIT_NOFILE) is 100", str(error))

    def test_accepted_within_limit(self) -> None:
        self.assertIsNone(check_file_budget(PoolConfig(), 184))
        self.assertIsNone(check_file_budget(PoolConfig(), -1))  # unlimited

    def test_process_limit(self) -> None:
        """
        Without an injected limit the process's soft limit is used.
        """
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        tiny = PoolConfig(min_connections=0, expected_connections=0, max_connections=0, max_incoming_connections=0)
        check_file_budget(tiny)
        if soft != resource.RLIM_INFINITY:
            huge = PoolConfig(max_connections=soft)
            self.assertRaises(ConfigError, check_file_budget, huge)


class FakeLimits:
    """
    An in-memory RLIMIT_NOFILE.
    """

    def __init__(self, soft: int, hard: int, fail: bool = False) -> None:
        self.limits = (soft, hard)
        self.fail = fail
        self.calls: list[tuple[int, int]] = []

    def get(self) -> tuple[int, int]:
        return self.limits

    def set(self, limits: tuple[int, int]) -> None:
        self.calls.append(limits)
        if self.fail:
            raise ValueError("not allowed")
        self.limits = limits


class RaiseFileLimitTests(SynchronousTestCase):
    """
    L{raise_file_limit} raises the soft limit to what is needed, within the
    hard limit.
    """

    def raise_with(self, limits: FakeLimits, needed: int) -> int:
        return raise_file_limit(needed, getrlimit=limits.get, setrlimit=limits.set)

    def test_raised_to_needed(self) -> None:
        limits = FakeLimits(100, 4096)
        self.assertEqual(self.raise_with(limits, 184), 184)
        self.assertEqual(limits.calls, [(184, 4096)])

    def test_capped_at_hard_limit(self) -> None:
        limits = FakeLimits(100, 150)
        self.assertEqual(self.raise_with(limits, 184), 150)
        self.assertEqual(limits.calls, [(150, 150)])

    def test_unlimited_hard_limit(self) -> None:
        limits = FakeLimits(100, -1)
        self.assertEqual(self.raise_with(limits, 184), 184)

    def test_already_enough(self) -> None:
        limits = FakeLimits(1024, 4096)
        self.assertEqual(self.raise_with(limits, 184), 1024)
        self.assertEqual(limits.calls, [])

    def test_failure_keeps_limit(self) -> None:
        limits = FakeLimits(100, 4096, fail=True)
        self.assertEqual(self.raise_with(limits, 184), 100)
        self.assertEqual(len(limits.calls), 1)

    def test_real_limit_not_lowered(self) -> None:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.assertEqual(raise_file_limit(1), soft)

    def test_then_budget(self) -> None:
        """
        The node's sequence: raise, then check against the result.
        """
        config = PoolConfig()
        limits = FakeLimits(100, 150)
        error = self.assertRaises(
            ConfigError, check_file_budget, config, self.raise_with(limits, file_descriptors_needed(config))
        )
        self.assertIn("is 150", str(error))


class ConfigKeyTests(SynchronousTestCase):
    """
    L{ConfigKey} parses and formats command-line text for every kind.
    """

    def key(self, dotted: str) -> Any:
        return next(key for key in CONFIG_KEYS if key.dotted == dotted)

    def test_round_trip_of_defaults(self) -> None:
        """
        Every default, formatted as a flag argument, parses back to itself
        (list keys take one point per flag, so their empty default is skipped).
        """
        for key in CONFIG_KEYS:
            if key.repeatable:
                continue
            self.assertEqual(key.parse_text(key.format_value(key.default)), key.default, key.dotted)

    def test_boolean_text(self) -> None:
        key = self.key("p2p.private_mode")
        self.assertIs(key.parse_text("TRUE"), True)
        self.assertIs(key.parse_text("false"), False)
        error = self.assertRaises(ConfigError, key.parse_text, "yes", "--private-mode")
        self.assertEqual(str(error), "--private-mode: p2p.private_mode: expected true or false, got 'yes'")

    def test_pair_text(self) -> None:
        key = self.key("p2p.max_known_points")
        self.assertEqual(key.parse_text(" 10 , 5 "), (10, 5))
        self.assertIsNone(key.parse_text("false"))
        for text in ("10", "10,5,1", "a,b"):
            self.assertIn("expected MAX,TARGET", str(self.assertRaises(ConfigError, key.parse_text, text)))

    def test_real_text_refuses_non_finite(self) -> None:
        key = self.key("p2p.connection_timeout")
        self.assertEqual(key.parse_text("1e1"), 10.0)
        for text in ("nan", "inf"):
            self.assertIn("finite", str(self.assertRaises(ConfigError, key.parse_text, text)))
