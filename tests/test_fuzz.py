# -*- test-case-name: tests.test_fuzz -*-
"""
Fuzz tests of every decoder that reads bytes or text p2pool does not
control: frames and control bodies (L{p2pool.wire}), the handshake fed
arbitrary frames (L{p2pool.core.handshake}), points and peer ids
(L{p2pool.addressing}), identity files (L{p2pool.identity}), configuration
mappings and TOML files (L{p2pool.config}), peers files
(L{p2pool.pool.persistence}), seed documents fetched from bootstrap URLs
(L{p2pool.pool.bootstrap_urls}), admin API requests (L{p2pool.admin}), and a whole node
receiving garbage on an established connection.

Each target is a L{FuzzTarget}: a Hypothesis strategy that produces
near-valid inputs (valid encodings with mutated fields, truncations,
extensions, spliced fragments) as well as raw bytes, and a check that runs
the decoder on one input and asserts the property "only the documented
typed errors escape", plus what the decoder promises besides (round trips,
every record kept or reported, the right connection closed and greylisted).

The number of examples per target is C{P2POOL_FUZZ_EXAMPLES} (default
L{DEFAULT_EXAMPLES}) times the target's weight; the expensive targets weigh
less. C{bench/fuzz.py} runs the same targets with far more examples.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
import struct
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

import p2pool.core.addressing
import p2pool.core.base58
from p2pool.admin.resources import MAX_BODY_SIZE, ROUTES
from p2pool.config import (
    CONFIG_KEYS,
    ConfigError,
    PoolConfig,
    config_from_mapping,
    load_config,
)
from p2pool.core.addressing import AddressError, PeerId, Point, PointSpec, normalise_ip
from p2pool.core.handshake import (
    Accept,
    Decision,
    Handshake,
    HandshakeParams,
    HandshakeState,
    Refuse,
    RemoteInfo,
    nack_refusal,
    select_version,
)
from p2pool.core.identity import (
    Identity,
    IdentityError,
    check_proof_of_work,
    generate_proof_of_work,
    load_identity,
    proof_of_work_bits,
)
from p2pool.core.wire import (
    HANDSHAKE_MAX_BODY,
    MESSAGE_KIND,
    Ack,
    Advertise,
    Bootstrap,
    ControlMessage,
    Disconnect,
    FrameDecoder,
    Hello,
    Kind,
    Nack,
    Ping,
    Pong,
    SwapAck,
    SwapRequest,
    decode_control,
    encode,
    encode_message,
    frame,
)
from p2pool.errors import (
    DecodingError,
    DisconnectReason,
    InvalidMessageSize,
    Myself,
    NackMotive,
    NotEnoughProofOfWork,
    P2PError,
    RejectedByNack,
    RejectedNoCommonProtocol,
)
from p2pool.interfaces import BasePoolApplication
from p2pool.pool.bootstrap_urls import MAX_ENTRIES as SEED_MAX_ENTRIES
from p2pool.pool.bootstrap_urls import SeedError, parse_seed_document
from p2pool.pool.persistence import (
    IncompatibleFile,
    PeersFileError,
    decode_document,
    format_time,
    read_peers_file,
)
from p2pool.testing.network import MemoryNetwork
from tests.adminhelpers import IP_B, TOKEN, MemoryAdmin

__all__ = ["DEFAULT_EXAMPLES", "EXAMPLES_ENV", "TARGETS", "FuzzTarget", "examples"]

# ---------------------------------------------------------------------------
# The profile

#: The environment variable that sets the examples per target (at weight 1).
EXAMPLES_ENV = "P2POOL_FUZZ_EXAMPLES"
#: Examples per target at weight 1 when L{EXAMPLES_ENV} is not set.
DEFAULT_EXAMPLES = 200

_HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]


def examples(weight: float = 1.0) -> int:
    """
    The examples a target of C{weight} runs: C{P2POOL_FUZZ_EXAMPLES} (or
    L{DEFAULT_EXAMPLES}) times C{weight}, at least 1.
    """
    text = os.environ.get(EXAMPLES_ENV, "").strip()
    base = int(text) if text else DEFAULT_EXAMPLES
    return max(1, int(base * weight))


@attrs.frozen
class FuzzTarget:
    """
    One decoder under fuzzing.

    @ivar name: a short name, used in the benchmark's report.
    @ivar strategy: generates one input.
    @ivar check: runs the decoder on an input (with the harness, if any)
        and raises C{AssertionError}, or lets an unexpected exception out,
        when the property fails.
    @ivar weight: this target's share of L{examples} (expensive targets
        weigh less).
    @ivar open_harness: builds what C{check} needs (e.g. a node serving the
        admin API), reused across examples; None when nothing is needed.
    @ivar close_harness: disposes of it.
    """

    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any, Any], None]
    weight: float = 1.0
    open_harness: Callable[[], Any] | None = None
    close_harness: Callable[[Any], None] | None = None

    def settings(self) -> settings:
        """
        The Hypothesis settings of this target in the test suite.
        """
        return settings(max_examples=examples(self.weight), deadline=None, suppress_health_check=_HEALTH)


# ---------------------------------------------------------------------------
# Generic mutations


_SPECIAL_BYTES = [0, 1, 2, 0x0F, 0x10, 0x11, 16, 17, 99, 100, 101, 0x7F, 0x80, 0xFE, 0xFF]


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes, max_ops: int = 4) -> bytes:
    """
    C{data} after up to C{max_ops} random edits: bit flips, byte overwrites
    with boundary values, insertions, deletions, truncation, extension and
    duplication of a slice.
    """
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "extend", "duplicate"]))
        if op == "truncate":
            del buf[draw(st.integers(0, len(buf))) :]
        elif op == "extend":
            buf += draw(st.binary(min_size=1, max_size=16))
        elif op == "insert":
            at = draw(st.integers(0, len(buf)))
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif not buf:
            buf += draw(st.binary(min_size=1, max_size=4))
        elif op == "flip":
            at = draw(st.integers(0, len(buf) - 1))
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            at = draw(st.integers(0, len(buf) - 1))
            buf[at] = draw(st.sampled_from(_SPECIAL_BYTES) | st.integers(0, 255))
        elif op == "delete":
            at = draw(st.integers(0, len(buf) - 1))
            del buf[at : at + draw(st.integers(1, 8))]
        else:
            at = draw(st.integers(0, len(buf) - 1))
            chunk = buf[at : at + draw(st.integers(1, 16))]
            to = draw(st.integers(0, len(buf)))
            buf[to:to] = chunk
    return bytes(buf)


@st.composite
def mutated_text(draw: st.DrawFn, text: str, max_ops: int = 3) -> str:
    """
    C{text} after up to C{max_ops} character edits: replacement, insertion,
    deletion, truncation, extension.
    """
    chars = list(text)
    interesting = st.sampled_from(list(":[]#%.0123456789abcdefABCDEFxyz-_/ \t\n\x00é²١\ufeff")) | st.characters()
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "extend"]))
        if op == "truncate":
            del chars[draw(st.integers(0, len(chars))) :]
        elif op == "extend":
            chars.extend(draw(st.text(min_size=1, max_size=8)))
        elif op == "insert" or not chars:
            chars.insert(draw(st.integers(0, len(chars))), draw(interesting))
        elif op == "replace":
            chars[draw(st.integers(0, len(chars) - 1))] = draw(interesting)
        else:
            del chars[draw(st.integers(0, len(chars) - 1))]
    return "".join(chars)


def maybe_mutated_text(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """
    Texts of C{base}, as they are or mutated.
    """
    return base | base.flatmap(mutated_text)


#: Integers at and around the boundaries decoders check, and beyond what
#: a float or C{int(str)} can hold.
# (Built by map so that the strategies' reprs stay short.)
huge_integers = st.sampled_from([400, -400, 4299]).map(lambda e: 10**e if e > 0 else -(10**-e)) | st.sampled_from(
    [2**63, -(2**63), 2**64, 2**1024]
)
interesting_integers = (
    st.integers(-3, 3)
    | st.sampled_from([255, 256, 65535, 65536, 2**16 + 1, 2**30, 2**31 - 1, 2**31, 2**32, 8191, 8192])
    | st.integers()
    | huge_integers
)
interesting_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 0.5, 1e-9, 1e308, -1e308, 256.0, 256.5, float("nan"), float("inf"), float("-inf")]
)

#: Arbitrary JSON values, numbers at every size included.
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | interesting_integers | interesting_floats | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_json(draw: st.DrawFn, value: Any, max_ops: int = 3) -> Any:
    """
    A deep copy of the JSON value C{value} after up to C{max_ops} edits,
    each at a random place in the tree: the node replaced by any JSON
    value, a key removed or added, an element removed or duplicated, a
    string mutated.
    """
    root = [copy.deepcopy(value)]
    for _ in range(draw(st.integers(1, max_ops))):
        parent: Any = root
        key: Any = 0
        node = root[0]
        while isinstance(node, (list, dict)) and node and (parent is root or draw(st.integers(0, 2)) > 0):
            key = draw(st.sampled_from(sorted(node, key=str) if isinstance(node, dict) else range(len(node))))
            parent, node = node, node[key]
        op = draw(st.sampled_from(["replace", "remove", "add", "duplicate", "text"]))
        if op == "replace" or parent is root:
            parent[key] = draw(json_values)
        elif op == "remove":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_values)
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(draw(st.integers(0, len(parent))), copy.deepcopy(node))
        elif op == "text" and isinstance(node, str):
            parent[key] = draw(mutated_text(node))
        else:
            parent[key] = draw(json_values)
    return root[0]


def _mostly(good: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """
    C{good} three times in four, else a value of C{other}.
    """
    return st.integers(0, 3).flatmap(lambda n: st.just(good) if n else other)


def deeply_nested(opener: bytes, closer: bytes = b"") -> st.SearchStrategy[bytes]:
    """
    Bytes nesting C{opener} thousands deep (beyond the recursion limit).
    """
    return st.integers(900, 100_000).map(lambda n: opener * n + closer * n)


def chunks(data: bytes, cuts: Sequence[int]) -> Iterator[bytes]:
    """
    C{data} split at the sorted offsets C{cuts}.
    """
    start = 0
    for cut in sorted(cuts):
        cut = min(max(cut, start), len(data))
        yield data[start:cut]
        start = cut
    yield data[start:]


# ---------------------------------------------------------------------------
# Addresses (used by most targets)


ipv4_texts = st.ip_addresses(v=4).map(str)
ipv6_texts = st.ip_addresses(v=6).map(str)
near_ipv4_texts = st.lists(
    st.integers(0, 999).map(str) | st.sampled_from(["00", "01", "0x1", "", "-1", "256"]), min_size=1, max_size=6
).map(".".join)
host_texts = st.one_of(
    ipv4_texts,
    ipv6_texts.map(lambda ip: f"[{ip}]"),
    ipv6_texts,
    ipv4_texts.map(lambda ip: f"[::ffff:{ip}]"),
    near_ipv4_texts,
    st.sampled_from(
        [
            "[fe80::1%eth0]",
            "[::1",
            "::1]",
            "[]",
            "",
            "localhost",
            "example.org",
            "-a-.org",
            "a" * 64 + ".org",
            "exämple.org",
            "[1.2.3.4]",
        ]
    ),
    st.from_regex(r"[a-z0-9-]{1,20}(\.[a-z0-9-]{1,20}){0,3}\.?", fullmatch=True),
)
port_texts = st.one_of(
    st.integers(0, 65535).map(str),
    st.integers(-10, 10**7).map(str),
    st.text("0123456789", min_size=1, max_size=30),
    st.sampled_from(["", "²", "١٢", "+1", "-1", " 80", "80 ", "0x50", "1_000", "065535", "065536"]),
    st.integers(4290, 5000).map(lambda n: "9" * n),
    st.integers(4290, 5000).map(lambda n: "0" * n + "1"),
    st.integers(6, 30).map(lambda n: "0" * n + "9" * 5),
)
point_texts = maybe_mutated_text(st.builds(lambda host, port: f"{host}:{port}", host_texts, port_texts)) | st.text(
    max_size=40
)
wire_points = st.builds(Point, ipv4_texts | ipv6_texts, st.integers(0, 65535))
peer_ids = st.binary(min_size=16, max_size=16).map(PeerId)
peer_id_texts = (
    maybe_mutated_text(peer_ids.map(str))
    | st.text(max_size=40)
    | st.sampled_from(["", "id", "1" * 30])
    | st.integers(65, 100_000).map(lambda n: "z" * n)
)


# ---------------------------------------------------------------------------
# Wire: control bodies


_CONTROL_KINDS = frozenset(int(k) for k in Kind) - {MESSAGE_KIND}
_KIND_OF: dict[type, int] = {
    Hello: Kind.HELLO,
    Ack: Kind.ACK,
    Nack: Kind.NACK,
    Disconnect: Kind.DISCONNECT,
    Bootstrap: Kind.BOOTSTRAP,
    Advertise: Kind.ADVERTISE,
    SwapRequest: Kind.SWAP_REQUEST,
    SwapAck: Kind.SWAP_ACK,
    Ping: Kind.PING,
    Pong: Kind.PONG,
}
_DECODING_ERROR_PREFIXES = ("malformed ", "unknown frame kind", "unexpected frame kind")

wire_texts = st.text(max_size=60).filter(lambda s: len(s.encode("utf-8")) <= 255)
#: Short lists, and lists at the limit of 100 (one point repeated: cheap to
#: generate, and the decoder does not care).
point_lists = st.lists(wire_points, max_size=8) | st.builds(lambda p, n: [p] * n, wire_points, st.integers(98, 100))
hellos = st.builds(
    Hello,
    port=st.integers(0, 65535),
    proof_of_work_stamp=st.binary(min_size=24, max_size=24),
    network=wire_texts,
    p2p_versions=st.lists(st.integers(0, 65535), min_size=1, max_size=16).map(tuple),
    application_versions=st.lists(st.integers(0, 65535), max_size=16).map(tuple),
    private_mode=st.booleans(),
    metadata=st.binary(max_size=300),
)
control_messages: st.SearchStrategy[ControlMessage] = st.one_of(
    hellos,
    st.builds(Nack, st.integers(0, 65535), point_lists.map(tuple)),
    st.builds(Advertise, point_lists.map(tuple)),
    st.builds(SwapRequest, wire_points, peer_ids),
    st.builds(SwapAck, wire_points, peer_ids),
    st.sampled_from([Ack(), Disconnect(), Bootstrap(), Ping(), Pong()]),
)
any_kind = st.sampled_from(sorted(int(k) for k in Kind)) | st.integers(0, 255)


@attrs.frozen
class ControlCase:
    """
    One control body to decode; C{origin} is the message it encodes when it
    is an unmutated encoding.
    """

    kind: int
    body: bytes
    origin: ControlMessage | None = None


@st.composite
def control_cases(draw: st.DrawFn) -> ControlCase:
    """
    Valid control bodies, the same mutated (and sometimes given another
    kind), and raw bytes under any kind.
    """
    if draw(st.integers(0, 7)) == 0:
        return ControlCase(draw(any_kind), draw(st.binary(max_size=400)))
    msg = draw(control_messages)
    encoded = encode(msg)
    kind, body = encoded[4], encoded[5:]
    if draw(st.integers(0, 3)) == 0:
        return ControlCase(kind, body, msg)
    new_body = draw(mutated_bytes(body))
    new_kind = kind if draw(st.booleans()) else draw(any_kind)
    return ControlCase(new_kind, new_body, msg if (new_kind, new_body) == (kind, body) else None)


def check_control(case: ControlCase, harness: object = None) -> None:
    """
    C{decode_control} either refuses the body with a L{DecodingError}
    saying what is wrong, or returns the message of that kind, which
    encodes back to a body that decodes to the same message (the very same
    body for a Hello), and an unmutated encoding always decodes to its
    message.
    """
    try:
        msg = decode_control(case.kind, case.body)
    except DecodingError as e:
        assert str(e).startswith(_DECODING_ERROR_PREFIXES), f"unexplained decoding error {e!r}"
        assert case.origin is None, f"the encoding of {case.origin!r} was refused: {e}"
        return
    assert case.kind in _CONTROL_KINDS, f"kind 0x{case.kind:02x} decoded as {msg!r}"
    assert _KIND_OF[type(msg)] == case.kind, f"kind 0x{case.kind:02x} decoded as {msg!r}"
    if case.origin is not None:
        assert msg == case.origin, f"{case.origin!r} decoded as {msg!r}"
    if isinstance(msg, Hello) and len(case.body) > HANDSHAKE_MAX_BODY:
        try:
            encode(msg)
        except ValueError:
            return
        raise AssertionError(f"a Hello body of {len(case.body)} bytes was re-encoded")
    again = encode(msg)
    assert again[4] == case.kind
    assert decode_control(again[4], again[5:]) == msg, f"{msg!r} does not survive a round trip"
    if isinstance(msg, (Hello, Ack, Disconnect, Bootstrap, Ping, Pong)):
        assert again[5:] == case.body, f"{msg!r} re-encodes differently"


# ---------------------------------------------------------------------------
# Wire: the frame stream


@attrs.frozen
class StreamCase:
    """
    A byte stream, the offsets it arrives split at, and the body limit.
    """

    data: bytes
    cuts: tuple[int, ...]
    max_body: int


@st.composite
def frame_parts(draw: st.DrawFn) -> bytes:
    """
    One piece of a stream: a control frame (maybe mutated), a message
    frame, a bare header announcing any length, or raw bytes.
    """
    choice = draw(st.integers(0, 5))
    if choice <= 1:
        encoded = encode(draw(control_messages))
        return draw(mutated_bytes(encoded)) if choice == 1 else encoded
    if choice == 2:
        return encode_message(draw(st.binary(max_size=300)))
    if choice == 3:
        length = draw(st.integers(0, 2**32 - 1) | st.integers(0, 70_000) | st.sampled_from([0, 1, 2, 2**32 - 1]))
        return struct.pack(">IB", length, draw(any_kind)) + draw(st.binary(max_size=40))
    return draw(st.binary(max_size=64))


@st.composite
def stream_cases(draw: st.DrawFn) -> StreamCase:
    """
    Streams of a few frame pieces (the whole sometimes mutated), split at
    random offsets, under a random body limit.
    """
    data = b"".join(draw(st.lists(frame_parts(), max_size=6)))
    if draw(st.integers(0, 3)) == 0:
        data = draw(mutated_bytes(data))
    cuts = tuple(sorted(draw(st.lists(st.integers(0, len(data)), max_size=8))))
    max_body = draw(st.sampled_from([0, 1, 16, 300, HANDSHAKE_MAX_BODY, 8 * 2**20]) | st.integers(0, 2000))
    return StreamCase(data, cuts, max_body)


def reference_frames(data: bytes, max_body: int) -> tuple[list[tuple[int, bytes]], type | None, int]:
    """
    The frames of C{data} read by the simplest possible parser of
    C{docs/PROTOCOL.md} §3: the complete frames before the first bad
    header, the error that header raises (None if none), and the bytes left
    waiting for the rest of their frame.
    """
    frames: list[tuple[int, bytes]] = []
    pos = 0
    while len(data) - pos >= 5:
        length, kind = struct.unpack_from(">IB", data, pos)
        if length == 0:
            return frames, DecodingError, 0
        if length - 1 > max_body:
            return frames, InvalidMessageSize, 0
        end = pos + 4 + length
        if end > len(data):
            break
        frames.append((kind, data[pos + 5 : end]))
        pos = end
    return frames, None, len(data) - pos


def check_stream(case: StreamCase, harness: object = None) -> None:
    """
    However the stream is split, L{FrameDecoder} delivers exactly the frames
    of the reference parser, in order, then raises exactly the error it
    predicts (only L{DecodingError} or L{InvalidMessageSize}) or keeps the
    rest buffered; and every control frame it delivers satisfies
    L{check_control}.
    """
    expected, expected_error, left = reference_frames(case.data, case.max_body)
    got: list[tuple[int, bytes]] = []
    decoder = FrameDecoder(
        case.max_body, lambda body: got.append((MESSAGE_KIND, body)), lambda k, b: got.append((k, b))
    )
    error: DecodingError | None = None
    for piece in chunks(case.data, case.cuts):
        try:
            decoder.feed(piece)
        except DecodingError as e:
            error = e
            break
    assert got == expected, f"delivered {len(got)} frames, expected {len(expected)}"
    assert type(error) is (expected_error or type(None)), f"raised {error!r}, expected {expected_error}"
    if error is None:
        assert decoder.buffered == left, f"{decoder.buffered} bytes buffered, expected {left}"
    for kind, body in got:
        if kind != MESSAGE_KIND:
            check_control(ControlCase(kind, body))


# ---------------------------------------------------------------------------
# Addressing


@attrs.frozen
class AddressCase:
    """
    A point text, a peer id text, and whether to join them as a point spec
    (C{host:port#peer_id}).
    """

    point: str
    peer_id: str
    with_peer_id: bool


address_cases = st.builds(AddressCase, point_texts, peer_id_texts, st.booleans())


def check_addresses(case: AddressCase, harness: object = None) -> None:
    """
    L{Point.parse}, L{PeerId.parse} and L{PointSpec.parse} return a value
    whose text form parses back to it, or raise L{AddressError}; nothing
    else.
    """
    try:
        point = Point.parse(case.point)
    except AddressError:
        pass
    else:
        assert 0 <= point.port <= 65535 and normalise_ip(point.ip) == point.ip
        assert Point.parse(str(point)) == point, f"{case.point!r} parsed as {point!r}, which does not round-trip"
    try:
        peer_id = PeerId.parse(case.peer_id)
    except AddressError:
        pass
    else:
        assert str(peer_id) == case.peer_id, f"{case.peer_id!r} parsed as {peer_id!r}"
    text = f"{case.point}#{case.peer_id}" if case.with_peer_id else case.point
    try:
        spec = PointSpec.parse(text)
    except AddressError:
        return
    assert 1 <= spec.port <= 65535
    assert (spec.expected_peer_id is not None) == case.with_peer_id
    assert PointSpec.parse(str(spec)) == spec, f"{text!r} parsed as {spec!r}, which does not round-trip"


# ---------------------------------------------------------------------------
# Identity files


def _fixed_identity(seed: int, difficulty: float) -> Identity:
    """
    A deterministic identity whose stamp meets C{difficulty}.
    """
    key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    public = key.public_key().public_bytes_raw()
    stamp = generate_proof_of_work(public, difficulty) if difficulty else bytes(24)
    return Identity(key, public, PeerId.from_public_key(public), stamp)


_IDENTITIES = (_fixed_identity(1, 0), _fixed_identity(2, 8))
_IDENTITY_FIELDS = ("peer_id", "public_key", "secret_key", "proof_of_work_stamp")


@attrs.frozen
class IdentityCase:
    """
    An identity file's JSON value (or, for a file, its bytes) and the
    difficulty required.
    """

    value: Any
    difficulty: float
    pristine: Identity | None = None


@st.composite
def identity_objects(draw: st.DrawFn) -> tuple[Any, Identity | None]:
    """
    A valid identity object, mutated field by field (removed, replaced by
    another identity's value or any JSON value, its text mutated), or any
    JSON value; with the identity when the object is unchanged.
    """
    identity = draw(st.sampled_from(_IDENTITIES))
    obj: dict[str, Any] = identity.to_json()
    if draw(st.integers(0, 3)) == 0:
        return obj, identity
    if draw(st.integers(0, 5)) == 0:
        return draw(json_values), None
    other = _IDENTITIES[1] if identity is _IDENTITIES[0] else _IDENTITIES[0]
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(_IDENTITY_FIELDS) | st.text(max_size=8))
        op = draw(st.sampled_from(["remove", "other", "json", "text", "upper"]))
        if op == "remove":
            obj.pop(name, None)
        elif op == "other":
            obj[name] = other.to_json().get(name, "")
        elif op == "json":
            obj[name] = draw(json_values)
        elif isinstance(obj.get(name), str):
            obj[name] = obj[name].upper() if op == "upper" else draw(mutated_text(obj[name]))
    return obj, (identity if obj == identity.to_json() else None)


difficulties = st.sampled_from([0.0, 0.5, 1.0, 4.0, 8.0, 8.5, 12.0, 255.9, 256.0]) | st.floats(0, 256)


@st.composite
def identity_json_cases(draw: st.DrawFn) -> IdentityCase:
    """
    An identity object of L{identity_objects} and a difficulty.
    """
    obj, pristine = draw(identity_objects())
    return IdentityCase(obj, draw(difficulties), pristine)


def check_identity_json(case: IdentityCase, harness: object = None) -> None:
    """
    L{Identity.from_json} returns a consistent identity with enough proof
    of work, or raises an L{IdentityError}; an unchanged identity object is
    accepted at any difficulty its stamp meets.
    """
    try:
        identity = Identity.from_json(case.value, case.difficulty)
    except IdentityError as e:
        assert str(e), "an identity error without a message"
        if case.pristine is not None:
            bits = proof_of_work_bits(case.pristine.public_key, case.pristine.proof_of_work_stamp)
            assert not check_proof_of_work(
                case.pristine.public_key, case.pristine.proof_of_work_stamp, case.difficulty
            ), f"a valid identity ({bits} bits) was refused at difficulty {case.difficulty}: {e}"
        return
    assert isinstance(case.value, dict)
    assert identity.peer_id == PeerId.from_public_key(identity.public_key)
    assert identity.private_key.public_key().public_bytes_raw() == identity.public_key
    assert check_proof_of_work(identity.public_key, identity.proof_of_work_stamp, case.difficulty)
    saved = identity.to_json()
    for field in ("public_key", "secret_key", "proof_of_work_stamp"):
        assert saved[field] == case.value[field].lower(), f"{field} changed on load"


@st.composite
def identity_file_cases(draw: st.DrawFn) -> IdentityCase:
    """
    Identity file contents: the JSON of L{identity_objects}, maybe mutated
    as bytes, raw bytes, deep nesting, a file over the size limit.
    """
    choice = draw(st.integers(0, 9))
    if choice == 0:
        data = draw(st.binary(max_size=200))
    elif choice == 1:
        data = draw(deeply_nested(b"[", b"]") | deeply_nested(b'{"a":', b"}") | deeply_nested(b"["))
    elif choice == 2:
        data = b" " * draw(st.integers(64 * 1024 - 2, 64 * 1024 + 2)) + b"{}"
    else:
        obj, _ = draw(identity_objects())
        data = json.dumps(obj, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
        if choice > 5:
            data = draw(mutated_bytes(data))
    return IdentityCase(data, draw(difficulties))


def check_identity_file(case: IdentityCase, harness: object = None) -> None:
    """
    L{load_identity} returns an identity or raises an L{IdentityError}
    naming the file, whatever the file holds.
    """
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "identity.json")
        with open(path, "wb") as f:
            f.write(case.value)
        try:
            identity = load_identity(path, case.difficulty)
        except IdentityError as e:
            assert e.path == path and path in str(e), f"the error does not name the file: {e}"
            return
        assert check_proof_of_work(identity.public_key, identity.proof_of_work_stamp, case.difficulty)


# ---------------------------------------------------------------------------
# Configuration


_TABLES = {}  # type: dict[str, list[str]]
for _key in CONFIG_KEYS:
    _TABLES.setdefault(_key.table, []).append(_key.name)

url_texts = maybe_mutated_text(
    st.sampled_from(
        [
            "https://seed.example.org/peers.json",
            "https://127.0.0.1:8443/",
            "http://seed.example.org/",
            "https://user@host/",
            "https://[::1]:99999/",
        ]
    )
)
toml_strings = st.one_of(
    point_texts,
    url_texts,
    st.builds(lambda p, i: f"{p}#{i}", point_texts, peer_id_texts),
    st.sampled_from(["", "false", "true", "\x00", "p2pool-mainnet", "data", "~/p2pool", "a\x00b", TOKEN]),
    st.sampled_from([15, 16, 4096, 4097]).map(lambda n: "x" * n),
    st.text(max_size=30),
)
toml_scalars = st.one_of(
    st.booleans(),
    interesting_integers,
    # TOML's hexadecimal literals of any size: too long for str() to print.
    st.sampled_from([14_300, 20_000]).map(lambda bits: 1 << bits),
    interesting_floats,
    toml_strings,
    st.datetimes(timezones=st.none() | st.just(datetime.UTC)),
    st.dates(),
    st.times(),
)
toml_values: st.SearchStrategy[Any] = st.recursive(
    toml_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def _near_valid(default: Any) -> st.SearchStrategy[Any]:
    """
    TOML values close to a key's default, so that most configurations get
    past the type checks to the range and cross-key checks.
    """
    if isinstance(default, Point):
        return _mostly(str(default), point_texts)
    if isinstance(default, bool) or default is None:
        return st.booleans() | toml_scalars
    if isinstance(default, int):
        return st.integers(0, 2 * default + 2) | interesting_integers
    if isinstance(default, float):
        return st.floats(0, 2 * default + 2) | st.integers(0, int(2 * default) + 2) | interesting_floats
    if isinstance(default, str):
        return _mostly(default, toml_strings) if default else toml_strings
    if isinstance(default, tuple) and len(default) == 2:
        return st.lists(st.integers(-1, 2 * max(default) + 2) | interesting_integers, min_size=1, max_size=3) | st.just(
            False
        )
    return st.lists(toml_strings, max_size=3)


_NEAR_VALID = {key.dotted: _near_valid(key.default) for key in CONFIG_KEYS}


@st.composite
def config_mappings(draw: st.DrawFn) -> dict[str, Any]:
    """
    A parsed TOML document: mostly real keys in their tables with any TOML
    value, sometimes unknown keys or tables, or a table that is not one.
    """
    document: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 6))):
        table = draw(st.sampled_from(sorted(_TABLES)))
        name = draw(st.sampled_from(_TABLES[table])) if draw(st.integers(0, 15)) else draw(st.text(max_size=10))
        target = document
        for part in table.split("."):
            slot = target.setdefault(part, {})
            if not isinstance(slot, dict):
                break
            target = slot
        else:
            near = _NEAR_VALID.get(f"{table}.{name}")
            target[name] = (
                draw(near) if near is not None and draw(st.integers(0, 3)) else draw(toml_scalars | toml_values)
            )
    if draw(st.integers(0, 15)) == 0:
        document[draw(st.sampled_from(["p2p", "admin", "other"]))] = draw(toml_values)
    return document


def check_config_mapping(mapping: dict[str, Any], harness: object = None) -> None:
    """
    L{config_from_mapping} returns a configuration that satisfies its
    cross-key checks, or raises a L{ConfigError} naming the key at fault.
    """
    try:
        config = config_from_mapping(mapping, source="fuzz.toml")
    except ConfigError as e:
        assert e.key is None or isinstance(e.key, str), f"the error names no key: {e!r}"
        assert "fuzz.toml" in str(e), f"the error does not name its source: {e}"
        return
    assert isinstance(config, PoolConfig)
    assert config.min_connections <= config.expected_connections <= config.max_connections


def _toml_value(value: Any) -> str:
    """
    A TOML value's text (hexadecimal for integers too long for decimal).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return hex(value) if value.bit_length() > 14_000 else str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"


def toml_text(mapping: dict[str, Any]) -> str:
    """
    A TOML rendering of a mapping of L{config_mappings} (not always valid
    TOML: that is the point).
    """
    lines = []
    for name, value in mapping.items():
        if isinstance(value, dict):
            lines.append(f"[{name}]")
            lines.extend(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        else:
            lines.insert(0, f"{json.dumps(str(name))} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


@st.composite
def config_texts(draw: st.DrawFn) -> bytes:
    """
    Configuration file contents: rendered mappings (maybe mutated), raw
    bytes, deeply nested arrays and tables, huge numbers.
    """
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return b"[p2p]\nbootstrap_points = " + draw(deeply_nested(b"[", b"]"))
    if choice == 2:
        digits = draw(st.integers(300, 5000))
        number = draw(st.sampled_from(["1" + "0" * digits, "-" + "9" * digits, "0x" + "f" * digits, "1e999", "-1e999"]))
        return f"[p2p]\n{draw(st.sampled_from(_TABLES['p2p']))} = {number}\n".encode()
    data = toml_text(draw(config_mappings())).encode("utf-8", "surrogatepass")
    return draw(mutated_bytes(data)) if choice > 6 else data


def check_config_file(data: bytes, harness: object = None) -> None:
    """
    L{load_config} returns a configuration or raises a L{ConfigError} that
    names the file, whatever the file holds.
    """
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "node.toml")
        with open(path, "wb") as f:
            f.write(data)
        try:
            config = load_config(path)
        except ConfigError as e:
            assert path in str(e), f"the error does not name the file: {e}"
            return
    assert isinstance(config, PoolConfig)


# ---------------------------------------------------------------------------
# Peers files


NETWORK = "p2pool-fuzz"

times = st.one_of(
    st.floats(0, 4e9).map(format_time),
    st.floats(-1e12, 1e12),
    st.sampled_from(
        [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-23:59",
            "",
            "now",
        ]
    ),
    huge_integers,
)
tezos_addresses = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"addr": ipv4_texts.map(lambda ip: "::ffff:" + ip) | ipv6_texts, "port": st.integers(0, 65535)}
    ),
    st.fixed_dictionaries({"addr": st.text(max_size=12)}, optional={"port": interesting_integers}),
)
peer_stamps = st.tuples(tezos_addresses, times).map(list)
point_stamps = st.tuples(peer_ids.map(str), times).map(list)
events = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["incoming_request", "connection_established", "disconnection"]) | st.text(max_size=8),
        "timestamp": times,
    },
    optional={"addr": st.text(max_size=12) | ipv6_texts, "port": st.integers(0, 70000)},
)
peer_records = st.fixed_dictionaries(
    {"peer_id": peer_ids.map(str), "created": times},
    optional={
        "trusted": st.booleans(),
        "peer_metadata": json_values,
        "last_failed_connection": peer_stamps,
        "last_established_connection": peer_stamps,
        "last_disconnection": peer_stamps,
        "events": st.lists(events, max_size=4),
    },
)
point_records = st.fixed_dictionaries(
    {"point": st.builds(lambda p: str(p), wire_points)},
    optional={
        "trusted": st.booleans(),
        "known_public": st.booleans(),
        "expected_peer_id": peer_ids.map(str),
        "last_failed_connection": times,
        "last_rejected_connection": point_stamps,
        "last_established_connection": point_stamps,
    },
)
banned_ips = st.one_of(
    ipv4_texts,
    ipv6_texts,
    st.builds(lambda ip, n: f"{ip}/{n}", ipv4_texts, st.integers(0, 33)),
    st.builds(lambda ip, n: f"{ip}/{n}", ipv6_texts, st.integers(0, 129)),
    st.text(max_size=12),
)
peers_documents = st.fixed_dictionaries(
    {
        "format": st.just(1),
        "network": st.just(NETWORK),
        "peers": st.lists(peer_records, max_size=4),
        "points": st.lists(point_records, max_size=4),
        "bans": st.fixed_dictionaries(
            {"ips": st.lists(banned_ips, max_size=3), "peers": st.lists(peer_ids.map(str), max_size=2)}
        ),
    },
    optional={"saved_at": times},
)


@st.composite
def peers_file_bytes(draw: st.DrawFn) -> bytes:
    """
    Peers file contents: generated documents (maybe mutated as JSON, maybe
    as bytes, maybe truncated), raw bytes, deep nesting, huge numbers.
    """
    choice = draw(st.integers(0, 11))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return draw(deeply_nested(b"[", b"]") | deeply_nested(b'{"format":', b"}"))
    document: Any = draw(peers_documents)
    if choice in (2, 3, 4, 5):
        document = draw(mutated_json(document))
    data = json.dumps(document).encode()
    if choice == 6:
        data = data[: draw(st.integers(0, len(data)))]
    elif choice == 7:
        data = draw(mutated_bytes(data))
    elif choice == 8:
        data = data.replace(b'"created": ', b'"created": 1' + b"0" * draw(st.integers(300, 400)) + b', "x": ', 1)
    return data


def _count_records(data: bytes) -> dict[str, int]:
    """
    The records in each section of a peers file that decodes.
    """
    document = json.loads(data.decode("utf-8"))
    bans = document.get("bans", {})
    return {
        "peers": len(document.get("peers", [])),
        "points": len(document.get("points", [])),
        "bans.ips": len(bans.get("ips", [])),
        "bans.peers": len(bans.get("peers", [])),
    }


def check_peers_document(data: bytes, harness: object = None) -> None:
    """
    L{decode_document} refuses the whole file with L{PeersFileError} or
    L{IncompatibleFile}, or decodes it with every record either kept or
    reported as skipped (with its section and index).
    """
    try:
        content = decode_document(data, NETWORK)
    except (PeersFileError, IncompatibleFile) as e:
        assert str(e), "a refusal without a reason"
        return
    counts = _count_records(data)
    kept = {
        "peers": len(content.peers),
        "points": len(content.points),
        "bans.ips": len(content.banned_ips),
        "bans.peers": len(content.banned_peers),
    }
    for section, total in counts.items():
        skipped = [p.index for p in content.skipped if p.section == section]
        assert len(set(skipped)) == len(skipped) and all(0 <= i < total for i in skipped), f"bad indices in {section}"
        assert kept[section] + len(skipped) == total, (
            f"{section}: {kept[section]} kept + {len(skipped)} skipped != {total}"
        )
    assert all(isinstance(p.peer_id, PeerId) for p in content.peers)
    assert all(isinstance(p.point, Point) for p in content.points)
    assert all(isinstance(p, PeerId) for p in content.banned_peers)


@attrs.frozen
class PeersFileCase:
    """
    A peers file (None: no file) and its backup (None: no backup).
    """

    data: bytes | None
    backup: bytes | None


peers_file_cases = st.builds(
    PeersFileCase,
    st.none() | peers_file_bytes(),
    st.none() | peers_file_bytes() | peers_documents.map(lambda d: json.dumps(d).encode()),
)


def check_peers_file(case: PeersFileCase, harness: object = None) -> None:
    """
    L{read_peers_file} never raises: it loads the file, or moves a damaged
    one aside and recovers the backup or starts empty, or leaves a file of
    another network or format alone.
    """
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "peers.json")
        for name, data in ((path, case.data), (path + ".bak", case.backup)):
            if data is not None:
                with open(name, "wb") as f:
                    f.write(data)
        outcome = read_peers_file(path, NETWORK, now=1.7e9)
        assert outcome.status in ("missing", "loaded", "recovered", "damaged", "refused"), outcome.status
        assert (outcome.content is not None) == (outcome.status in ("loaded", "recovered"))
        assert (outcome.status == "missing") == (case.data is None)
        if outcome.status in ("damaged", "recovered"):
            assert outcome.error, "a damaged file without a reason"
            assert outcome.moved_to is not None
            with open(outcome.moved_to, "rb") as f:
                assert f.read() == case.data, "the damaged file was not kept aside"
        if outcome.status == "recovered":
            with open(path, "rb") as f:
                assert f.read() == case.backup, "the backup was not restored"
        if outcome.status == "refused":
            with open(path, "rb") as f:
                assert f.read() == case.data, "a refused file was changed"


# ---------------------------------------------------------------------------
# Seed documents (the body of a bootstrap URL, from the network)


@st.composite
def seed_documents(draw: st.DrawFn) -> bytes:
    """
    JSON arrays of point specs (valid, near-valid, not strings), maybe
    mutated as JSON or as bytes; raw bytes; deep nesting; long arrays.
    """
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return draw(deeply_nested(b"[", b"]"))
    if choice == 2:
        return json.dumps([f"10.0.{i // 256}.{i % 256}:9732" for i in range(draw(st.integers(995, 1010)))]).encode()
    entries = draw(
        st.lists(
            wire_points.map(str)
            | point_texts
            | st.builds(lambda p, i: f"{p}#{i}", point_texts, peer_id_texts)
            | json_values,
            max_size=8,
        )
    )
    document: Any = draw(mutated_json(entries)) if choice in (3, 4) else entries
    data = json.dumps(document).encode("utf-8", "surrogatepass")
    return draw(mutated_bytes(data)) if choice == 5 else data


def check_seed_document(data: bytes, harness: object = None) -> None:
    """
    L{parse_seed_document} refuses the body with a L{SeedError}, or returns
    the point specs of the well-formed entries and one problem per other
    entry (and one for the entries past the limit).
    """
    try:
        specs, problems = parse_seed_document(data)
    except SeedError as e:
        assert str(e), "a refusal without a reason"
        return
    document = json.loads(data.decode("utf-8"))
    assert isinstance(document, list)
    beyond = [p for p in problems if "ignored" in p and not p.startswith("entry ")]
    assert len(beyond) == (1 if len(document) > SEED_MAX_ENTRIES else 0), problems[:3]
    considered = min(len(document), SEED_MAX_ENTRIES)
    assert len(specs) + len(problems) - len(beyond) == considered, (len(specs), len(problems), considered)
    assert all(isinstance(spec, PointSpec) and 1 <= spec.port <= 65535 for spec in specs)


# ---------------------------------------------------------------------------
# Handshake


_LOCAL = _IDENTITIES[0]
_REMOTE = _IDENTITIES[1]
_HANDSHAKE_NETWORK = "p2pool-fuzz"
_REMOTE_IP = "192.0.2.1"


def _params(difficulty: float) -> HandshakeParams:
    """
    The local side's handshake parameters, requiring C{difficulty}.
    """
    return HandshakeParams(
        peer_id=_LOCAL.peer_id,
        port=9732,
        proof_of_work_stamp=_LOCAL.proof_of_work_stamp,
        network=_HANDSHAKE_NETWORK,
        expected_proof_of_work=difficulty,
        p2p_versions=(1,),
        application_versions=(0, 3),
    )


@attrs.frozen
class HandshakeCase:
    """
    What the remote sends after TLS, how it arrives, what the pool decides,
    and whether the remote is this node itself.
    """

    data: bytes
    cuts: tuple[int, ...]
    incoming: bool
    difficulty: float
    decision: str
    motive: int
    myself: bool


remote_hellos = st.builds(
    Hello,
    port=st.integers(0, 65535),
    proof_of_work_stamp=_mostly(_REMOTE.proof_of_work_stamp, st.just(bytes(24)) | st.binary(min_size=24, max_size=24)),
    network=_mostly(_HANDSHAKE_NETWORK, wire_texts),
    p2p_versions=_mostly(
        (1,), st.lists(st.sampled_from([1, 2]) | st.integers(0, 65535), min_size=1, max_size=4).map(tuple)
    ),
    application_versions=_mostly(
        (0,), st.lists(st.sampled_from([0, 3]) | st.integers(0, 65535), max_size=4).map(tuple)
    ),
    private_mode=st.booleans(),
    metadata=st.binary(max_size=64),
)


@st.composite
def handshake_cases(draw: st.DrawFn) -> HandshakeCase:
    """
    Mostly a Hello then an Ack or Nack, each maybe mutated, with any frames
    spliced in; sometimes raw bytes.
    """
    if draw(st.integers(0, 7)) == 0:
        data = draw(st.binary(max_size=200))
    else:
        pieces = [encode(draw(remote_hellos))]
        answer = draw(st.integers(0, 9))
        if answer < 6:
            pieces.append(encode(Ack()))
        elif answer < 8:
            pieces.append(encode(Nack(draw(st.integers(0, 65535)), tuple(draw(st.lists(wire_points, max_size=3))))))
        else:
            pieces.append(draw(control_messages.map(encode) | frame_parts()))
        if draw(st.integers(0, 3)) == 0:
            pieces.insert(draw(st.integers(0, len(pieces))), draw(frame_parts()))
        pieces = [draw(mutated_bytes(p)) if draw(st.integers(0, 5)) == 0 else p for p in pieces]
        data = b"".join(pieces)
    cuts = tuple(sorted(draw(st.lists(st.integers(0, len(data)), max_size=4))))
    return HandshakeCase(
        data=data,
        cuts=cuts,
        incoming=draw(st.booleans()),
        difficulty=draw(st.sampled_from([0.0, 4.0, 8.0])),
        decision=draw(st.sampled_from(["accept", "accept", "refuse", "nack"])),
        motive=draw(st.sampled_from([int(m) for m in NackMotive]) | st.integers(0, 65535)),
        myself=draw(st.integers(0, 9)) == 0,
    )


def check_handshake(case: HandshakeCase, harness: object = None) -> None:
    """
    A L{Handshake} fed any frames after TLS, through the decoder exactly as
    L{p2pool.transport.peer_protocol.PeerProtocol} feeds it, raises only L{P2PError}s; it
    sends its Hello, then at most one Ack or Nack, and reports a running
    connection only after an acceptable Hello, an Ack sent and an Ack
    received.
    """
    params = _params(case.difficulty)
    sent: list[bytes] = []
    decided: list[RemoteInfo] = []
    decision: Decision = Accept()
    if case.decision == "refuse":
        decision = Refuse(P2PError("refused by the fuzzer"))
    elif case.decision == "nack":
        decision = nack_refusal(_REMOTE.peer_id, case.motive, (Point("192.0.2.9", 9732),))

    def decide(remote: RemoteInfo) -> Decision:
        decided.append(remote)
        return decision

    handshake = Handshake(
        params,
        incoming=case.incoming,
        remote_ip=_REMOTE_IP,
        dialed_point=None if case.incoming else Point(_REMOTE_IP, 9732),
        decide=decide,
        send=sent.append,
    )
    remote_key = _LOCAL.public_key if case.myself else _REMOTE.public_key
    handshake.tls_established(PeerId.from_public_key(remote_key), remote_key)
    assert sent == [encode(params.hello())]
    results: list[RemoteInfo] = []

    def on_message(body: bytes) -> None:
        raise DecodingError("application message before the handshake ended")

    def on_control(kind: int, body: bytes) -> None:
        if results:
            return  # the running connection's frames: not the handshake's
        remote = handshake.control_received(kind, body)
        if remote is not None:
            results.append(remote)
            # What PeerProtocol.start_messages does once the connection runs.
            decoder.max_body = PoolConfig().max_message_size
            decoder.on_message = lambda body: None

    decoder = FrameDecoder(HANDSHAKE_MAX_BODY, on_message, on_control)
    error: P2PError | None = None
    for piece in chunks(case.data, case.cuts):
        try:
            decoder.feed(piece)
        except P2PError as e:
            error = e
            break
    assert len(sent) <= 2, f"sent {len(sent)} frames"
    replies = [decode_control(f[4], f[5:]) for f in sent[1:]]
    assert all(isinstance(r, (Ack, Nack)) for r in replies), replies
    if results:
        [remote] = results
        # Bytes after the Ack belong to the running connection: only a bad
        # frame header can still raise, ending that connection.
        assert error is None or isinstance(error, DecodingError), error
        assert handshake.state is HandshakeState.RUNNING
        assert isinstance(decision, Accept) and decided and replies == [Ack()]
        assert remote.peer_id == PeerId.from_public_key(remote_key) and not case.myself
        assert remote.hello.network == params.network
        assert select_version(params.p2p_versions, remote.hello.p2p_versions) == remote.p2p_version
        assert select_version(params.application_versions, remote.hello.application_versions) is not None
        assert check_proof_of_work(remote_key, remote.hello.proof_of_work_stamp, case.difficulty)
        return
    assert handshake.state is not HandshakeState.RUNNING
    if isinstance(error, NotEnoughProofOfWork):
        assert case.difficulty > 0 and not decided and not replies
    if isinstance(error, Myself):
        assert case.myself and not decided and not replies
    if isinstance(error, RejectedNoCommonProtocol):
        assert not decided and replies == [Nack(error.motive)]
    if isinstance(error, RejectedByNack):
        assert replies == [Ack()] and handshake.state is HandshakeState.CLOSED
    if decided and isinstance(decision, Refuse) and error is decision.error:
        expected = [Nack(decision.motive, decision.alternative_points)] if decision.motive is not None else []
        assert replies == expected, replies
    if replies == [Ack()] and error is None:
        assert handshake.state is HandshakeState.AWAIT_ACK


# ---------------------------------------------------------------------------
# Admin API


class _Cleanups:
    """
    Stands for a test case where there is none (the benchmark): collects
    the cleanups L{MemoryAdmin} registers.
    """

    def __init__(self) -> None:
        self.calls: list[Callable[[], object]] = []

    def addCleanup(self, f: Callable[..., object], *args: object) -> None:
        self.calls.append(lambda: f(*args))

    def run(self) -> None:
        while self.calls:
            self.calls.pop()()


@attrs.define
class AdminHarness:
    """
    Two nodes on a memory network, the first serving its admin API through
    C{StubTreq}, once without and once with a token.
    """

    open: MemoryAdmin
    guarded: MemoryAdmin
    cleanups: _Cleanups


def open_admin_harness() -> AdminHarness:
    """
    Start the two admin harnesses, each with its node connected to the other
    node (small IP greylists: they are built fast).
    """
    cleanups = _Cleanups()
    small = {"ip_greylist_size_in_kilobytes": 1}
    harness = AdminHarness(MemoryAdmin(cleanups, **small), MemoryAdmin(cleanups, token=TOKEN, **small), cleanups)
    harness.open.connect()
    harness.guarded.connect()
    return harness


def close_admin_harness(harness: AdminHarness) -> None:
    """
    Stop the nodes and admin services of C{harness}.
    """
    harness.cleanups.run()


_KNOWN_PEER = str(MemoryNetwork(seed=7).identity(IP_B).peer_id)
_KNOWN_POINT = f"{IP_B}:9732"


@attrs.frozen
class AdminCase:
    """
    One HTTP request to the admin API.

    @ivar segments: the path segments, as bytes (percent-encoded when sent).
    @ivar guarded: send it to the node that requires a token.
    """

    method: str
    segments: tuple[bytes, ...]
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    guarded: bool


acl_bodies = st.fixed_dictionaries(
    {},
    optional={
        "acl": st.sampled_from(["ban", "trust", "open"]) | json_values,
        "peer_id": st.sampled_from([_KNOWN_PEER]) | peer_id_texts | json_values,
        "extra": json_values,
    },
).map(lambda d: json.dumps(d).encode())
request_bodies = st.one_of(
    st.none(),
    acl_bodies,
    acl_bodies.flatmap(mutated_bytes),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=100),
    deeply_nested(b"[", b"]").map(lambda b: b[:MAX_BODY_SIZE]),
    st.integers(MAX_BODY_SIZE - 1, MAX_BODY_SIZE + 2).map(lambda n: b'{"acl": "ban"' + b" " * n + b"}"),
)
query_values = st.one_of(
    st.sampled_from(
        [
            "true",
            "false",
            "1",
            "0",
            "yes",
            "no",
            "",
            "nan",
            "inf",
            "-1",
            "0.001",
            "600",
            "601",
            "1e999",
            "running",
            "accepted",
            "disconnected",
            "requested",
        ]
    ),
    st.floats(allow_nan=True).map(repr),
    st.text(max_size=10),
)
queries = st.lists(
    st.tuples(
        st.sampled_from(["timeout", "wait", "filter", "recent", "follow", "access_token"]) | st.text(max_size=6),
        query_values | st.just(TOKEN),
    ),
    max_size=3,
).map(tuple)
random_headers = st.one_of(
    st.tuples(
        st.just("Host"),
        st.sampled_from(
            ["127.0.0.1", "127.0.0.1:8732", "localhost", "[::1]:8732", "evil.example", "a.localhost", "::1", ""]
        )
        | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
    ),
    st.tuples(
        st.just("Authorization"),
        st.sampled_from([f"Bearer {TOKEN}", f"bearer  {TOKEN} ", "Bearer wrong", "Bearer", "Basic abc", ""])
        | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    ),
    st.tuples(st.just("Content-Type"), st.sampled_from(["application/json", "text/plain", ""])),
)
_METHODS = ["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD", "OPTIONS", "TRACE"]
#: The routes with parameters, where the input checks are, come up more often.
_WEIGHTED_ROUTES = [route for route in ROUTES for _ in range(4 if any(p.startswith(":") for p in route[0]) else 1)]


@st.composite
def admin_cases(draw: st.DrawFn) -> AdminCase:
    """
    Requests to every route, mostly with one of its methods and the right
    token: valid, mutated and random path parameters, sometimes an extra or
    a missing segment, any query, headers and body (valid and broken ACL
    patches, random JSON, bytes, deep nesting, bodies around the size
    limit).
    """
    route, methods = draw(st.sampled_from(_WEIGHTED_ROUTES))
    segments: list[bytes] = []
    for part in route:
        if part == ":peer_id":
            text = draw(
                st.sampled_from([_KNOWN_PEER]) | peer_ids.map(str) | peer_id_texts.filter(lambda t: len(t) < 2000)
            )
            segments.append(text.encode("utf-8", "surrogatepass"))
        elif part == ":point":
            known = st.sampled_from([_KNOWN_POINT, "10.0.0.1:9732", "10.9.9.9:1", "[::1]:9732"])
            any_port = st.builds(lambda ip, port: f"{ip}:{port}", ipv4_texts, port_texts)
            point = draw(known | wire_points.map(str) | any_port | point_texts)
            segments.append(point.encode("utf-8", "surrogatepass"))
        else:
            segments.append(part.encode())
    if draw(st.integers(0, 7)) == 0:
        segments.insert(
            draw(st.integers(0, len(segments))), draw(st.binary(max_size=10) | st.sampled_from([b"", b"..", b"%"]))
        )
    if draw(st.integers(0, 9)) == 0 and segments:
        segments.pop()
    query = list(draw(queries))
    if route == ("network", "log"):
        query.append(("follow", "false"))  # a followed log streams until the client leaves
    method = draw(st.sampled_from(sorted(methods))) if draw(st.integers(0, 3)) else draw(st.sampled_from(_METHODS))
    guarded = draw(st.booleans())
    headers = []
    if guarded and draw(st.integers(0, 4)):
        headers.append(("Authorization", f"Bearer {TOKEN}"))
    if not draw(st.integers(0, 5)):
        headers.append(draw(random_headers))
    body = draw(acl_bodies) if method == "PATCH" and draw(st.integers(0, 2)) else draw(request_bodies)
    return AdminCase(method, tuple(segments), tuple(query), tuple(headers), body, guarded)


def _path_parameter(segments: Sequence[bytes], collection: bytes) -> str | None:
    """
    The text in place of the parameter of C{/network/<collection>/<param>}
    (trailing slashes ignored, as the API does), if the path has that shape.
    """
    parts = list(segments)
    while parts and parts[-1] == b"":
        parts.pop()
    if len(parts) != 3 or parts[:2] != [b"network", collection]:
        return None
    try:
        return parts[2].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _parses(parse: Callable[[str], object], text: object) -> bool:
    """
    Whether C{parse} accepts C{text} (L{AddressError} means no).
    """
    try:
        parse(text)  # type: ignore[arg-type]
    except AddressError:
        return False
    return True


def check_admin(case: AdminCase, harness: AdminHarness) -> None:
    """
    Whatever the request, the admin API answers (never a 500), with JSON
    C{{"error", "detail"}} for every error; a point or peer id is called
    malformed only when one in the path or body does not parse.
    """
    admin = harness.guarded if case.guarded else harness.open
    path = "/" + "/".join(urllib.parse.quote(s, safe="") for s in case.segments)
    if case.query:
        path += "?" + urllib.parse.urlencode(case.query)
    result = admin.request(case.method, path, case.body, dict(case.headers) or None)
    assert result.code != 500, f"500 for {case.method} {path}: {result.body[:300]!r}"
    assert 200 <= result.code < 600, result.code
    content_type = result.header("content-type") or ""
    if case.method == "HEAD":
        assert not result.body, "a body in the reply to HEAD"
        return
    if result.code < 400:
        if content_type.startswith("application/json"):
            result.json()
        return
    assert content_type.startswith("application/json"), content_type
    error = result.json()
    assert isinstance(error, dict) and set(error) == {"error", "detail"}, error
    assert isinstance(error["error"], str) and isinstance(error["detail"], str)
    if error["error"] == "malformed_point":
        point = _path_parameter(case.segments, b"points")
        assert point is not None and not _parses(Point.parse, point), f"{path}: not a malformed point"
    if error["error"] == "malformed_peer_id":
        texts = [_path_parameter(case.segments, b"peers"), _path_parameter(case.segments, b"connections")]
        try:
            body = json.loads(case.body or b"")
            texts.append(body.get("peer_id") if isinstance(body, dict) else None)
        except (ValueError, RecursionError):
            pass
        assert any(t is not None and not _parses(PeerId.parse, t) for t in texts), f"{path}: no malformed peer id"


# ---------------------------------------------------------------------------
# A node receiving garbage on an established connection


IP_ATTACKER = "10.0.0.1"
IP_NODE = "10.1.0.2"
IP_BYSTANDER = "10.2.0.3"


class _Recorder(BasePoolApplication):
    """
    Records the messages received and the connections lost.
    """

    def __init__(self) -> None:
        self.messages: list[tuple[PeerId, bytes]] = []
        self.lost: list[tuple[PeerId, DisconnectReason]] = []

    def message_received(self, conn: Any, data: bytes) -> None:
        self.messages.append((conn.peer_id, data))

    def connection_lost(self, conn: Any, reason: Any) -> None:
        self.lost.append((conn.peer_id, reason.reason))


@attrs.frozen
class InjectionCase:
    """
    Bytes the attacker writes on its established connection to the node,
    split in separate writes at C{cuts}, and the node's C{max_message_size}.
    """

    data: bytes
    cuts: tuple[int, ...]
    max_message_size: int


@st.composite
def injection_cases(draw: st.DrawFn) -> InjectionCase:
    """
    Streams of valid, mutated and raw frames (as for L{stream_cases}).
    """
    stream = draw(stream_cases())
    return InjectionCase(stream.data, stream.cuts[:3], draw(st.sampled_from([64, 300, 4096, 8 * 2**20])))


def predict_running(data: bytes, max_body: int) -> tuple[str, DisconnectReason | None]:
    """
    What a node does with C{data} received on a running connection, by
    C{docs/PROTOCOL.md} §7–8: C{("open", None)}, or C{("closed", reason)}
    for the first frame that ends the connection.
    """
    frames, error, _ = reference_frames(data, max_body)
    for kind, body in frames:
        if kind == MESSAGE_KIND:
            continue
        try:
            msg = decode_control(kind, body)
        except DecodingError:
            return "closed", DisconnectReason.DECODING_ERROR
        if isinstance(msg, (Hello, Ack, Nack)):
            return "closed", DisconnectReason.DECODING_ERROR
        if isinstance(msg, Disconnect):
            return "closed", DisconnectReason.REMOTE_DISCONNECT
    if error is InvalidMessageSize:
        return "closed", DisconnectReason.MESSAGE_TOO_LARGE
    if error is not None:
        return "closed", DisconnectReason.DECODING_ERROR
    return "open", None


def _connect(network: MemoryNetwork, pool: Any, ip: str) -> Any:
    """
    Connect C{pool} to the pool at C{ip}; the L{p2pool.transport.connection.Connection}.
    """
    done: list[Any] = []
    pool.connect(Point(ip, 9732)).addBoth(done.append)
    network.run_until(lambda: bool(done), timeout=10, step=0.01)
    assert done and not hasattr(done[0], "raiseException"), f"cannot connect to {ip}: {done}"
    return done[0]


def check_injection(case: InjectionCase, harness: object = None) -> None:
    """
    An attacker with an established connection writes C{case.data} on it:
    the node does exactly what the protocol says (keeps the connection, or
    closes it with the predicted reason), greylists the attacker's peer id
    and address exactly when the bytes were malformed or oversized, keeps
    running, and its connection to a bystander is untouched (a message still
    goes through). Nothing is logged as an unhandled error.
    """
    failures: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    network = MemoryNetwork(seed=11)
    try:
        settings = {"maintenance_idle_time": None, "ip_greylist_size_in_kilobytes": 1}
        node_app, bystander_app = _Recorder(), _Recorder()
        attacker = network.add_pool(IP_ATTACKER, **settings)
        node = network.add_pool(IP_NODE, app=node_app, max_message_size=case.max_message_size, **settings)
        bystander = network.add_pool(IP_BYSTANDER, app=bystander_app, **settings)
        to_node = _connect(network, attacker, IP_NODE)
        bystander_conn = _connect(network, bystander, IP_NODE)
        for piece in chunks(case.data, case.cuts):
            to_node.send_control(piece)
            network.advance(0.005)
        network.advance(1.0)
        outcome, reason = predict_running(case.data, case.max_message_size)
        at_node = node.connections.find_by_peer_id(attacker.peer_id)
        lost = [r for peer, r in node_app.lost if peer == attacker.peer_id]
        if outcome == "open":
            assert at_node is not None and at_node.is_open and not lost, f"closed: {lost}"
        else:
            assert at_node is None and lost == [reason], f"expected {reason}, got {lost}"
        greylisted = reason in (DisconnectReason.DECODING_ERROR, DisconnectReason.MESSAGE_TOO_LARGE)
        assert node.acl.peer_greylist.mem(attacker.peer_id) == greylisted
        assert node.acl.ip_greylist.mem(IP_ATTACKER) == greylisted
        assert node.running and attacker.running and bystander.running
        assert not node.acl.banned_peer(bystander.peer_id) and not node.acl.banned_addr(IP_BYSTANDER)
        assert bystander_conn.is_open and node.connections.find_by_peer_id(bystander.peer_id) is not None
        bystander_conn.send(b"still there?")
        network.advance(0.1)
        assert (bystander.peer_id, b"still there?") in node_app.messages
        assert not [peer for peer, _ in node_app.lost if peer != attacker.peer_id]
    finally:
        network.stop()
        globalLogPublisher.removeObserver(observe)
    assert not failures, f"unhandled errors logged: {[e.get('log_format') for e in failures]}"


# ---------------------------------------------------------------------------
# The targets


TARGETS: tuple[FuzzTarget, ...] = (
    FuzzTarget("wire.decode_control", control_cases(), check_control),
    FuzzTarget("wire.FrameDecoder", stream_cases(), check_stream),
    FuzzTarget("addressing", address_cases, check_addresses),
    FuzzTarget("identity.from_json", identity_json_cases(), check_identity_json),
    FuzzTarget("identity.load_identity", identity_file_cases(), check_identity_file, weight=0.5),
    FuzzTarget("config.config_from_mapping", config_mappings(), check_config_mapping),
    FuzzTarget("config.load_config", config_texts(), check_config_file, weight=0.5),
    FuzzTarget("persistence.decode_document", peers_file_bytes(), check_peers_document),
    FuzzTarget("persistence.read_peers_file", peers_file_cases, check_peers_file, weight=0.5),
    FuzzTarget("seeds.parse_seed_document", seed_documents(), check_seed_document, weight=0.5),
    FuzzTarget("handshake", handshake_cases(), check_handshake),
    FuzzTarget(
        "admin",
        admin_cases(),
        check_admin,
        weight=0.5,
        open_harness=open_admin_harness,
        close_harness=close_admin_harness,
    ),
    FuzzTarget("pool.injection", injection_cases(), check_injection, weight=0.25),
)
_BY_NAME = {target.name: target for target in TARGETS}


def _fuzz(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """
    Make a test method run target C{name}: the method gets each generated
    case (and runs nothing else), with the target's settings.
    """
    target = _BY_NAME[name]

    def decorate(method: Callable[..., None]) -> Callable[..., None]:
        return target.settings()(given(case=target.strategy)(method))

    return decorate


class WireFuzzTests(SynchronousTestCase):
    """
    Frames and control bodies (C{docs/PROTOCOL.md} §3–5).
    """

    @_fuzz("wire.decode_control")
    def test_decode_control(self, case: ControlCase) -> None:
        """
        Every control body decodes to its message or raises L{DecodingError}.
        """
        check_control(case)

    @_fuzz("wire.FrameDecoder")
    def test_frame_decoder(self, case: StreamCase) -> None:
        """
        The frame decoder matches the reference parser however the stream is
        split, raising only L{DecodingError} or L{InvalidMessageSize}.
        """
        check_stream(case)


class HandshakeFuzzTests(SynchronousTestCase):
    """
    The handshake after TLS (C{docs/PROTOCOL.md} §6).
    """

    @_fuzz("handshake")
    def test_handshake(self, case: HandshakeCase) -> None:
        """
        Any frames after TLS end in a running connection only by the rules,
        otherwise in a L{P2PError}.
        """
        check_handshake(case)


class AddressingFuzzTests(SynchronousTestCase):
    """
    Points, point specs and peer ids.
    """

    @_fuzz("addressing")
    def test_addresses(self, case: AddressCase) -> None:
        """
        Parsers return round-tripping values or raise L{AddressError}.
        """
        check_addresses(case)

    def test_huge_port_is_an_address_error(self) -> None:
        """
        A port of more digits than C{int()} converts is an L{AddressError},
        not a bare C{ValueError} (found by this fuzzer).
        """
        for parse in (Point.parse, PointSpec.parse):
            self.assertRaises(AddressError, parse, "1.2.3.4:" + "9" * 5000)
        self.assertEqual(Point.parse("1.2.3.4:" + "0" * 5000 + "80"), Point("1.2.3.4", 80))

    def test_long_peer_id_refused_quickly(self) -> None:
        """
        A very long text is refused as a peer id without decoding it as
        base58 (which costs time quadratic in its length: minutes for this
        one).
        """
        decoded: list[int] = []
        real_decode = p2pool.core.base58.decode_check

        def counting_decode(text: str) -> bytes:
            decoded.append(len(text))
            return real_decode(text)

        self.patch(p2pool.core.base58, "decode_check", counting_decode)
        self.assertRaises(AddressError, PeerId.parse, "z" * 1_000_000)
        self.assertEqual(decoded, [], "refused before decoding")
        # The decoder is what this test watches: a text of ordinary length
        # goes through it.
        self.assertRaises(AddressError, PeerId.parse, "z" * 30)
        self.assertEqual(decoded, [30])


class IdentityFuzzTests(SynchronousTestCase):
    """
    Identity objects and files.
    """

    @_fuzz("identity.from_json")
    def test_from_json(self, case: IdentityCase) -> None:
        """
        Identity objects load or raise L{IdentityError}.
        """
        check_identity_json(case)

    @_fuzz("identity.load_identity")
    def test_load_identity(self, case: IdentityCase) -> None:
        """
        Identity files load or raise L{IdentityError} naming the file.
        """
        check_identity_file(case)


class ConfigFuzzTests(SynchronousTestCase):
    """
    Configuration mappings and TOML files.
    """

    @_fuzz("config.config_from_mapping")
    def test_config_from_mapping(self, case: dict[str, Any]) -> None:
        """
        Mappings give a configuration or a L{ConfigError}.
        """
        check_config_mapping(case)

    @_fuzz("config.load_config")
    def test_load_config(self, case: bytes) -> None:
        """
        Files give a configuration or a L{ConfigError} naming the file.
        """
        check_config_file(case)

    def test_huge_numbers_are_config_errors(self) -> None:
        """
        An integer too large for a float, one too long for C{int()} or
        C{str()} (TOML reads hexadecimal literals of any size), and nesting
        deeper than the parser recurses are L{ConfigError}s (found by this
        fuzzer).
        """
        for mapping in (
            {"p2p": {"connection_timeout": 10**400}},
            {"p2p": {"max_connections": 1 << 20_000}},
            {"p2p": {"max_known_points": [1 << 20_000, 1]}},
            {"p2p": {"data_dir": [1 << 20_000]}},
        ):
            self.assertRaises(ConfigError, config_from_mapping, mapping)
        path = self.mktemp()
        for text in (
            b"[p2p]\nconnection_timeout = 1" + b"0" * 400,
            b"[p2p]\nmax_connections = " + b"9" * 5000,
            b"[p2p]\nmax_connections = 0x" + b"f" * 5000,
            b"[p2p]\nmax_known_points = [0x" + b"f" * 5000 + b", 1]",
            b"[p2p]\nbootstrap_points = " + b"[" * 5000 + b"]" * 5000,
        ):
            with open(path, "wb") as f:
                f.write(text)
            error = self.assertRaises(ConfigError, load_config, path)
            self.assertIn(path, str(error))


class PersistenceFuzzTests(SynchronousTestCase):
    """
    Peers files (C{docs/PEERS_FILE.md}).
    """

    @_fuzz("persistence.decode_document")
    def test_decode_document(self, case: bytes) -> None:
        """
        Documents decode, every record kept or reported, or are refused whole
        with a typed error.
        """
        check_peers_document(case)

    @_fuzz("persistence.read_peers_file")
    def test_read_peers_file(self, case: PeersFileCase) -> None:
        """
        Reading a peers file never raises.
        """
        check_peers_file(case)

    def test_huge_numbers_and_deep_nesting(self) -> None:
        """
        A time too large for a float skips its record; nesting deeper than
        the JSON parser recurses is a damaged file (found by this fuzzer).
        """
        document = {"format": 1, "network": NETWORK, "peers": [{"peer_id": _KNOWN_PEER, "created": 10**400}]}
        content = decode_document(json.dumps(document).encode(), NETWORK)
        self.assertEqual((content.peers, [p.section for p in content.skipped]), ([], ["peers"]))
        self.assertRaises(
            PeersFileError, decode_document, json.dumps({**document, "saved_at": 10**400}).encode(), NETWORK
        )
        self.assertRaises(PeersFileError, decode_document, b"[" * 100_000, NETWORK)
        check_peers_file(PeersFileCase(b"[" * 100_000, None))


class SeedFuzzTests(SynchronousTestCase):
    """
    Seed documents fetched from bootstrap URLs (C{docs/REACH.md}).
    """

    @_fuzz("seeds.parse_seed_document")
    def test_parse_seed_document(self, case: bytes) -> None:
        """
        Seed bodies give point specs and problems, or a L{SeedError}.
        """
        check_seed_document(case)


class AdminFuzzTests(SynchronousTestCase):
    """
    Requests to the admin API (C{docs/ADMIN.md}).
    """

    def setUp(self) -> None:
        self.harness = open_admin_harness()
        self.addCleanup(close_admin_harness, self.harness)

    @_fuzz("admin")
    def test_requests(self, case: AdminCase) -> None:
        """
        No request gets a 500; every error is JSON.
        """
        check_admin(case, self.harness)


class PoolInjectionFuzzTests(SynchronousTestCase):
    """
    Garbage on an established connection (C{ARCHITECTURE.md} A3.4).
    """

    @_fuzz("pool.injection")
    def test_injected_bytes(self, case: InjectionCase) -> None:
        """
        Only the offending connection closes, only its peer is greylisted,
        and the node keeps serving the others.
        """
        check_injection(case)

    def test_each_outcome_is_reached(self) -> None:
        """
        The injection check sees each outcome it predicts: an open
        connection, a malformed frame, an oversized frame, a Disconnect.
        """
        cases = {
            "open": encode(Ping()) + encode_message(b"x"),
            DisconnectReason.DECODING_ERROR: encode(Ping()) + frame(Kind.ADVERTISE, b"\x01\x03abc"),
            DisconnectReason.MESSAGE_TOO_LARGE: struct.pack(">IB", 10_000, MESSAGE_KIND),
            DisconnectReason.REMOTE_DISCONNECT: encode(Disconnect()) + b"\x00" * 9,
        }
        for expected, data in cases.items():
            outcome, reason = predict_running(data, 4096)
            self.assertEqual(reason or outcome, expected)
            check_injection(InjectionCase(data, (), 4096))
