"""
The names of the connection errors: distinct from Twisted's, with the old
names kept for one release behind a C{DeprecationWarning}.
"""

from __future__ import annotations

import ast
import pathlib
import types
import warnings

from twisted.internet import error as twisted_error
from twisted.trial.unittest import SynchronousTestCase

import p2pool
import p2pool.errors
from p2pool.errors import ConnectionEnded, DisconnectReason, P2PError, PeerConnectionClosed

ROOT = pathlib.Path(__file__).resolve().parent.parent
_OLD_NAMES = {"ConnectionDone", "ConnectionClosed"}


class NamesTests(SynchronousTestCase):
    def test_not_twisted_names(self) -> None:
        """
        Neither error has the name of a class of C{twisted.internet.error}.
        """
        for cls in (ConnectionEnded, PeerConnectionClosed):
            self.assertFalse(hasattr(twisted_error, cls.__name__), cls.__name__)
        self.assertTrue(issubclass(ConnectionEnded, PeerConnectionClosed))
        self.assertTrue(issubclass(PeerConnectionClosed, P2PError))
        self.assertIs(p2pool.ConnectionEnded, ConnectionEnded)

    def test_ended_carries_its_reason(self) -> None:
        ended = ConnectionEnded(DisconnectReason.IDLE_TIMEOUT, "silent for 90 s")
        self.assertEqual(
            (ended.reason, ended.detail, str(ended)),
            (DisconnectReason.IDLE_TIMEOUT, "silent for 90 s", "idle_timeout: silent for 90 s"),
        )


class DeprecatedNamesTests(SynchronousTestCase):
    """
    C{p2pool.errors.ConnectionDone}, C{p2pool.errors.ConnectionClosed} and
    C{p2pool.ConnectionDone} still give the renamed classes, warning the
    code that uses them.
    """

    def assert_deprecated(self, module: types.ModuleType, old: str, new: type[P2PError]) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = getattr(module, old)
        self.assertIs(got, new)
        [warning] = caught
        self.assertIs(warning.category, DeprecationWarning)
        self.assertEqual(warning.filename, __file__, "the warning points at the code using the old name")
        self.assertIn(f"{module.__name__}.{old} is deprecated", str(warning.message))
        self.assertIn(f"use {module.__name__}.{new.__name__}", str(warning.message))

    def test_errors_module(self) -> None:
        self.assert_deprecated(p2pool.errors, "ConnectionDone", ConnectionEnded)
        self.assert_deprecated(p2pool.errors, "ConnectionClosed", PeerConnectionClosed)

    def test_package(self) -> None:
        self.assert_deprecated(p2pool, "ConnectionDone", ConnectionEnded)

    def test_from_import(self) -> None:
        """
        C{from p2pool.errors import ConnectionDone} warns too, and the old
        name catches the error raised under the new one.
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from p2pool.errors import ConnectionDone  # type: ignore[attr-defined]
        self.assertEqual([(w.category, w.filename) for w in caught], [(DeprecationWarning, __file__)])
        with self.assertRaises(ConnectionDone):
            raise ConnectionEnded(DisconnectReason.REQUESTED)

    def test_other_names_missing(self) -> None:
        """
        Names that never existed are still missing, without a warning;
        C{ConnectionClosed} was never exported by the package.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for module, name in ((p2pool.errors, "ConnectionLost"), (p2pool, "ConnectionClosed"), (p2pool, "Nothing")):
                with self.assertRaises(AttributeError):
                    getattr(module, name)
        self.assertNotIn("ConnectionDone", p2pool.__all__)

    def test_project_uses_new_names(self) -> None:
        """
        No module of the project or its tests imports an old name (the
        suite runs with C{-W error::DeprecationWarning}, which catches the
        imports that run; this also catches those that do not).
        """
        found = []
        for path in sorted([*(ROOT / "p2pool").rglob("*.py"), *(ROOT / "tests").glob("*.py")]):
            if path.name == "test_errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module in ("p2pool", "p2pool.errors"):
                    found += [
                        f"{path.relative_to(ROOT)}:{node.lineno} {a.name}" for a in node.names if a.name in _OLD_NAMES
                    ]
                elif isinstance(node, ast.Attribute) and node.attr in _OLD_NAMES:
                    owner = ast.unparse(node.value)
                    if owner in ("p2pool", "errors", "p2pool.errors"):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {owner}.{node.attr}")
        self.assertEqual(found, [])
