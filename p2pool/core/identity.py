# -*- test-case-name: tests.test_identity -*-
"""
A node's identity: an Ed25519 key pair, the peer id derived from it, and a
proof-of-work stamp that makes identities costly to mass-produce.

The proof of work follows Tezos: a 24-byte stamp is valid for a public key
at difficulty C{d} when the BLAKE2b-256 hash of C{public_key + stamp}, read
as a little-endian integer, is at most L{pow_target}C{(d)}. For an integer
difficulty that means the hash ends with C{d} zero bits.

The identity lives in a JSON file (C{identity.json}) holding the peer id,
the public key, the raw 32-byte private seed and the stamp, all hex. The
file is written once, with mode 0600, and never overwritten.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import math
import os
import random
import re
import secrets
import shlex
import stat
import time
from collections.abc import Callable

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.logger import Logger

from p2pool.core.addressing import AddressError, PeerId
from p2pool.core.files import open_regular_file, shared_permissions

__all__ = [
    "Identity",
    "IdentityError",
    "IdentityFileExists",
    "IdentityFileInsecure",
    "IdentityFileMalformed",
    "IdentityFileMissing",
    "IdentityKeysMismatch",
    "IdentityMismatch",
    "InsufficientProofOfWork",
    "ProofOfWorkProgress",
    "check_proof_of_work",
    "expected_attempts",
    "generate_proof_of_work",
    "load_identity",
    "load_or_create_identity",
    "pow_target",
    "proof_of_work_bits",
    "save_identity",
]

PUBLIC_KEY_SIZE = 32
SECRET_KEY_SIZE = 32
STAMP_SIZE = 24
HASH_SIZE = 32
MAX_DIFFICULTY = 256

#: Seconds between two lines of proof-of-work progress in a node's log.
PROGRESS_LOG_INTERVAL = 10.0

_STAMP_LIMIT = 1 << (8 * STAMP_SIZE)
_PROGRESS_INTERVAL = 1 << 14
_MAX_FILE_SIZE = 64 * 1024
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")

_log = Logger()

ProgressCallback = Callable[[int], None]
StopCallback = Callable[[], bool]


class IdentityError(Exception):
    """
    An identity could not be loaded, checked, generated or saved.

    @ivar problem: what is wrong, without the file name.
    @ivar path: the identity file concerned, when there is one; L{load_identity}
        and L{save_identity} fill it in.
    """

    def __init__(self, problem: str, path: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = path

    def __str__(self) -> str:
        if self.path is None:
            return self.problem
        return f"identity file {self.path}: {self.problem}"


class IdentityFileMissing(IdentityError):
    """
    There is no identity file at the given path.
    """


class IdentityFileMalformed(IdentityError):
    """
    The identity file is not a JSON object with well-formed fields; the
    message names the field and the problem.
    """


class IdentityMismatch(IdentityError):
    """
    The peer id recorded in the file is not the one of its public key.
    """


class IdentityKeysMismatch(IdentityError):
    """
    The secret key in the file does not belong to its public key.
    """


class InsufficientProofOfWork(IdentityError):
    """
    The proof-of-work stamp does not reach the required difficulty.

    @ivar required: the difficulty that was asked for.
    @ivar actual: the integer difficulty (zero bits) the stamp achieves.
    """

    def __init__(self, required: float, actual: int, path: str | None = None) -> None:
        super().__init__(
            f"proof of work too weak: {_format_difficulty(required)} bits required, the stamp achieves {actual}",
            path,
        )
        self.required = required
        self.actual = actual


class IdentityFileInsecure(IdentityError):
    """
    The identity file may be read (or written) by its group or by other
    users; like OpenSSH with private keys, such a file is not used. The
    message gives the C{chmod} that fixes it.
    """


class IdentityFileExists(IdentityError):
    """
    An identity file is already there; identities are never overwritten.
    """


def _format_difficulty(difficulty: float) -> str:
    return f"{difficulty:g}"


# Cached: every handshake checks a proof of work against the same difficulty
# (typed, so that True is refused as it would be, not taken for 1).
@functools.lru_cache(maxsize=64, typed=True)
def pow_target(difficulty: float) -> int:
    """
    The largest hash value (as a little-endian integer) accepted at
    C{difficulty}, following Tezos' C{make_pow_target}. For an integer
    difficulty C{d} this is C{2 ** (256 - d) - 1}; difficulty 0 accepts every
    hash. Fractional difficulties interpolate between integer ones.

    @raise ValueError: C{difficulty} is NaN or outside 0..256.
    @raise TypeError: C{difficulty} is not a number.
    """
    if isinstance(difficulty, bool) or not isinstance(difficulty, (int, float)):
        raise TypeError(f"a proof-of-work difficulty is a number, not {difficulty!r}")
    if not 0 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"proof-of-work difficulty must be between 0 and {MAX_DIFFICULTY}, not {difficulty!r}")
    frac, whole = math.modf(float(difficulty))
    shift = int(whole)
    if frac == 0:
        mantissa = (1 << 54) - 1
    else:
        mantissa = math.floor(2.0 ** (54 - frac))
    if shift < 202:
        return (mantissa << (202 - shift)) | ((1 << (202 - shift)) - 1)
    return mantissa >> (shift - 202)


def expected_attempts(difficulty: float) -> int:
    """
    How many stamps a search at C{difficulty} tries on average.
    """
    return max(1, (1 << 256) // (pow_target(difficulty) + 1))


def _duration(seconds: float) -> str:
    """
    A duration for people: C{45 s}, C{3 min 20 s}, C{2 h 5 min}, C{3 days}.
    """
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{round(hours / 24)} days"


class ProofOfWorkProgress:
    """
    What to report of a proof-of-work search, and when: given the attempts
    so far (a L{generate_proof_of_work} progress callback), a line at most
    every C{interval} seconds with the attempts, the hash rate and, when the
    difficulty is known, the time the search is expected to take yet (which,
    each attempt being independent, is the same at every moment:
    L{expected_attempts} at the current rate).
    """

    def __init__(self, difficulty: float | None, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._expected = expected_attempts(difficulty) if difficulty is not None else None
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last_shown = self._started

    def __call__(self, attempts: int) -> str | None:
        """
        The line to show after C{attempts}, or C{None} when it is not yet
        time for one.
        """
        now = self._clock()
        if now - self._last_shown < self._interval:
            return None
        self._last_shown = now
        elapsed = now - self._started
        rate = attempts / elapsed if elapsed > 0 else 0.0
        text = f"proof of work: {attempts:,} attempts, {rate:,.0f} hashes/s"
        if self._expected is not None and rate > 0:
            text += f", about {_duration(self._expected / rate)} more expected"
        return text


def _check_difficulty(difficulty: float) -> None:
    """
    @raise ValueError: C{difficulty} is not a valid proof-of-work difficulty.
    """
    pow_target(difficulty)


def _check_length(name: str, value: object, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, not {value!r}")


def _stamp_hash(public_key: bytes, stamp: bytes) -> int:
    _check_length("public key", public_key, PUBLIC_KEY_SIZE)
    _check_length("proof-of-work stamp", stamp, STAMP_SIZE)
    digest = hashlib.blake2b(public_key + stamp, digest_size=HASH_SIZE).digest()
    return int.from_bytes(digest, "little")


def check_proof_of_work(public_key: bytes, stamp: bytes, difficulty: float) -> bool:
    """
    Whether C{stamp} is a valid proof of work for C{public_key} at
    C{difficulty}.

    @raise ValueError: wrong key or stamp length, or invalid difficulty.
    """
    return _stamp_hash(public_key, stamp) <= pow_target(difficulty)


def proof_of_work_bits(public_key: bytes, stamp: bytes) -> int:
    """
    How many leading bits of the stamp's hash (as a little-endian integer)
    are zero: the highest integer difficulty the stamp satisfies.

    @raise ValueError: wrong key or stamp length.
    """
    return 8 * HASH_SIZE - _stamp_hash(public_key, stamp).bit_length()


def _search(base: hashlib.blake2b, target: int, start: int, end: int) -> bytes | None:
    """
    Try the stamps C{start} .. C{end - 1}; the first valid one, or None.
    """
    copy = base.copy
    from_bytes = int.from_bytes
    for value in range(start, end):
        stamp = value.to_bytes(STAMP_SIZE, "big")
        attempt = copy()
        attempt.update(stamp)
        if from_bytes(attempt.digest(), "little") <= target:
            return stamp
    return None


def generate_proof_of_work(
    public_key: bytes,
    difficulty: float,
    *,
    progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
    rng: random.Random | None = None,
) -> bytes:
    """
    Find a stamp for C{public_key} at C{difficulty}: start from a random
    stamp and count up (big-endian, wrapping around) until one is valid.
    About C{2 ** difficulty} attempts are needed on average.

    Every 2**14 attempts or so, C{progress} (if given) is called with the
    number of attempts so far, then C{should_stop} (if given) is asked
    whether to give up. C{KeyboardInterrupt} propagates untouched.

    @param rng: where the starting stamp comes from; the system's secure
        source by default.
    @raise IdentityError: C{should_stop} returned true.
    @raise ValueError: wrong key length or invalid difficulty.
    """
    _check_length("public key", public_key, PUBLIC_KEY_SIZE)
    target = pow_target(difficulty)
    base = hashlib.blake2b(public_key, digest_size=HASH_SIZE)
    counter = (rng or random.SystemRandom()).getrandbits(8 * STAMP_SIZE)
    attempts = 0
    while True:
        end = min(counter + _PROGRESS_INTERVAL, _STAMP_LIMIT)
        found = _search(base, target, counter, end)
        if found is not None:
            return found
        attempts += end - counter
        counter = end % _STAMP_LIMIT
        if progress is not None:
            progress(attempts)
        if should_stop is not None and should_stop():
            raise IdentityError("proof-of-work search interrupted")


def _raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes_raw()


def _check_private_key(
    instance: Identity, attribute: attrs.Attribute[Ed25519PrivateKey], value: Ed25519PrivateKey
) -> None:
    if not isinstance(value, Ed25519PrivateKey):
        raise TypeError(f"private_key must be an Ed25519PrivateKey, not {value!r}")


def _check_public_key(instance: Identity, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    _check_length("public_key", value, PUBLIC_KEY_SIZE)


def _check_stamp(instance: Identity, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    _check_length("proof_of_work_stamp", value, STAMP_SIZE)


@attrs.frozen
class Identity:
    """
    A node's key pair, peer id and proof-of-work stamp.

    Construction checks that the three belong together: the private key
    must match C{public_key} (else L{IdentityKeysMismatch}) and C{peer_id}
    must be the one of C{public_key} (else L{IdentityMismatch}). The proof
    of work is checked against a difficulty only when loading.
    """

    private_key: Ed25519PrivateKey = attrs.field(repr=False, eq=False, validator=_check_private_key)
    public_key: bytes = attrs.field(validator=_check_public_key)
    peer_id: PeerId = attrs.field(validator=attrs.validators.instance_of(PeerId))
    proof_of_work_stamp: bytes = attrs.field(validator=_check_stamp)

    def __attrs_post_init__(self) -> None:
        if _raw_public_key(self.private_key) != self.public_key:
            raise IdentityKeysMismatch("secret_key does not belong to public_key")
        derived = PeerId.from_public_key(self.public_key)
        if derived != self.peer_id:
            raise IdentityMismatch(f"peer_id {self.peer_id} does not match public_key (whose peer id is {derived})")

    @classmethod
    def generate(
        cls,
        difficulty: float,
        *,
        progress: ProgressCallback | None = None,
        should_stop: StopCallback | None = None,
    ) -> Identity:
        """
        A fresh identity: a new key pair and a proof of work at
        C{difficulty} (see L{generate_proof_of_work} for the callbacks).
        """
        private_key = Ed25519PrivateKey.generate()
        public_key = _raw_public_key(private_key)
        stamp = generate_proof_of_work(public_key, difficulty, progress=progress, should_stop=should_stop)
        return cls(private_key, public_key, PeerId.from_public_key(public_key), stamp)

    def to_json(self) -> dict[str, str]:
        """
        The JSON object stored in an identity file (includes the secret key).
        """
        return {
            "peer_id": str(self.peer_id),
            "public_key": self.public_key.hex(),
            "secret_key": self.private_key.private_bytes_raw().hex(),
            "proof_of_work_stamp": self.proof_of_work_stamp.hex(),
        }

    @classmethod
    def from_json(cls, obj: object, expected_proof_of_work: float) -> Identity:
        """
        Parse and check an identity file's JSON object. The C{peer_id} field
        is optional; when present it must match the public key. Unknown
        fields are ignored.

        @raise IdentityFileMalformed: not an object, or a field is missing,
            not a string, not hex, or the wrong length.
        @raise IdentityKeysMismatch: the secret key is not the public key's.
        @raise IdentityMismatch: C{peer_id} is not the public key's.
        @raise InsufficientProofOfWork: the stamp is below
            C{expected_proof_of_work}.
        @raise ValueError: C{expected_proof_of_work} is not a valid difficulty.
        """
        _check_difficulty(expected_proof_of_work)
        if not isinstance(obj, dict):
            raise IdentityFileMalformed(f"expected a JSON object, found {_json_kind(obj)}")
        public_key = _hex_field(obj, "public_key", PUBLIC_KEY_SIZE)
        secret_key = _hex_field(obj, "secret_key", SECRET_KEY_SIZE)
        stamp = _hex_field(obj, "proof_of_work_stamp", STAMP_SIZE)
        peer_id = _peer_id_field(obj)
        if peer_id is None:
            peer_id = PeerId.from_public_key(public_key)
        private_key = Ed25519PrivateKey.from_private_bytes(secret_key)
        identity = cls(private_key, public_key, peer_id, stamp)
        if not check_proof_of_work(public_key, stamp, expected_proof_of_work):
            raise InsufficientProofOfWork(expected_proof_of_work, proof_of_work_bits(public_key, stamp))
        return identity


def _json_kind(value: object) -> str:
    kinds: list[tuple[type, str]] = [
        (bool, "a boolean"),
        (str, "a string"),
        (int, "a number"),
        (float, "a number"),
        (list, "an array"),
        (dict, "an object"),
    ]
    for kind, name in kinds:
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


def _string_field(obj: dict[str, object], name: str) -> str:
    if name not in obj:
        raise IdentityFileMalformed(f"field {name!r} is missing")
    value = obj[name]
    if not isinstance(value, str):
        raise IdentityFileMalformed(f"field {name!r} must be a string, found {_json_kind(value)}")
    return value


def _hex_field(obj: dict[str, object], name: str, size: int) -> bytes:
    text = _string_field(obj, name)
    if not _HEX.fullmatch(text):
        raise IdentityFileMalformed(f"field {name!r} is not hexadecimal")
    raw = bytes.fromhex(text)
    if len(raw) != size:
        raise IdentityFileMalformed(
            f"field {name!r} must be {size} bytes ({2 * size} hex digits), found {len(raw)} bytes"
        )
    return raw


def _peer_id_field(obj: dict[str, object]) -> PeerId | None:
    if "peer_id" not in obj:
        return None
    text = _string_field(obj, "peer_id")
    try:
        return PeerId.parse(text)
    except AddressError as e:
        raise IdentityFileMalformed(f"field 'peer_id': {e}") from None


def _read_file(path: str) -> bytes:
    """
    The content of the identity file: a regular file (anything else is
    refused at once, never waited on) that only its owner may access.
    """
    try:
        with open_regular_file(path) as f:
            mode = os.fstat(f.fileno()).st_mode
            if shared_permissions(mode):
                raise IdentityFileInsecure(
                    f"permissions {stat.S_IMODE(mode):04o} are too open: the secret key must not be "
                    f"accessible by group or other users; run: chmod 600 {shlex.quote(path)}",
                    path,
                )
            data = f.read(_MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        if os.path.islink(path):
            # Not missing: a new identity would not be written through it.
            raise IdentityError(
                f"is a symbolic link to {os.readlink(path)}, which does not exist; restore its target or remove the link",
                path,
            ) from None
        raise IdentityFileMissing("does not exist", path) from None
    except OSError as e:
        raise IdentityError(f"cannot be read: {e.strerror or e}", path) from None
    if len(data) > _MAX_FILE_SIZE:
        raise IdentityFileMalformed(f"is larger than {_MAX_FILE_SIZE} bytes; not an identity file", path)
    return data


def _parse_json(data: bytes) -> object:
    if not data.strip():
        raise IdentityFileMalformed("is empty; delete it to generate a new identity")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise IdentityFileMalformed("is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise IdentityFileMalformed(f"is not valid JSON ({e.msg}: line {e.lineno} column {e.colno})") from None
    except (ValueError, RecursionError):
        raise IdentityFileMalformed("is not valid JSON") from None


def load_identity(path: str, expected_proof_of_work: float) -> Identity:
    """
    Read and check the identity file at C{path} (see L{Identity.from_json}).
    Error messages name the file.

    @raise IdentityFileMissing: there is no file at C{path}.
    @raise IdentityError: the file cannot be read, or one of the subclasses
        listed in L{Identity.from_json}.
    """
    _check_difficulty(expected_proof_of_work)
    data = _read_file(path)
    try:
        return Identity.from_json(_parse_json(data), expected_proof_of_work)
    except IdentityError as e:
        e.path = path
        raise


def _write_new_file(path: str, data: bytes) -> None:
    """
    Create C{path} (mode 0600, failing if it exists), write C{data} and
    fsync it; on failure remove what was created.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _remove_quietly(path)
        raise


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _sync_directory(directory: str) -> None:
    try:
        fd = os.open(directory or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV}


def _publish_new_file(path: str, data: bytes) -> None:
    """
    Make C{path} appear with content C{data}, whole or not at all, without
    ever replacing an existing file: write a temporary file next to it,
    then hard-link it into place. Where hard links are unavailable, fall
    back to writing C{path} directly with C{O_EXCL}.

    @raise FileExistsError: C{path} already exists.
    """
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
    _write_new_file(temporary, data)
    try:
        os.link(temporary, path)
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        _write_new_file(path, data)
    finally:
        _remove_quietly(temporary)
    _sync_directory(directory)


def _make_directory(directory: str, path: str) -> None:
    """
    Create C{directory} (mode 0700) and its parents unless it exists.

    @raise IdentityError: it cannot be created, or is not a directory.
    """
    if not directory or os.path.isdir(directory):
        return
    try:
        os.makedirs(directory, mode=0o700)
    except FileExistsError:
        if not os.path.isdir(directory):
            raise IdentityError(f"cannot be written: {directory} is not a directory", path) from None
    except OSError as e:
        raise IdentityError(f"cannot be written: cannot create {directory}: {e.strerror or e}", path) from None


def save_identity(path: str, identity: Identity) -> None:
    """
    Write C{identity} to a new file at C{path} with mode 0600, creating the
    parent directory (mode 0700) if needed. The file appears complete or
    not at all, and an existing file is never overwritten.

    @raise IdentityFileExists: there is already a file at C{path}.
    @raise IdentityError: the directory or file cannot be written.
    """
    data = (json.dumps(identity.to_json(), indent=2) + "\n").encode("ascii")
    directory = os.path.dirname(path)
    _make_directory(directory, path)
    try:
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "exists", path)
        _publish_new_file(path, data)
    except FileExistsError:
        raise IdentityFileExists("already exists; refusing to overwrite it", path) from None
    except OSError as e:
        raise IdentityError(f"cannot be written: {e.strerror or e}", path) from None


def load_or_create_identity(
    path: str,
    difficulty: float,
    *,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Logger | None = None,
) -> Identity:
    """
    Load the identity at C{path}, requiring proof of work C{difficulty};
    if there is no file, generate a new identity at that difficulty and
    save it there.

    @param progress: passed to L{generate_proof_of_work}.
    @param should_stop: passed to L{generate_proof_of_work}.
    @param log: where to log what happened; this module's logger by default.
    @raise IdentityError: an existing file is unusable (it is never
        replaced), or the new one cannot be saved.
    """
    log = log or _log
    try:
        identity = load_identity(path, difficulty)
    except IdentityFileMissing:
        pass
    else:
        log.info("Loaded identity {peer_id} from {path}", peer_id=str(identity.peer_id), path=path)
        return identity
    log.info(
        "No identity at {path}; generating one with proof of work {difficulty}",
        path=path,
        difficulty=difficulty,
    )
    identity = Identity.generate(difficulty, progress=progress, should_stop=should_stop)
    save_identity(path, identity)
    log.info("Generated identity {peer_id} and saved it to {path}", peer_id=str(identity.peer_id), path=path)
    return identity
