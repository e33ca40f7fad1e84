# -*- test-case-name: tests.test_cli -*-
"""
Tests for L{p2pool.cli}.
"""

from __future__ import annotations

import io
import json
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

import p2pool.cli.commands as cli
from p2pool.core.addressing import PeerId
from p2pool.core.identity import Identity, load_identity, proof_of_work_bits, save_identity


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TTYStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


class CLITestCase(SynchronousTestCase):
    """
    Runs L{cli.main} with captured output.
    """

    def setUp(self) -> None:
        self.data_dir = self.mktemp()
        self.path = os.path.join(self.data_dir, "identity.json")

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        status = cli.main(list(argv))
        return status, out.getvalue(), err.getvalue()

    def assertOneLineError(self, err: str, *fragments: str) -> None:
        self.assertEqual(err.count("\n"), 1, err)
        self.assertTrue(err.startswith("p2pool: error: "), err)
        self.assertNotIn("Traceback", err)
        for fragment in fragments:
            self.assertIn(fragment, err)

    def saved_identity(self, difficulty: float = 4) -> Identity:
        identity = Identity.generate(difficulty)
        save_identity(self.path, identity)
        return identity


class GenerateTests(CLITestCase):
    def test_generate(self) -> None:
        status, out, err = self.run_cli("identity", "generate", "--data-dir", self.data_dir, "--pow", "4")
        self.assertEqual(status, 0)
        identity = load_identity(self.path, 4)
        self.assertEqual(out, f"{identity.peer_id}\n")
        self.assertIn("proof of work 4", err)
        self.assertIn(self.path, err)

    def test_generate_file_option(self) -> None:
        path = self.mktemp()
        status, out, err = self.run_cli("identity", "generate", "--file", path, "--pow", "0")
        self.assertEqual(status, 0)
        self.assertEqual(PeerId.parse(out.strip()), load_identity(path, 0).peer_id)
        self.assertFalse(os.path.exists(self.path))

    def test_exists(self) -> None:
        os.mkdir(self.data_dir)
        with open(self.path, "w") as f:
            f.write("precious")
        status, out, err = self.run_cli("identity", "generate", "--data-dir", self.data_dir, "--pow", "4")
        self.assertEqual(status, 1)
        self.assertEqual(out, "")
        self.assertOneLineError(err, self.path, "already exists")
        with open(self.path) as f:
            self.assertEqual(f.read(), "precious")

    def test_interrupted(self) -> None:
        def interrupted(cls: type[Identity], difficulty: float, **kwargs: object) -> Identity:
            raise KeyboardInterrupt()

        self.patch(Identity, "generate", classmethod(interrupted))
        status, out, err = self.run_cli("identity", "generate", "--data-dir", self.data_dir)
        self.assertEqual(status, 130)
        self.assertEqual(out, "")
        self.assertTrue(err.endswith("p2pool: interrupted\n"), err)
        self.assertFalse(os.path.exists(self.data_dir))

    def test_default_pow(self) -> None:
        seen: list[float] = []
        real = Identity.generate

        def recording(cls: type[Identity], difficulty: float, **kwargs: object) -> Identity:
            seen.append(difficulty)
            return real(0)

        self.patch(Identity, "generate", classmethod(recording))
        status, out, err = self.run_cli("identity", "generate", "--data-dir", self.data_dir)
        self.assertEqual((status, seen), (0, [16.0]))

    def test_bad_pow_is_usage_error(self) -> None:
        for bad in ("300", "-1", "lots", "nan"):
            status, out, err = self.run_cli("identity", "generate", "--data-dir", self.data_dir, "--pow", bad)
            self.assertEqual(status, 2)
            self.assertIn("--pow", err)
        self.assertFalse(os.path.exists(self.data_dir))


class ShowTests(CLITestCase):
    def test_show(self) -> None:
        identity = self.saved_identity()
        bits = proof_of_work_bits(identity.public_key, identity.proof_of_work_stamp)
        status, out, err = self.run_cli("identity", "show", "--data-dir", self.data_dir)
        self.assertEqual((status, err), (0, ""))
        self.assertIn(str(identity.peer_id), out)
        self.assertIn(identity.public_key.hex(), out)
        self.assertIn(f"{bits} bits", out)
        self.assertNotIn(identity.private_key.private_bytes_raw().hex(), out)

    def test_show_json(self) -> None:
        identity = self.saved_identity()
        status, out, err = self.run_cli("identity", "show", "--file", self.path, "--json")
        self.assertEqual(status, 0)
        self.assertEqual(
            json.loads(out),
            {
                "peer_id": str(identity.peer_id),
                "public_key": identity.public_key.hex(),
                "proof_of_work_stamp": identity.proof_of_work_stamp.hex(),
                "proof_of_work_bits": proof_of_work_bits(identity.public_key, identity.proof_of_work_stamp),
            },
        )
        self.assertNotIn(identity.private_key.private_bytes_raw().hex(), out)

    def test_missing(self) -> None:
        status, out, err = self.run_cli("identity", "show", "--data-dir", self.data_dir)
        self.assertEqual((status, out), (1, ""))
        self.assertOneLineError(err, self.path, "does not exist")

    def test_damaged(self) -> None:
        identity = self.saved_identity()
        obj = identity.to_json()
        obj["proof_of_work_stamp"] = obj["proof_of_work_stamp"][:10]
        with open(self.path, "w") as f:
            json.dump(obj, f)
        status, out, err = self.run_cli("identity", "show", "--data-dir", self.data_dir)
        self.assertEqual((status, out), (1, ""))
        self.assertOneLineError(err, self.path, "'proof_of_work_stamp'", "24 bytes")

    def test_not_json(self) -> None:
        os.mkdir(self.data_dir)
        with open(self.path, "w") as f:
            f.write("garbage")
        os.chmod(self.path, 0o600)
        status, out, err = self.run_cli("identity", "show", "--data-dir", self.data_dir)
        self.assertEqual(status, 1)
        self.assertOneLineError(err, self.path, "not valid JSON")

    def test_required_pow(self) -> None:
        identity = self.saved_identity()
        bits = proof_of_work_bits(identity.public_key, identity.proof_of_work_stamp)
        status, out, err = self.run_cli("identity", "show", "--data-dir", self.data_dir, "--pow", str(bits + 1))
        self.assertEqual(status, 1)
        self.assertOneLineError(err, f"{bits + 1} bits required")


class ParserTests(CLITestCase):
    def test_no_command(self) -> None:
        status, out, err = self.run_cli()
        self.assertEqual(status, 2)
        self.assertIn("usage: p2pool", err)

    def test_identity_without_action(self) -> None:
        status, out, err = self.run_cli("identity")
        self.assertEqual(status, 2)
        self.assertIn("usage: p2pool identity", err)

    def test_mistyped_option_gets_did_you_mean(self) -> None:
        for argv, typed, meant in (
            (["identity", "generate", "--data-dri", "x"], "--data-dri", "--data-dir"),
            (["status", "--jsn"], "--jsn", "--json"),
            (["connect", "1.2.3.4:5", "--timout", "3"], "--timout", "--timeout"),
        ):
            status, out, err = self.run_cli(*argv)
            self.assertEqual(status, 2, argv)
            self.assertIn(f"unrecognized arguments: {typed}", err)
            self.assertIn(f"(did you mean {meant}?)", err, argv)
        status, out, err = self.run_cli("status", "--frobnicate")
        self.assertTrue(err.endswith("unrecognized arguments: --frobnicate\n"), err)

    def test_help(self) -> None:
        status, out, err = self.run_cli("identity", "generate", "--help")
        self.assertEqual(status, 0)
        self.assertIn("--pow", out)

    def test_api_default_and_override(self) -> None:
        parser = cli.build_parser()
        self.assertEqual(parser.parse_args(["identity", "show"]).api, "http://127.0.0.1:8732")
        args = parser.parse_args(["--api", "http://10.0.0.1:9000", "identity", "show"])
        self.assertEqual(args.api, "http://10.0.0.1:9000")

    def test_default_paths(self) -> None:
        args = cli.build_parser().parse_args(["identity", "show"])
        self.assertEqual(cli.identity_path(args), os.path.join("p2pool-data", "identity.json"))
        self.assertEqual(args.pow, 0.0)


class ProgressReporterTests(SynchronousTestCase):
    def make(self, stream: io.StringIO, interval: float | None = None) -> tuple[cli.ProgressReporter, FakeClock]:
        clock = FakeClock()
        return cli.ProgressReporter(stream, clock=clock, interval=interval), clock

    def test_periodic_lines(self) -> None:
        stream = io.StringIO()
        reporter, clock = self.make(stream)
        reporter(16384)
        self.assertEqual(stream.getvalue(), "")
        clock.now += 10
        reporter(200000)
        clock.now += 1
        reporter(210000)
        clock.now += 10
        reporter(400000)
        reporter.finish()
        self.assertEqual(
            stream.getvalue(),
            "proof of work: 200,000 attempts, 20,000 hashes/s\nproof of work: 400,000 attempts, 19,048 hashes/s\n",
        )

    def test_tty_rewrites_one_line(self) -> None:
        stream = TTYStringIO()
        reporter, clock = self.make(stream)
        clock.now += 1
        reporter(1000000)
        clock.now += 1
        reporter(1500000)
        reporter.finish()
        self.assertEqual(
            stream.getvalue(),
            "\rproof of work: 1,000,000 attempts, 1,000,000 hashes/s"
            "\rproof of work: 1,500,000 attempts, 750,000 hashes/s  "
            "\n",
        )

    def test_finish_without_output(self) -> None:
        stream = TTYStringIO()
        reporter, clock = self.make(stream)
        reporter.finish()
        self.assertEqual(stream.getvalue(), "")
