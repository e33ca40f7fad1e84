# -*- test-case-name: tests.test_wire -*-
"""
The p2pool wire format, sans I/O: frames and the bodies of every frame kind.

A frame is a 4-byte big-endian length C{L}, then C{L} bytes: a 1-byte kind
and the body. C{docs/PROTOCOL.md} specifies every body byte by byte.
"""

from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Callable, Sequence

import attrs

from p2pool.core.addressing import PeerId, Point
from p2pool.errors import DecodingError, InvalidMessageSize

__all__ = [
    "Ack",
    "Advertise",
    "Bootstrap",
    "ControlMessage",
    "Disconnect",
    "FRAME_HEADER",
    "FrameDecoder",
    "HANDSHAKE_MAX_BODY",
    "Hello",
    "Kind",
    "LARGE_FRAME",
    "MAX_LISTED_POINTS",
    "Nack",
    "Ping",
    "Pong",
    "SwapAck",
    "SwapRequest",
    "decode_control",
    "encode",
    "encode_message",
]

#: A frame's header: the length of what follows it (the kind byte and the
#: body), then the kind.
FRAME_HEADER = struct.Struct(">IB")

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
HEADER_SIZE = FRAME_HEADER.size

#: The largest body accepted before the handshake ends.
HANDSHAKE_MAX_BODY = 65535
#: Frames larger than this (header included) are large: larger than any
#: the handshake allows, and than one 64 KiB read of a socket carries. A
#: L{FrameDecoder} reserves a large frame's size while it arrives.
LARGE_FRAME = HEADER_SIZE + HANDSHAKE_MAX_BODY
#: The most points a Nack or Advertise may carry.
MAX_LISTED_POINTS = 100
#: The most versions a Hello may list.
MAX_VERSIONS = 16
POW_STAMP_SIZE = 24


class Kind(enum.IntEnum):
    """
    Frame kinds.
    """

    HELLO = 0x01
    ACK = 0x02
    NACK = 0x03
    DISCONNECT = 0x10
    BOOTSTRAP = 0x11
    ADVERTISE = 0x12
    SWAP_REQUEST = 0x13
    SWAP_ACK = 0x14
    PING = 0x15
    PONG = 0x16
    MESSAGE = 0x20


MESSAGE_KIND = int(Kind.MESSAGE)


@attrs.frozen
class Hello:
    """
    The first frame each side sends after TLS.

    @ivar port: the advertised listening port (0 = not listening).
    @ivar proof_of_work_stamp: the 24-byte stamp proving the sender's key.
    @ivar network: the network (chain) name; different names never connect.
    @ivar p2p_versions: the p2pool protocol versions the sender speaks.
    @ivar application_versions: the application versions the sender speaks.
    @ivar private_mode: the sender runs in private mode.
    @ivar metadata: opaque application connection metadata.
    """

    port: int
    proof_of_work_stamp: bytes
    network: str
    p2p_versions: tuple[int, ...]
    application_versions: tuple[int, ...]
    private_mode: bool = False
    metadata: bytes = b""


@attrs.frozen
class Ack:
    """
    Accepts the connection.
    """


@attrs.frozen
class Nack:
    """
    Refuses the connection, with a motive and other points to try.
    """

    motive: int
    alternative_points: tuple[Point, ...] = ()


@attrs.frozen
class Disconnect:
    """
    The sender is closing the connection.
    """


@attrs.frozen
class Bootstrap:
    """
    Asks for known points.
    """


@attrs.frozen
class Advertise:
    """
    Known points, in answer to Bootstrap.
    """

    points: tuple[Point, ...]


@attrs.frozen
class SwapRequest:
    """
    Proposes a swap: the sender offers one of its peers.
    """

    point: Point
    peer_id: PeerId


@attrs.frozen
class SwapAck:
    """
    Accepts a swap, offering one of the recipient's peers in return.
    """

    point: Point
    peer_id: PeerId


@attrs.frozen
class Ping:
    """
    Liveness probe; answered by Pong.
    """


@attrs.frozen
class Pong:
    """
    Answer to Ping.
    """


ControlMessage = Hello | Ack | Nack | Disconnect | Bootstrap | Advertise | SwapRequest | SwapAck | Ping | Pong


class FrameDecoder:
    """
    Splits a byte stream into frames and hands each to callbacks:
    C{on_message(body)} for application messages, C{on_control(kind, body)}
    for every other kind.

    Raises L{InvalidMessageSize} from L{feed} when a frame's body exceeds
    C{max_body}, and L{DecodingError} for a zero-length frame; after either,
    the stream is unusable.

    While C{paused} (a callback may set it), no frame is delivered: the
    bytes wait until L{resume}.

    When it starts waiting for the rest of a frame larger than
    L{LARGE_FRAME}, its header checked and before more of its body is
    buffered, it calls C{reserve(size)} with the frame's whole size; once
    the frame has arrived whole (it is delivered at once), C{release(size)}.
    Without C{reserve}, nothing is reserved.
    """

    __slots__ = (
        "max_body",
        "on_message",
        "on_control",
        "reserve",
        "release",
        "paused",
        "_chunks",
        "_have",
        "_need",
        "_large",
    )

    def __init__(
        self,
        max_body: int,
        on_message: Callable[[bytes], object],
        on_control: Callable[[int, bytes], object],
        reserve: Callable[[int], object] | None = None,
        release: Callable[[int], object] | None = None,
    ) -> None:
        self.max_body = max_body
        self.on_message = on_message
        self.on_control = on_control
        self.reserve = reserve
        self.release = release
        self.paused = False
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 0
        # The size of the large frame reserved (its bytes start the chunks),
        # or 0.
        self._large = 0

    @property
    def buffered(self) -> int:
        """
        How many received bytes wait for the rest of their frame.
        """
        return self._have

    def feed(self, data: bytes) -> None:
        """
        Consume bytes, delivering every complete frame they finish (none
        while paused).
        """
        if self.paused:
            self._chunks.append(data)
            self._have += len(data)
            return
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data = b"".join(self._chunks)
            self._chunks = []
            self._have = 0
            if self._large:
                self._release_large()
        n = len(data)
        pos = 0
        unpack_from = FRAME_HEADER.unpack_from
        max_frame = self.max_body + 1
        while n - pos >= 5:
            length, kind = unpack_from(data, pos)
            if length > max_frame or length == 0:
                self._fail(length)
            end = pos + 4 + length
            if end > n:
                need = self._need = end - pos
                if need > LARGE_FRAME and not self._large and self.reserve is not None:
                    # With one reserved, this is it, still partial: the
                    # reserved frame starts the data, and is released once
                    # whole, before any frame after it is parsed.
                    self._large = need
                    self.reserve(need)
                break
            if kind == MESSAGE_KIND:
                self.on_message(data[pos + 5 : end])
            else:
                self.on_control(kind, data[pos + 5 : end])
            # A callback may have switched limits or handlers (end of handshake),
            # or paused delivery.
            max_frame = self.max_body + 1
            pos = end
            if self.paused:
                self._need = 0
                break
        else:
            self._need = 5
        if pos < n:
            tail = data[pos:] if pos else data
            self._chunks.append(tail)
            self._have = len(tail)

    def resume(self) -> None:
        """
        Deliver again, starting with the frames that waited.
        """
        self.paused = False
        if self._chunks:
            data = b"".join(self._chunks)
            self._chunks = []
            self._have = 0
            self._need = 0
            if self._large and len(data) >= self._large:
                self._release_large()
            self.feed(data)

    def _release_large(self) -> None:
        """
        The reserved frame has arrived whole.
        """
        size, self._large = self._large, 0
        if self.release is not None:
            self.release(size)

    def _fail(self, length: int) -> None:
        self._chunks = []
        self._have = 0
        if self._large:
            self._release_large()
        if length == 0:
            raise DecodingError("empty frame")
        raise InvalidMessageSize(f"frame of {length - 1} bytes exceeds the limit of {self.max_body}")


def frame(kind: int, body: bytes) -> bytes:
    """
    One frame of C{kind} carrying C{body}.
    """
    return FRAME_HEADER.pack(len(body) + 1, kind) + body


def encode_message(data: bytes) -> bytes:
    """
    The frame of an application message.

    @raise TypeError: C{data} is not bytes (nor a bytes-like object).
    """
    try:
        return FRAME_HEADER.pack(len(data) + 1, MESSAGE_KIND) + data
    except TypeError:
        raise not_bytes(data) from None


def not_bytes(data: object) -> TypeError:
    """
    The error for an application message that is not bytes.
    """
    return TypeError(f"an application message is bytes, not {type(data).__name__} {data!r:.40}")


class _Reader:
    """
    Reads typed fields from a body, raising L{DecodingError} naming what is
    wrong.
    """

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def error(self, problem: str) -> DecodingError:
        return DecodingError(f"malformed {self.what}: {problem}")

    def take(self, size: int, field: str) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise self.error(f"truncated {field}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return int(_U16.unpack(self.take(2, field))[0])

    def text(self, field: str) -> str:
        raw = self.take(self.u8(field + " length"), field)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(f"{field} is not UTF-8") from None

    def point(self, field: str) -> Point:
        text = self.text(field)
        try:
            return Point.parse(text)
        except ValueError as e:
            # AddressError, or a bare ValueError from int() on non-ASCII
            # digits such as "1.2.3.4:\u00b2" that str.isdigit() accepts.
            raise self.error(f"{field}: {e}") from None

    def points(self, field: str) -> tuple[Point, ...]:
        count = self.u8(field + " count")
        if count > MAX_LISTED_POINTS:
            raise self.error(f"{count} {field} (at most {MAX_LISTED_POINTS})")
        return tuple(self.point(field) for _ in range(count))

    def versions(self, field: str) -> tuple[int, ...]:
        count = self.u8(field + " count")
        if count > MAX_VERSIONS:
            raise self.error(f"{count} {field} (at most {MAX_VERSIONS})")
        return tuple(self.u16(field) for _ in range(count))

    def boolean(self, field: str) -> bool:
        value = self.u8(field)
        if value > 1:
            raise self.error(f"{field} must be 0 or 1, got {value}")
        return value == 1

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self.error(f"{len(self.data) - self.pos} trailing bytes")


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"text too long for the wire: {value[:40]!r}…")
    return bytes([len(raw)]) + raw


def _points(points: Sequence[Point]) -> bytes:
    if len(points) > MAX_LISTED_POINTS:
        raise ValueError(f"at most {MAX_LISTED_POINTS} points per frame")
    return bytes([len(points)]) + b"".join(_text(str(p)) for p in points)


def _u16(value: int, field: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{field} must be 0-65535, not {value!r}")
    return _U16.pack(value)


def _versions(versions: Sequence[int]) -> bytes:
    if len(versions) > MAX_VERSIONS:
        raise ValueError(f"at most {MAX_VERSIONS} versions")
    return bytes([len(versions)]) + b"".join(_u16(v, "a version") for v in versions)


def _encode_body(msg: ControlMessage) -> tuple[Kind, bytes]:
    if isinstance(msg, Hello):
        if len(msg.proof_of_work_stamp) != POW_STAMP_SIZE:
            raise ValueError("a proof-of-work stamp is 24 bytes")
        if not msg.p2p_versions:
            raise ValueError("a Hello lists at least one p2p version")
        if len(msg.metadata) > 0xFFFF:
            raise ValueError("connection metadata is at most 65535 bytes")
        body = b"".join(
            [
                _u16(msg.port, "port"),
                msg.proof_of_work_stamp,
                _text(msg.network),
                _versions(msg.p2p_versions),
                _versions(msg.application_versions),
                bytes([1 if msg.private_mode else 0]),
                _U16.pack(len(msg.metadata)),
                msg.metadata,
            ]
        )
        if len(body) > HANDSHAKE_MAX_BODY:
            # The receiver would refuse the frame (InvalidMessageSize).
            raise ValueError(f"a Hello body is at most {HANDSHAKE_MAX_BODY} bytes, this one is {len(body)}")
        return Kind.HELLO, body
    if isinstance(msg, Nack):
        return Kind.NACK, _u16(msg.motive, "motive") + _points(msg.alternative_points)
    if isinstance(msg, Advertise):
        return Kind.ADVERTISE, _points(msg.points)
    if isinstance(msg, (SwapRequest, SwapAck)):
        kind = Kind.SWAP_REQUEST if isinstance(msg, SwapRequest) else Kind.SWAP_ACK
        return kind, _text(str(msg.point)) + msg.peer_id.raw
    return _EMPTY_KINDS[type(msg)], b""


_EMPTY_KINDS: dict[type, Kind] = {
    Ack: Kind.ACK,
    Disconnect: Kind.DISCONNECT,
    Bootstrap: Kind.BOOTSTRAP,
    Ping: Kind.PING,
    Pong: Kind.PONG,
}
_EMPTY_MESSAGES: dict[int, ControlMessage] = {int(k): cls() for cls, k in _EMPTY_KINDS.items()}


def encode(msg: ControlMessage) -> bytes:
    """
    The frame of a control message.

    @raise ValueError: the message cannot be represented on the wire.
    """
    kind, body = _encode_body(msg)
    return frame(kind, body)


#: Hello bodies up to this size are remembered, decoded, by their bytes
#: (L{HELLO_CACHE_SIZE} of them at most: at most 1 MiB with their Hellos).
HELLO_CACHE_BODY = 1024
#: How many decoded Hellos are remembered (the least recently seen forgotten).
HELLO_CACHE_SIZE = 1024


def _decode_hello_body(body: bytes) -> Hello:
    r = _Reader(body, "hello")
    hello = _decode_hello(r)
    r.end()
    return hello


#: A Hello body decoded, by its exact bytes: a peer sends the same Hello on
#: every connection of its run. Decoding is a function of the bytes alone
#: and a Hello is immutable, so a remembered one is what decoding would
#: give; a malformed body raises every time (errors are not remembered).
_remembered_hello = functools.lru_cache(maxsize=HELLO_CACHE_SIZE)(_decode_hello_body)


def _decode_hello(r: _Reader) -> Hello:
    port = r.u16("port")
    stamp = r.take(POW_STAMP_SIZE, "proof-of-work stamp")
    network = r.text("network")
    p2p = r.versions("p2p versions")
    if not p2p:
        raise r.error("no p2p version")
    app = r.versions("application versions")
    private = r.boolean("private mode flag")
    metadata = r.take(r.u16("metadata length"), "metadata")
    return Hello(port, stamp, network, p2p, app, private, metadata)


def _decode_swap(r: _Reader) -> tuple[Point, PeerId]:
    point = r.point("point")
    peer = PeerId(r.take(16, "peer id"))
    return point, peer


#: Each frame kind's name in errors.
_KIND_NAMES: dict[int, str] = {int(kind): kind.name.lower() for kind in Kind}


def decode_control(kind: int, body: bytes) -> ControlMessage:
    """
    Decode the body of a control frame.

    @raise DecodingError: unknown kind or malformed body; the message says
        what is wrong.
    """
    if not body:
        # The Ack, the Disconnect, pings: a message without fields, as the
        # reader below would decode it (other kinds go on to their errors).
        empty = _EMPTY_MESSAGES.get(kind)
        if empty is not None:
            return empty
    if kind == Kind.HELLO:
        return _remembered_hello(body) if len(body) <= HELLO_CACHE_BODY else _decode_hello_body(body)
    name = _KIND_NAMES.get(kind)
    if name is None:
        raise DecodingError(f"unknown frame kind 0x{kind:02x}")
    r = _Reader(body, name)
    msg: ControlMessage
    if kind == Kind.NACK:
        msg = Nack(r.u16("motive"), r.points("alternative points"))
    elif kind == Kind.ADVERTISE:
        msg = Advertise(r.points("points"))
    elif kind == Kind.SWAP_REQUEST:
        msg = SwapRequest(*_decode_swap(r))
    elif kind == Kind.SWAP_ACK:
        msg = SwapAck(*_decode_swap(r))
    elif kind in _EMPTY_MESSAGES:
        msg = _EMPTY_MESSAGES[kind]
    else:
        raise DecodingError(f"unexpected frame kind {name}")
    r.end()
    return msg


def decode_frames(data: bytes, max_body: int = HANDSHAKE_MAX_BODY) -> list[tuple[int, bytes]]:
    """
    Every complete frame in C{data} as C{(kind, body)}; for tests and tools.
    """
    frames: list[tuple[int, bytes]] = []
    decoder = FrameDecoder(
        max_body, lambda body: frames.append((MESSAGE_KIND, body)), lambda k, b: frames.append((k, b))
    )
    decoder.feed(data)
    return frames
