# -*- test-case-name: tests.test_service -*-
"""
Running a node as a service (issue 15, item 8): the systemd unit in
C{contrib/systemd/} (its settings, its command line, and
C{systemd-analyze verify} where that tool exists), and the alerts of
C{docs/OPERATIONS.md}, whose metrics a node must export.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase, TestCase

import p2pool.daemon.tap as tap
from p2pool.config import PoolConfig, file_descriptors_needed
from p2pool.daemon.node import EXIT_START_FAILED
from tests.adminhelpers import MemoryAdmin
from tests.helpers import async_test
from tests.processes import SOURCE_ROOT, run

UNIT = os.path.join(SOURCE_ROOT, "contrib", "systemd", "p2pool.service")
SYSUSERS = os.path.join(SOURCE_ROOT, "contrib", "systemd", "p2pool.sysusers.conf")
OPERATIONS = os.path.join(SOURCE_ROOT, "docs", "OPERATIONS.md")
#: Where the unit expects p2pool's virtual environment.
UNIT_TWISTD = "/opt/p2pool/venv/bin/twistd"


def read_unit(path: str) -> dict[str, dict[str, list[str]]]:
    """
    A systemd unit file's settings: by section, each key's values in order
    (a key may be given several times).
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


class UnitTests(SynchronousTestCase):
    """
    C{contrib/systemd/p2pool.service} holds what a service needs.
    """

    def setUp(self) -> None:
        self.unit = read_unit(UNIT)
        self.service = self.unit["Service"]

    def value(self, key: str) -> str:
        values = self.service.get(key)
        self.assertIsNotNone(values, f"the unit sets no {key}=")
        assert values is not None
        return values[-1]

    def test_dedicated_user(self) -> None:
        self.assertEqual(self.value("User"), "p2pool")
        self.assertEqual(self.value("Group"), "p2pool")
        with open(SYSUSERS, encoding="utf-8") as f:
            entries = [line.split() for line in f if line.strip() and not line.startswith("#")]
        self.assertEqual([entry[:3] for entry in entries], [["u", "p2pool", "-"]])

    def test_open_file_limit(self) -> None:
        self.assertGreaterEqual(int(self.value("LimitNOFILE")), file_descriptors_needed(PoolConfig()) * 100)

    def test_restart_policy(self) -> None:
        self.assertEqual(self.value("Restart"), "on-failure")
        prevented = self.value("RestartPreventExitStatus").split()
        self.assertIn(str(tap.EXIT_USAGE), prevented, "a configuration error is not retried")
        self.assertNotIn(str(EXIT_START_FAILED), prevented, "a start failure is retried")
        self.assertIn("StartLimitBurst", self.unit["Unit"])

    def test_hardening(self) -> None:
        expected = {
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "ProtectHome": "yes",
            "PrivateTmp": "yes",
            "PrivateDevices": "yes",
            "CapabilityBoundingSet": "",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
            "UMask": "0077",
        }
        self.assertEqual({key: self.value(key) for key in expected}, expected)
        self.assertEqual(self.service["SystemCallFilter"], ["@system-service", "~@privileged"])

    def test_command_line(self) -> None:
        """
        The unit runs twistd in the foreground, logging to the journal, with
        options the plugin accepts, and keeps its data in its state
        directory.
        """
        argv = shlex.split(self.value("ExecStart"))
        self.assertEqual(argv[0], UNIT_TWISTD)
        plugin = argv.index("p2pool")
        self.assertEqual(argv[1:plugin], ["--nodaemon", "--pidfile=", "--logfile=-"])
        options = argv[plugin + 1 :]
        config = options.index("--config") + 1
        self.assertEqual(options[config], "/etc/p2pool/node.toml")
        self.assertEqual(self.value("ConfigurationDirectory"), "p2pool")
        options[config] = os.path.join(SOURCE_ROOT, "tac", "node.toml")
        parsed = tap.Options()
        parsed.parseOptions(options)
        self.assertEqual(parsed.config.data_dir, "/var/lib/" + self.value("StateDirectory"))
        self.assertEqual(self.value("WorkingDirectory"), parsed.config.data_dir)
        self.assertEqual(self.value("StateDirectoryMode"), "0700")


class SystemdAnalyzeTests(TestCase):
    """
    C{systemd-analyze verify} accepts the unit, and C{systemd-analyze
    security} rates it well, where systemd's tools are installed.
    """

    timeout = 120
    if shutil.which("systemd-analyze") is None:
        skip = "systemd-analyze is not installed (Debian: apt-get install systemd)"

    def local_unit(self) -> str:
        """
        A copy of the unit whose command is this environment's twistd
        (verify checks that the command exists).
        """
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.access(twistd, os.X_OK):
            raise self.skipTest(f"no twistd script beside {sys.executable}")
        with open(UNIT, encoding="utf-8") as f:
            text = f.read()
        self.assertIn(UNIT_TWISTD, text)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "p2pool.service")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(UNIT_TWISTD, twistd))
        return path

    @async_test
    async def test_verify(self) -> None:
        outcome = await run(self, ["systemd-analyze", "verify", "--man=no", self.local_unit()])
        self.assertEqual((outcome.status, outcome.output), (0, ""))

    @async_test
    async def test_verify_notices_mistakes(self) -> None:
        """
        The check above can fail: an unknown setting is reported.
        """
        path = self.local_unit()
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n[Service]\nProtectSystem=sometimes\n")
        outcome = await run(self, ["systemd-analyze", "verify", "--man=no", path])
        self.assertIn("sometimes", outcome.output)

    @async_test
    async def test_security_exposure(self) -> None:
        outcome = await run(self, ["systemd-analyze", "security", "--offline=yes", "--no-pager", self.local_unit()])
        match = re.search(r"Overall exposure level for p2pool\.service: ([0-9.]+)", outcome.output)
        if match is None:
            raise self.skipTest(f"this systemd-analyze cannot rate a unit file offline: {outcome.output[-200:]}")
        self.assertLessEqual(float(match.group(1)), 2.0, outcome.output)


class OperationsDocTests(SynchronousTestCase):
    """
    C{docs/OPERATIONS.md} names routes and metrics that exist.
    """

    def setUp(self) -> None:
        with open(OPERATIONS, encoding="utf-8") as f:
            self.text = f.read()

    def test_alerts_use_exported_metrics(self) -> None:
        alerts = self.text[self.text.index("### What to alert on") :].split("\n## ")[0]
        names = set(re.findall(r"\b((?:p2pool|process|python)_[a-z_]+)", alerts))
        self.assertGreater(len(names), 8)
        h = MemoryAdmin(self)
        h.a.save_peers()
        h.network.advance(0.1)
        families = list(text_string_to_metric_families(h.request("GET", "/metrics").body.decode()))
        # Labelled counters have no sample until a label value is seen.
        exported = {sample.name for family in families for sample in family.samples}
        exported |= {family.name + "_total" for family in families if family.type == "counter"}
        self.assertEqual(sorted(names - exported), [])

    def test_names_its_routes_and_files(self) -> None:
        for text in (
            "/health/live",
            "/health/ready",
            "contrib/systemd/p2pool.service",
            "contrib/systemd/p2pool.sysusers.conf",
            "identity.json",
            "LimitNOFILE",
        ):
            self.assertIn(text, self.text)
