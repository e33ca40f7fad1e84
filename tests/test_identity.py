# -*- test-case-name: tests.test_identity -*-
"""
Tests for L{p2pool.identity}.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import stat
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.logger import LogEvent, Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

import p2pool.core.identity as identity_module
from p2pool.core.addressing import PeerId
from p2pool.core.identity import (
    Identity,
    IdentityError,
    IdentityFileExists,
    IdentityFileMalformed,
    IdentityFileMissing,
    IdentityKeysMismatch,
    IdentityMismatch,
    InsufficientProofOfWork,
    check_proof_of_work,
    generate_proof_of_work,
    load_identity,
    load_or_create_identity,
    pow_target,
    proof_of_work_bits,
    save_identity,
)

STAMP_LIMIT = 1 << 192


class FixedStart(random.Random):
    """
    A random source whose C{getrandbits} always returns C{start}, to pin
    where the proof-of-work search begins.
    """

    def __init__(self, start: int) -> None:
        super().__init__(0)
        self.start = start

    def getrandbits(self, k: int) -> int:
        return self.start


class Stop(Exception):
    """
    Raised by test callbacks to end an endless search.
    """


def stamp_hash(public_key: bytes, stamp: bytes) -> int:
    digest = hashlib.blake2b(public_key + stamp, digest_size=32).digest()
    return int.from_bytes(digest, "little")


def find_stamp(public_key: bytes, predicate: Any) -> bytes:
    """
    The first stamp counting up from zero whose hash satisfies C{predicate}.
    """
    value = 0
    while True:
        stamp = value.to_bytes(24, "big")
        if predicate(stamp_hash(public_key, stamp)):
            return stamp
        value += 1


def make_identity(difficulty: float = 4) -> Identity:
    return Identity.generate(difficulty)


def write_json(path: str, obj: object) -> None:
    """
    Write C{obj} to C{path}, readable by its owner only, as identity files
    must be.
    """
    with open(path, "w") as f:
        json.dump(obj, f)
    os.chmod(path, 0o600)


class PowTargetTests(SynchronousTestCase):
    """
    Tests for L{pow_target}.
    """

    def test_zero_accepts_everything(self) -> None:
        self.assertEqual(pow_target(0), 2**256 - 1)

    def test_integer(self) -> None:
        self.assertEqual(pow_target(8), 2**248 - 1)
        self.assertEqual(pow_target(24.0), 2**232 - 1)

    def test_maximum(self) -> None:
        self.assertEqual(pow_target(256), 0)

    def test_fraction(self) -> None:
        """
        A fractional difficulty follows Tezos' make_pow_target and lies
        between the neighbouring integer targets.
        """
        mantissa = math.floor(2 ** (54 - 0.5))
        expected = (mantissa << 194) | (2**194 - 1)
        self.assertEqual(pow_target(8.5), expected)
        self.assertTrue(pow_target(9) < pow_target(8.5) < pow_target(8))

    def test_fraction_above_202(self) -> None:
        mantissa = math.floor(2 ** (54 - 0.25))
        self.assertEqual(pow_target(210.25), mantissa >> 8)

    def test_out_of_range(self) -> None:
        for bad in (-1, -0.001, 256.5, 1000, math.inf, math.nan):
            self.assertRaises(ValueError, pow_target, bad)

    def test_not_a_number(self) -> None:
        self.assertRaises(TypeError, pow_target, "8")
        self.assertRaises(TypeError, pow_target, True)

    def test_remembered_by_type(self) -> None:
        """
        Targets are remembered by value and type: C{True}, equal to C{1},
        is still refused once C{1} was asked, and errors are asked again.
        """
        self.assertEqual(pow_target(1), 2**255 - 1)
        self.assertRaises(TypeError, pow_target, True)
        self.assertEqual(pow_target(1.0), 2**255 - 1)
        for _ in range(2):
            self.assertRaises(ValueError, pow_target, math.nan)


class ProofOfWorkTests(SynchronousTestCase):
    """
    Tests for L{check_proof_of_work}, L{proof_of_work_bits} and
    L{generate_proof_of_work}.
    """

    def setUp(self) -> None:
        self.public_key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()

    def test_generate_then_check(self) -> None:
        stamp = generate_proof_of_work(self.public_key, 8)
        self.assertEqual(len(stamp), 24)
        self.assertTrue(check_proof_of_work(self.public_key, stamp, 8))
        self.assertLessEqual(stamp_hash(self.public_key, stamp), 2**248 - 1)
        self.assertGreaterEqual(proof_of_work_bits(self.public_key, stamp), 8)

    def test_failing_stamp(self) -> None:
        """
        A stamp whose hash has its top bit set fails any difficulty above 0
        and achieves 0 bits.
        """
        stamp = find_stamp(self.public_key, lambda h: h >> 255)
        self.assertFalse(check_proof_of_work(self.public_key, stamp, 1))
        self.assertFalse(check_proof_of_work(self.public_key, stamp, 8))
        self.assertTrue(check_proof_of_work(self.public_key, stamp, 0))
        self.assertEqual(proof_of_work_bits(self.public_key, stamp), 0)

    def test_bits(self) -> None:
        """
        The bits are the leading zeros of the little-endian hash: exactly
        the integer difficulty the stamp satisfies.
        """
        stamp = find_stamp(self.public_key, lambda h: h.bit_length() == 256 - 5)
        self.assertEqual(proof_of_work_bits(self.public_key, stamp), 5)
        self.assertTrue(check_proof_of_work(self.public_key, stamp, 5))
        self.assertFalse(check_proof_of_work(self.public_key, stamp, 6))

    def test_starts_from_rng_and_counts_up(self) -> None:
        """
        At difficulty 0 the first attempt succeeds, so the stamp is the
        random starting point, big-endian.
        """
        stamp = generate_proof_of_work(self.public_key, 0, rng=FixedStart(0x0102))
        self.assertEqual(stamp, (0x0102).to_bytes(24, "big"))

    def test_progress(self) -> None:
        calls: list[int] = []

        def progress(attempts: int) -> None:
            calls.append(attempts)
            if len(calls) == 2:
                raise Stop()

        self.assertRaises(Stop, generate_proof_of_work, self.public_key, 256, progress=progress, rng=FixedStart(0))
        self.assertEqual(calls, [2**14, 2**15])

    def test_wraps_around(self) -> None:
        """
        The search wraps from the largest stamp to zero instead of failing.
        """
        calls: list[int] = []

        def progress(attempts: int) -> None:
            calls.append(attempts)

        should_stop = lambda: len(calls) == 2
        start = FixedStart(STAMP_LIMIT - 10)
        with self.assertRaises(IdentityError) as raised:
            generate_proof_of_work(self.public_key, 256, progress=progress, should_stop=should_stop, rng=start)
        self.assertEqual(str(raised.exception), "proof-of-work search interrupted")
        self.assertEqual(calls, [10, 10 + 2**14])

    def test_should_stop(self) -> None:
        asked: list[bool] = []

        def should_stop() -> bool:
            asked.append(True)
            return True

        self.assertRaises(IdentityError, generate_proof_of_work, self.public_key, 256, should_stop=should_stop)
        self.assertEqual(len(asked), 1)

    def test_keyboard_interrupt_propagates(self) -> None:
        def progress(attempts: int) -> None:
            raise KeyboardInterrupt()

        self.assertRaises(KeyboardInterrupt, generate_proof_of_work, self.public_key, 256, progress=progress)

    def test_bad_lengths(self) -> None:
        self.assertRaises(ValueError, check_proof_of_work, self.public_key, b"\0" * 23, 0)
        self.assertRaises(ValueError, proof_of_work_bits, self.public_key[:31], b"\0" * 24)
        self.assertRaises(ValueError, generate_proof_of_work, b"short", 0)


class IdentityTests(SynchronousTestCase):
    """
    Tests for L{Identity}.
    """

    def test_generate(self) -> None:
        identity = Identity.generate(8)
        raw = identity.private_key.public_key().public_bytes_raw()
        self.assertEqual(identity.public_key, raw)
        self.assertEqual(identity.peer_id, PeerId.from_public_key(raw))
        self.assertTrue(check_proof_of_work(identity.public_key, identity.proof_of_work_stamp, 8))

    def test_peer_id_derivation(self) -> None:
        identity = make_identity()
        expected = hashlib.blake2b(identity.public_key, digest_size=16).digest()
        self.assertEqual(identity.peer_id.raw, expected)
        self.assertTrue(str(identity.peer_id).startswith("id"))

    def test_repr_hides_secret(self) -> None:
        identity = make_identity()
        secret = identity.private_key.private_bytes_raw()
        self.assertNotIn("private_key", repr(identity))
        self.assertNotIn(secret.hex(), repr(identity))

    def test_json_round_trip(self) -> None:
        identity = make_identity()
        obj = identity.to_json()
        self.assertEqual(set(obj), {"peer_id", "public_key", "secret_key", "proof_of_work_stamp"})
        self.assertEqual(obj["peer_id"], str(identity.peer_id))
        self.assertEqual(obj["secret_key"], identity.private_key.private_bytes_raw().hex())
        loaded = Identity.from_json(json.loads(json.dumps(obj)), 4)
        self.assertEqual(loaded, identity)
        self.assertEqual(loaded.private_key.private_bytes_raw(), identity.private_key.private_bytes_raw())

    def test_peer_id_optional(self) -> None:
        identity = make_identity()
        obj = identity.to_json()
        del obj["peer_id"]
        self.assertEqual(Identity.from_json(obj, 0).peer_id, identity.peer_id)

    def test_constructor_checks_keys(self) -> None:
        identity = make_identity()
        other = Ed25519PrivateKey.generate()
        self.assertRaises(
            IdentityKeysMismatch, Identity, other, identity.public_key, identity.peer_id, identity.proof_of_work_stamp
        )

    def test_constructor_checks_peer_id(self) -> None:
        identity = make_identity()
        wrong = PeerId(b"\0" * 16)
        self.assertRaises(
            IdentityMismatch,
            Identity,
            identity.private_key,
            identity.public_key,
            wrong,
            identity.proof_of_work_stamp,
        )

    def test_invalid_expected_difficulty(self) -> None:
        self.assertRaises(ValueError, Identity.from_json, make_identity().to_json(), 300)


class LoadTests(SynchronousTestCase):
    """
    Tests for L{load_identity}: each problem has its own error, whose
    message names the file.
    """

    def setUp(self) -> None:
        self.identity = Identity.generate(4)
        self.path = self.mktemp()

    def write(self, obj: object) -> None:
        write_json(self.path, obj)

    def write_bytes(self, data: bytes) -> None:
        with open(self.path, "wb") as f:
            f.write(data)
        os.chmod(self.path, 0o600)

    def assertLoadFails(self, error: type[IdentityError], *fragments: str, difficulty: float = 0) -> IdentityError:
        with self.assertRaises(error) as raised:
            load_identity(self.path, difficulty)
        message = str(raised.exception)
        self.assertIn(self.path, message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        self.assertEqual(raised.exception.path, self.path)
        return raised.exception

    def modified(self, **changes: object) -> dict[str, object]:
        obj: dict[str, object] = dict(self.identity.to_json())
        obj.update(changes)
        return obj

    def test_load(self) -> None:
        self.write(self.identity.to_json())
        loaded = load_identity(self.path, 4)
        self.assertEqual(loaded, self.identity)

    def test_missing_file(self) -> None:
        self.assertLoadFails(IdentityFileMissing, "does not exist")

    def test_bad_json(self) -> None:
        self.write_bytes(b'{"public_key": ')
        self.assertLoadFails(IdentityFileMalformed, "not valid JSON (Expecting value: line 1 column 16)")

    def test_truncated_string(self) -> None:
        """
        The decoder's message is followed by where it stopped, read as one
        sentence (the message of an unterminated string ends in "at").
        """
        self.write_bytes(b'{"public_key": "1c0b')
        self.assertLoadFails(
            IdentityFileMalformed, "not valid JSON (Unterminated string starting at: line 1 column 16)"
        )

    def test_empty_file(self) -> None:
        self.write_bytes(b"")
        self.assertLoadFails(IdentityFileMalformed, "empty")

    def test_not_utf8(self) -> None:
        self.write_bytes(b"\xff\xfe{}")
        self.assertLoadFails(IdentityFileMalformed, "UTF-8")

    def test_not_an_object(self) -> None:
        self.write([self.identity.to_json()])
        self.assertLoadFails(IdentityFileMalformed, "expected a JSON object", "array")

    def test_missing_field(self) -> None:
        obj = self.modified()
        del obj["secret_key"]
        self.write(obj)
        self.assertLoadFails(IdentityFileMalformed, "'secret_key'", "missing")

    def test_field_not_a_string(self) -> None:
        self.write(self.modified(public_key=12))
        self.assertLoadFails(IdentityFileMalformed, "'public_key'", "must be a string")

    def test_bad_hex(self) -> None:
        self.write(self.modified(proof_of_work_stamp="zz" * 24))
        self.assertLoadFails(IdentityFileMalformed, "'proof_of_work_stamp'", "not hexadecimal")

    def test_odd_hex(self) -> None:
        self.write(self.modified(public_key=self.identity.public_key.hex()[:-1]))
        self.assertLoadFails(IdentityFileMalformed, "'public_key'", "not hexadecimal")

    def test_wrong_length(self) -> None:
        self.write(self.modified(public_key=self.identity.public_key.hex()[:-2]))
        self.assertLoadFails(IdentityFileMalformed, "'public_key'", "32 bytes", "found 31")

    def test_malformed_peer_id(self) -> None:
        self.write(self.modified(peer_id="idnotapeerid"))
        self.assertLoadFails(IdentityFileMalformed, "'peer_id'")

    def test_peer_id_mismatch(self) -> None:
        other = PeerId(b"\1" * 16)
        self.write(self.modified(peer_id=str(other)))
        self.assertLoadFails(IdentityMismatch, str(other), str(self.identity.peer_id))

    def test_keys_mismatch(self) -> None:
        other = Ed25519PrivateKey.generate().private_bytes_raw()
        self.write(self.modified(secret_key=other.hex()))
        self.assertLoadFails(IdentityKeysMismatch, "secret_key", "public_key")

    def test_insufficient_pow(self) -> None:
        bits = proof_of_work_bits(self.identity.public_key, self.identity.proof_of_work_stamp)
        self.write(self.identity.to_json())
        error = self.assertLoadFails(
            InsufficientProofOfWork, f"{bits + 1} bits required", f"achieves {bits}", difficulty=bits + 1
        )
        assert isinstance(error, InsufficientProofOfWork)
        self.assertEqual((error.required, error.actual), (bits + 1, bits))

    def test_unknown_fields_ignored(self) -> None:
        self.write(self.modified(comment="made by hand"))
        self.assertEqual(load_identity(self.path, 0), self.identity)

    def test_unreadable(self) -> None:
        os.mkdir(self.path)
        error = self.assertLoadFails(IdentityError, "cannot be read")
        self.assertIs(type(error), IdentityError)

    def test_errors_are_distinct(self) -> None:
        classes = [
            IdentityFileMissing,
            IdentityFileMalformed,
            IdentityMismatch,
            IdentityKeysMismatch,
            InsufficientProofOfWork,
            IdentityFileExists,
        ]
        for cls in classes:
            self.assertTrue(issubclass(cls, IdentityError))
            for other in classes:
                if other is not cls:
                    self.assertFalse(issubclass(cls, other))


class SaveTests(SynchronousTestCase):
    """
    Tests for L{save_identity} and L{load_or_create_identity}.
    """

    def setUp(self) -> None:
        self.identity = Identity.generate(4)
        self.data_dir = self.mktemp()
        self.path = os.path.join(self.data_dir, "identity.json")

    def test_save_and_load(self) -> None:
        save_identity(self.path, self.identity)
        self.assertEqual(load_identity(self.path, 4), self.identity)
        with open(self.path) as f:
            self.assertEqual(json.load(f), self.identity.to_json())

    def test_modes(self) -> None:
        save_identity(self.path, self.identity)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.data_dir).st_mode) & 0o077, 0)

    def test_no_temporary_files_left(self) -> None:
        save_identity(self.path, self.identity)
        self.assertEqual(os.listdir(self.data_dir), ["identity.json"])

    def test_refuses_to_overwrite(self) -> None:
        os.mkdir(self.data_dir)
        with open(self.path, "w") as f:
            f.write("precious")
        with self.assertRaises(IdentityFileExists) as raised:
            save_identity(self.path, self.identity)
        self.assertIn(self.path, str(raised.exception))
        with open(self.path) as f:
            self.assertEqual(f.read(), "precious")
        self.assertEqual(os.listdir(self.data_dir), ["identity.json"])

    def test_refuses_when_file_appears(self) -> None:
        """
        A file created after the existence check is not replaced either.
        """
        os.mkdir(self.data_dir)
        self.patch(identity_module.os.path, "lexists", lambda path: False)
        with open(self.path, "w") as f:
            f.write("precious")
        self.assertRaises(IdentityFileExists, save_identity, self.path, self.identity)
        with open(self.path) as f:
            self.assertEqual(f.read(), "precious")
        self.assertEqual(os.listdir(self.data_dir), ["identity.json"])

    def test_without_hard_links(self) -> None:
        """
        Where hard links are not supported, the file is written directly,
        still exclusively.
        """

        def no_link(source: str, destination: str) -> None:
            raise PermissionError(1, "Operation not permitted")

        self.patch(identity_module.os, "link", no_link)
        save_identity(self.path, self.identity)
        self.assertEqual(load_identity(self.path, 4), self.identity)
        self.assertEqual(os.listdir(self.data_dir), ["identity.json"])
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_failed_write_leaves_nothing(self) -> None:
        def broken_fsync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        self.patch(identity_module.os, "fsync", broken_fsync)
        with self.assertRaises(IdentityError) as raised:
            save_identity(self.path, self.identity)
        self.assertIn("Input/output error", str(raised.exception))
        self.assertEqual(os.listdir(self.data_dir), [])

    def test_unwritable_directory(self) -> None:
        with open(self.data_dir, "w") as f:
            f.write("not a directory")
        with self.assertRaises(IdentityError) as raised:
            save_identity(self.path, self.identity)
        self.assertIn("cannot be written", str(raised.exception))
        self.assertIn("not a directory", str(raised.exception))

    def test_load_or_create(self) -> None:
        events: list[LogEvent] = []
        log = Logger(observer=events.append)
        created = load_or_create_identity(self.path, 4, log=log)
        self.assertTrue(check_proof_of_work(created.public_key, created.proof_of_work_stamp, 4))
        self.assertEqual(load_identity(self.path, 4), created)
        reused = load_or_create_identity(self.path, 4, log=log)
        self.assertEqual(reused, created)
        messages = [formatEvent(event) for event in events]
        self.assertIn(f"Generated identity {created.peer_id} and saved it to {self.path}", messages)
        self.assertEqual(messages[-1], f"Loaded identity {created.peer_id} from {self.path}")
        self.assertEqual(events[-1]["peer_id"], str(created.peer_id))

    def test_dangling_symlink_is_not_missing(self) -> None:
        """
        A symbolic link to nothing is not a missing file: loading it says
        what it is, and no identity is generated (saving it would refuse
        to write through the link, after the proof-of-work search).
        """
        os.makedirs(self.data_dir)
        target = os.path.join(self.data_dir, "gone", "identity.json")
        os.symlink(target, self.path)
        generated: list[float] = []
        self.patch(Identity, "generate", lambda difficulty, **kw: generated.append(difficulty))
        with self.assertRaises(IdentityError) as raised:
            load_or_create_identity(self.path, 4)
        self.assertNotIsInstance(raised.exception, IdentityFileMissing)
        self.assertEqual(
            str(raised.exception),
            f"identity file {self.path}: is a symbolic link to {target}, which does not exist; "
            "restore its target or remove the link",
        )
        self.assertEqual(generated, [])

    def test_load_or_create_refuses_weak_file(self) -> None:
        save_identity(self.path, self.identity)
        bits = proof_of_work_bits(self.identity.public_key, self.identity.proof_of_work_stamp)
        self.assertRaises(InsufficientProofOfWork, load_or_create_identity, self.path, bits + 1)
        with open(self.path) as f:
            self.assertEqual(json.load(f), self.identity.to_json())
