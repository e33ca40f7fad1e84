# -*- test-case-name: tests.test_simulate_options -*-
"""
The options of C{bench/simulate.py}: each bad value or combination is
refused by the parser (exit status 2, a message naming the option) before
any simulation runs, instead of a traceback, a report of nonsense or a run
that never ends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path
from types import ModuleType

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    """
    C{bench/simulate.py} as a module (C{bench} is no package).
    """
    spec = importlib.util.spec_from_file_location("bench_simulate", ROOT / "bench" / "simulate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


simulate = _load()


class OptionTests(SynchronousTestCase):
    def refused(self, *argv: str) -> str:
        """
        What the parser says when refusing C{argv}.
        """
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            exited = self.assertRaises(SystemExit, simulate.parse_args, list(argv))
        self.assertEqual(exited.code, 2, err.getvalue())
        return err.getvalue().splitlines()[-1]

    def test_defaults(self) -> None:
        args = simulate.parse_args([])
        self.assertEqual((args.nodes, args.churn_rounds, args.eclipse_seconds), (1000, 3, 120))
        self.assertEqual(args.gc_thresholds, simulate.GC_THRESHOLDS)
        quick = simulate.parse_args(["--quick"])
        self.assertEqual((quick.nodes, quick.churn_rounds, quick.eclipse_seconds), (20, 1, 20))
        self.assertEqual(simulate.parse_args(["--gc-thresholds", "0,1,2"]).gc_thresholds, (0, 1, 2))

    def test_documented_runs(self) -> None:
        """
        The command lines the docstring shows are accepted.
        """
        text = simulate.__doc__.replace("\\\n", " ")
        commands = [line.split("simulate.py", 1)[1] for line in text.splitlines() if "simulate.py" in line]
        self.assertGreaterEqual(len(commands), 6)
        for command in commands:
            simulate.parse_args(command.split())

    def test_counts(self) -> None:
        self.assertIn("--nodes: must be at least 1, got 0", self.refused("--nodes", "0"))
        self.assertIn("--nodes: must be at least 1, got -5", self.refused("--nodes", "-5"))
        self.assertIn("--churn-rounds: must be at least 1", self.refused("--churn-rounds", "0"))
        self.assertIn("--eclipse-seconds: must be at least 0", self.refused("--eclipse-seconds", "-1"))
        self.assertIn("--nodes", self.refused("--churn", "--nodes", "1"))
        self.assertIn("--nodes", self.refused("--quick", "--nodes", "1"))

    def test_seconds(self) -> None:
        for option in ("--latency", "--max-sim", "--churn-seconds"):
            for value in ("-1", "nan", "inf", "soon"):
                self.assertIn(option, self.refused(option, value))

    def test_gc_thresholds(self) -> None:
        for value in ("1,2", "1,2,3,4", "a,b,c", "-1,2,3"):
            self.assertIn("--gc-thresholds: expected three whole numbers", self.refused(f"--gc-thresholds={value}"))

    def test_connection_counts_make_a_configuration(self) -> None:
        self.assertIn("min_connections", self.refused("--expected-connections", "0"))
        self.assertIn("max_connections", self.refused("--max-connections", "1"))

    def test_one_scenario(self) -> None:
        self.assertIn("not allowed with", self.refused("--eclipse", "--churn"))
        self.assertIn("not allowed with", self.refused("--quick", "--eclipse"))
        self.assertIn("not allowed with", self.refused("--gc-default", "--gc-thresholds", "1,2,3"))
