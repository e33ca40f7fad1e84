"""
Tests for L{p2pool.wire}: the frame codec and every control message body.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pool.core.addressing import PeerId, Point
from p2pool.core.wire import (
    HANDSHAKE_MAX_BODY,
    HELLO_CACHE_BODY,
    LARGE_FRAME,
    MAX_LISTED_POINTS,
    MAX_VERSIONS,
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
    decode_frames,
    encode,
    encode_message,
    frame,
)
from p2pool.errors import DecodingError, InvalidMessageSize

STAMP = bytes(range(24))
PEER = PeerId(bytes(range(100, 116)))
MIB = 1 << 20


def make_hello(**changes: object) -> Hello:
    fields: dict[str, object] = dict(
        port=9732,
        proof_of_work_stamp=STAMP,
        network="p2pool-test",
        p2p_versions=(1, 2),
        application_versions=(0, 7),
        private_mode=True,
        metadata=b"\x00meta\xff",
    )
    fields.update(changes)
    return Hello(**fields)  # type: ignore[arg-type]


def largest_hello() -> Hello:
    """
    A Hello whose body is exactly L{HANDSHAKE_MAX_BODY} bytes.
    """
    hello = make_hello(network="é" * 127, p2p_versions=tuple(range(16)), metadata=b"")
    overhead = len(encode(hello)) - 5
    return make_hello(network="é" * 127, p2p_versions=tuple(range(16)), metadata=b"x" * (HANDSHAKE_MAX_BODY - overhead))


def all_control_messages() -> list[ControlMessage]:
    """
    One instance of every control message kind, with non-trivial fields.
    """
    points = (Point("1.2.3.4", 9732), Point("::1", 1), Point("10.0.0.1", 0))
    return [
        make_hello(),
        make_hello(port=0, network="", p2p_versions=(1,), application_versions=(), private_mode=False, metadata=b""),
        largest_hello(),
        Ack(),
        Nack(5, points),
        Nack(0),
        Nack(0xFFFF, tuple(Point("10.0.0.1", p) for p in range(MAX_LISTED_POINTS))),
        Disconnect(),
        Bootstrap(),
        Advertise(points),
        Advertise(()),
        SwapRequest(Point("192.168.1.1", 65535), PEER),
        SwapAck(Point("2001:db8::1", 9732), PEER),
        Ping(),
        Pong(),
    ]


class Collector:
    """
    The callbacks of a L{FrameDecoder}, recording every frame as
    C{(kind, body)}.
    """

    def __init__(self, max_body: int = HANDSHAKE_MAX_BODY) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.decoder = FrameDecoder(max_body, self.on_message, self.on_control)

    def on_message(self, body: bytes) -> None:
        self.frames.append((int(Kind.MESSAGE), body))

    def on_control(self, kind: int, body: bytes) -> None:
        self.frames.append((kind, body))


def chunks(data: bytes, rng: random.Random, largest: int) -> list[bytes]:
    """
    C{data} cut into consecutive pieces of random sizes 0..C{largest}.
    """
    pieces = []
    pos = 0
    while pos < len(data):
        size = rng.randint(0, largest)
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


def body_of(msg: ControlMessage) -> bytes:
    ((kind, body),) = decode_frames(encode(msg), max_body=MIB)
    return body


class RoundTripTests(SynchronousTestCase):
    """
    Every control message survives encode → decode_frames → decode_control.
    """

    def test_every_control_message(self) -> None:
        for msg in all_control_messages():
            data = encode(msg)
            frames = decode_frames(data, max_body=MIB)
            self.assertEqual(len(frames), 1, msg)
            kind, body = frames[0]
            self.assertEqual(decode_control(kind, body), msg)

    def test_frame_header(self) -> None:
        """
        The first 4 bytes are the big-endian length of kind + body, then
        the kind byte.
        """
        for msg in all_control_messages():
            data = encode(msg)
            (length,) = struct.unpack(">I", data[:4])
            self.assertEqual(length, len(data) - 4)
        self.assertEqual(encode(Ack()), b"\x00\x00\x00\x01\x02")
        self.assertEqual(encode(Ping()), b"\x00\x00\x00\x01\x15")
        self.assertEqual(encode_message(b"abc"), b"\x00\x00\x00\x04\x20abc")
        self.assertEqual(frame(0x12, b"\x00"), b"\x00\x00\x00\x02\x12\x00")

    def test_kind_codes(self) -> None:
        expected = {
            Hello: 0x01,
            Ack: 0x02,
            Nack: 0x03,
            Disconnect: 0x10,
            Bootstrap: 0x11,
            Advertise: 0x12,
            SwapRequest: 0x13,
            SwapAck: 0x14,
            Ping: 0x15,
            Pong: 0x16,
        }
        for msg in all_control_messages():
            self.assertEqual(encode(msg)[4], expected[type(msg)], msg)
        self.assertEqual(Kind.MESSAGE, 0x20)

    def test_hello_layout(self) -> None:
        body = body_of(
            make_hello(
                port=0x1234,
                network="ab",
                p2p_versions=(1,),
                application_versions=(2, 3),
                private_mode=True,
                metadata=b"M",
            )
        )
        self.assertEqual(
            body,
            b"\x12\x34" + STAMP + b"\x02ab" + b"\x01\x00\x01" + b"\x02\x00\x02\x00\x03" + b"\x01" + b"\x00\x01M",
        )

    def test_nack_and_swap_layout(self) -> None:
        self.assertEqual(body_of(Nack(1, (Point("1.2.3.4", 5),))), b"\x00\x01\x01\x091.2.3.4:5")
        self.assertEqual(body_of(SwapRequest(Point("::1", 7), PEER)), b"\x07[::1]:7" + PEER.raw)
        self.assertEqual(body_of(Advertise(())), b"\x00")

    def test_ipv4_mapped_points_normalised(self) -> None:
        text = b"[::ffff:1.2.3.4]:9"
        msg = decode_control(Kind.ADVERTISE, b"\x01" + bytes([len(text)]) + text)
        self.assertEqual(msg, Advertise((Point("1.2.3.4", 9),)))

    def test_message_round_trip(self) -> None:
        for data in (b"", b"x", bytes(range(256)) * 10):
            self.assertEqual(decode_frames(encode_message(data), max_body=MIB), [(int(Kind.MESSAGE), data)])


class FrameDecoderTests(SynchronousTestCase):
    """
    L{FrameDecoder} delivers frames however the stream is cut.
    """

    def stream(self, with_big: bool = True) -> tuple[bytes, list[tuple[int, bytes]]]:
        """
        Every control message interleaved with application messages, one
        of them 1 MiB long unless C{with_big} is false; and the frames
        expected from it.
        """
        msgs = all_control_messages()
        parts: list[bytes] = []
        expected: list[tuple[int, bytes]] = []
        big = bytes(random.Random(7).getrandbits(8) for _ in range(256)) * (MIB // 256)
        for i, msg in enumerate(msgs):
            data = encode(msg)
            parts.append(data)
            expected.append((data[4], data[5:]))
            payload = big if i == 3 and with_big else bytes([i]) * i
            parts.append(encode_message(payload))
            expected.append((int(Kind.MESSAGE), payload))
        return b"".join(parts), expected

    def test_one_byte_at_a_time(self) -> None:
        data, expected = self.stream()
        collector = Collector(max_body=MIB)
        view = memoryview(data)
        for i in range(len(data)):
            collector.decoder.feed(bytes(view[i : i + 1]))
        self.assertEqual(collector.frames, expected)
        self.assertEqual(collector.decoder.buffered, 0)

    def test_every_split_point(self) -> None:
        """
        Cutting a stream of small frames in two at every byte boundary
        yields the same frames.
        """
        msgs = [m for m in all_control_messages() if len(encode(m)) < 2000]
        data = b"".join(encode(m) for m in msgs) + encode_message(b"tail")
        expected = decode_frames(data, max_body=MIB)
        self.assertEqual(len(expected), len(msgs) + 1)
        for cut in range(len(data) + 1):
            collector = Collector(max_body=MIB)
            collector.decoder.feed(data[:cut])
            collector.decoder.feed(data[cut:])
            self.assertEqual(collector.frames, expected, f"cut at {cut}")

    def test_random_chunkings(self) -> None:
        rng = random.Random(20240601)
        small = self.stream(with_big=False)
        big = self.stream(with_big=True)
        cases = [(small, largest) for largest in (2, 3, 7, 16, 100) for _ in range(3)]
        cases += [(big, largest) for largest in (50, 5000, 300000, 2 * MIB)]
        for (data, expected), largest in cases:
            collector = Collector(max_body=MIB)
            for piece in chunks(data, rng, largest):
                collector.decoder.feed(piece)
            self.assertEqual(collector.frames, expected, f"chunks up to {largest}")
            self.assertEqual(collector.decoder.buffered, 0)

    def test_one_mebibyte_message(self) -> None:
        payload = bytes(random.Random(1).getrandbits(8) for _ in range(4096)) * 256
        self.assertEqual(len(payload), MIB)
        data = encode_message(payload)
        for seed in range(3):
            collector = Collector(max_body=MIB)
            for piece in chunks(data, random.Random(seed), 65536):
                collector.decoder.feed(piece)
            self.assertEqual(collector.frames, [(int(Kind.MESSAGE), payload)])

    def test_several_frames_in_one_chunk(self) -> None:
        data = encode(Ping()) + encode_message(b"a") + encode(Pong()) + encode_message(b"bc") + encode(Ping())[:3]
        collector = Collector()
        collector.decoder.feed(data)
        self.assertEqual(
            collector.frames,
            [(0x15, b""), (0x20, b"a"), (0x16, b""), (0x20, b"bc")],
        )
        self.assertEqual(collector.decoder.buffered, 3)
        collector.decoder.feed(encode(Ping())[3:])
        self.assertEqual(collector.frames[-1], (0x15, b""))
        self.assertEqual(collector.decoder.buffered, 0)

    def test_limit_is_on_body_size(self) -> None:
        for max_body in (0, 1, 10, 1000):
            collector = Collector(max_body=max_body)
            collector.decoder.feed(encode_message(b"x" * max_body))
            self.assertEqual(collector.frames, [(0x20, b"x" * max_body)])
            over = Collector(max_body=max_body)
            error = self.assertRaises(InvalidMessageSize, over.decoder.feed, encode_message(b"x" * (max_body + 1)))
            self.assertIn(f"frame of {max_body + 1} bytes exceeds the limit of {max_body}", str(error))
            self.assertEqual(over.frames, [])

    def test_oversized_detected_from_header(self) -> None:
        """
        An oversized frame is refused as soon as its header arrives,
        without waiting for (or buffering) its body.
        """
        collector = Collector(max_body=100)
        self.assertRaises(InvalidMessageSize, collector.decoder.feed, struct.pack(">IB", 0xFFFFFFFF, 0x20))
        self.assertEqual(collector.decoder.buffered, 0)
        control = Collector(max_body=100)
        self.assertRaises(InvalidMessageSize, control.decoder.feed, frame(0x11, b"\0" * 101))

    def test_invalid_message_size_is_a_decoding_error(self) -> None:
        self.assertTrue(issubclass(InvalidMessageSize, DecodingError))

    def test_limit_change_in_callback(self) -> None:
        """
        A callback that raises the limit (end of the handshake) applies to
        the following frames of the same chunk.
        """
        frames: list[bytes] = []
        decoder = FrameDecoder(10, frames.append, lambda kind, body: setattr(decoder, "max_body", 1000))
        decoder.feed(encode(Ack()) + encode_message(b"y" * 500))
        self.assertEqual(frames, [b"y" * 500])

    def test_zero_length_frame(self) -> None:
        collector = Collector()
        error = self.assertRaises(DecodingError, collector.decoder.feed, b"\x00\x00\x00\x00\x02")
        self.assertIn("empty frame", str(error))
        after_good = Collector()
        self.assertRaises(DecodingError, after_good.decoder.feed, encode(Ping()) + b"\x00\x00\x00\x00\x01")
        self.assertEqual(after_good.frames, [(0x15, b"")])

    def test_decode_frames_leaves_partial(self) -> None:
        self.assertEqual(decode_frames(encode(Ping()) + encode(Pong())[:-1]), [(0x15, b"")])


def hello_body(**changes: object) -> bytes:
    return body_of(make_hello(**changes))


def text(raw: bytes) -> bytes:
    return bytes([len(raw)]) + raw


class ReservingCollector(Collector):
    """
    A L{Collector} whose decoder reserves large frames, recording every
    C{reserve} and C{release}, and pausing after a frame when C{pause_after}
    says so.
    """

    def __init__(self, max_body: int = MIB, pause_after: Callable[[], bool] = lambda: False) -> None:
        super().__init__(max_body)
        self.decoder.reserve = self.reserve
        self.decoder.release = self.release
        self.calls: list[tuple[str, int]] = []
        self.reserved = 0
        self.pause_after = pause_after

    def reserve(self, size: int) -> None:
        assert not self.reserved, "one reservation at a time"
        self.calls.append(("reserve", size))
        self.reserved = size

    def release(self, size: int) -> None:
        assert self.reserved == size, (self.reserved, size)
        self.calls.append(("release", size))
        self.reserved = 0

    def on_message(self, body: bytes) -> None:
        assert len(body) + 5 <= LARGE_FRAME or not self.reserved, "a large frame is released before delivery"
        super().on_message(body)
        if self.pause_after():
            self.decoder.paused = True


class LargeFrameReservationTests(SynchronousTestCase):
    """
    A L{FrameDecoder} reserves a large frame's size when it starts waiting
    for its body, and releases it exactly once when the frame is whole,
    however the stream is cut and paused; smaller frames reserve nothing.
    """

    def test_small_frames_reserve_nothing(self) -> None:
        largest = encode_message(b"s" * (LARGE_FRAME - 5))
        self.assertEqual(len(largest), LARGE_FRAME)
        data = largest + encode(Ping()) + encode_message(b"t" * 1000)
        collector = ReservingCollector()
        for i in range(0, len(data), 7):
            collector.decoder.feed(data[i : i + 7])
        self.assertEqual(len(collector.frames), 3)
        self.assertEqual(collector.calls, [])

    def test_reserved_from_the_header(self) -> None:
        """
        The whole frame is reserved when its header arrives, before the
        rest of its body is buffered.
        """
        data = encode_message(b"b" * MIB)
        collector = ReservingCollector()
        collector.decoder.feed(data[:15])
        self.assertEqual(collector.calls, [("reserve", MIB + 5)])
        self.assertEqual(collector.decoder.buffered, 15)
        collector.decoder.feed(data[15 : MIB // 2])
        self.assertEqual(collector.calls, [("reserve", MIB + 5)], "reserved once")
        collector.decoder.feed(data[MIB // 2 :] + encode(Ping()))
        self.assertEqual(collector.calls, [("reserve", MIB + 5), ("release", MIB + 5)])
        self.assertEqual(collector.frames, [(0x20, b"b" * MIB), (0x15, b"")])

    def test_a_frame_whole_in_one_read_reserves_nothing(self) -> None:
        collector = ReservingCollector()
        collector.decoder.feed(encode_message(b"w" * MIB) + encode(Ping())[:2])
        self.assertEqual(collector.calls, [])
        self.assertEqual(collector.decoder.buffered, 2)

    @settings(max_examples=60, deadline=None)
    @given(
        sizes=st.lists(st.sampled_from([0, 100, LARGE_FRAME - 5, LARGE_FRAME - 4, 200_000]), min_size=1, max_size=6),
        seed=st.integers(0, 2**32),
        largest=st.sampled_from([1000, 30_000, 70_000, 300_000]),
    )
    def test_reserved_and_released_once_however_cut(self, sizes: list[int], seed: int, largest: int) -> None:
        rng = random.Random(seed)
        bodies = [bytes([i]) * size for i, size in enumerate(sizes)]
        data = b"".join(encode_message(body) for body in bodies)
        collector = ReservingCollector(pause_after=lambda: rng.random() < 0.3)
        decoder = collector.decoder
        for piece in chunks(data, rng, largest):
            decoder.feed(piece)
            if not decoder.paused:
                self.assertLessEqual(decoder.buffered, max(LARGE_FRAME, collector.reserved), "held bytes are reserved")
            if rng.random() < 0.2:
                decoder.paused = True  # the connection's reading paused (pause_reading)
            while decoder.paused and rng.random() < 0.7:
                decoder.resume()
        while decoder.paused:
            decoder.resume()
        self.assertEqual(collector.frames, [(0x20, body) for body in bodies])
        self.assertEqual(collector.reserved, 0)
        reserves = [size for call, size in collector.calls if call == "reserve"]
        self.assertEqual([size for call, size in collector.calls if call == "release"], reserves)
        large = [len(body) + 5 for body in bodies if len(body) + 5 > LARGE_FRAME]
        self.assertLessEqual(len(reserves), len(large))
        self.assertTrue(set(reserves) <= set(large))

    def test_failure_releases(self) -> None:
        """
        A stream found bad while a frame is reserved keeps nothing reserved.
        """
        collector = ReservingCollector()
        decoder = collector.decoder
        decoder.feed(encode_message(b"f" * MIB)[:100])
        decoder.paused = True
        decoder.feed(b"f" * 100)
        decoder.max_body = 1000
        self.assertRaises(InvalidMessageSize, decoder.resume)
        self.assertEqual(collector.calls, [("reserve", MIB + 5), ("release", MIB + 5)])
        self.assertEqual(decoder.buffered, 0)


class MalformedBodyTests(SynchronousTestCase):
    """
    Every malformed body raises L{DecodingError} naming the problem.
    """

    def assert_malformed(self, kind: int, body: bytes, *words: str) -> DecodingError:
        error = self.assertRaises(DecodingError, decode_control, kind, body)
        for word in words:
            self.assertIn(word, str(error))
        return error

    def test_truncated_fields(self) -> None:
        body = hello_body()
        # Every proper prefix of a Hello is truncated somewhere.
        for size in range(len(body)):
            self.assert_malformed(Kind.HELLO, body[:size], "malformed hello", "truncated")
        self.assert_malformed(Kind.HELLO, b"\x00", "truncated port")
        self.assert_malformed(Kind.HELLO, b"\x00\x01" + STAMP[:10], "truncated proof-of-work stamp")
        self.assert_malformed(Kind.HELLO, b"\x00\x01" + STAMP + b"\x05ab", "truncated network")
        self.assert_malformed(Kind.NACK, b"\x00", "malformed nack", "truncated motive")
        self.assert_malformed(Kind.NACK, b"\x00\x01\x02" + text(b"1.2.3.4:5"), "truncated alternative points")
        self.assert_malformed(Kind.ADVERTISE, b"", "truncated points count")
        point = text(b"1.2.3.4:5")
        self.assert_malformed(Kind.SWAP_REQUEST, point + PEER.raw[:15], "malformed swap_request", "truncated peer id")
        self.assert_malformed(Kind.SWAP_ACK, point[:-1], "malformed swap_ack", "truncated point")

    def test_trailing_bytes(self) -> None:
        for msg in all_control_messages():
            kind = encode(msg)[4]
            self.assert_malformed(kind, body_of(msg) + b"\x00", "1 trailing bytes")
        self.assert_malformed(Kind.PING, b"ab", "malformed ping", "2 trailing bytes")

    def test_empty_bodies(self) -> None:
        """
        An empty body is a message without fields for the kinds that have
        none (the same message each time), and for every other kind the
        error the reader names.
        """
        for msg in all_control_messages():
            if not body_of(msg):
                kind = encode(msg)[4]
                self.assertEqual(decode_control(kind, b""), msg)
                self.assertIs(decode_control(kind, b""), decode_control(kind, b""))
        self.assert_malformed(Kind.HELLO, b"", "malformed hello", "truncated port")
        self.assert_malformed(Kind.NACK, b"", "malformed nack", "truncated motive")
        self.assert_malformed(Kind.SWAP_ACK, b"", "malformed swap_ack", "truncated point")
        self.assert_malformed(Kind.MESSAGE, b"", "unexpected frame kind message")
        self.assert_malformed(0x7F, b"", "unknown frame kind 0x7f")

    def test_bad_utf8(self) -> None:
        body = hello_body(network="ab")
        bad = body.replace(b"\x02ab", b"\x02\xff\xfe", 1)
        self.assert_malformed(Kind.HELLO, bad, "network is not UTF-8")
        self.assert_malformed(Kind.ADVERTISE, b"\x01\x02\xc3\x28", "points is not UTF-8")

    def test_bad_point_text(self) -> None:
        for raw in (
            b"1.2.3.4",
            b"host.example:80",
            b"1.2.3.4:70000",
            b"::1:80",
            b"[::1]80",
            b":1",
            "1.2.3.4:²".encode(),
        ):
            error = self.assert_malformed(Kind.ADVERTISE, b"\x01" + text(raw), "malformed advertise", "points")
            self.assertNotIsInstance(error, InvalidMessageSize)
        self.assert_malformed(Kind.SWAP_REQUEST, text(b"nowhere") + PEER.raw, "malformed swap_request", "point")

    def test_too_many_points(self) -> None:
        point = text(b"1.2.3.4:5")
        self.assert_malformed(Kind.ADVERTISE, b"\x65" + point * 101, "101 points (at most 100)")
        self.assert_malformed(Kind.NACK, b"\x00\x00\x65" + point * 101, "101 alternative points (at most 100)")
        accepted = decode_control(Kind.NACK, b"\x00\x00\x64" + point * 100)
        assert isinstance(accepted, Nack)
        self.assertEqual(len(accepted.alternative_points), 100)

    def test_too_many_versions(self) -> None:
        prefix = b"\x00\x01" + STAMP + text(b"n")
        self.assert_malformed(Kind.HELLO, prefix + b"\x11" + b"\x00\x01" * 17, "17 p2p versions (at most 16)")
        self.assert_malformed(
            Kind.HELLO, prefix + b"\x01\x00\x01" + b"\x11" + b"\x00\x01" * 17, "17 application versions (at most 16)"
        )

    def test_boolean_not_zero_or_one(self) -> None:
        body = bytearray(hello_body(private_mode=True, metadata=b""))
        flag_at = len(body) - 3
        self.assertEqual(body[flag_at], 1)
        body[flag_at] = 2
        self.assert_malformed(Kind.HELLO, bytes(body), "private mode flag must be 0 or 1, got 2")

    def test_empty_p2p_versions(self) -> None:
        body = b"\x00\x01" + STAMP + text(b"n") + b"\x00" + b"\x00" + b"\x00" + b"\x00\x00"
        self.assert_malformed(Kind.HELLO, body, "no p2p version")

    def test_unknown_kind(self) -> None:
        self.assert_malformed(0x7F, b"", "unknown frame kind 0x7f")
        self.assert_malformed(0x00, b"", "unknown frame kind 0x00")

    def test_message_kind_is_not_control(self) -> None:
        self.assert_malformed(Kind.MESSAGE, b"data", "unexpected frame kind message")


class RememberedHelloTests(SynchronousTestCase):
    """
    A Hello body of at most L{HELLO_CACHE_BODY} bytes is decoded once and
    remembered by its bytes; what is remembered is what decoding gives, and
    a malformed body is refused every time.
    """

    def test_same_bytes_same_hello(self) -> None:
        body = hello_body(network="remembered")
        first = decode_control(Kind.HELLO, body)
        self.assertEqual(first, make_hello(network="remembered"))
        self.assertIs(decode_control(Kind.HELLO, bytes(body)), first)
        # One byte changed: decoded afresh, its own Hello.
        other = decode_control(Kind.HELLO, body.replace(b"remembered", b"rememberee"))
        assert isinstance(other, Hello)
        self.assertEqual(other.network, "rememberee")

    def test_malformed_refused_every_time(self) -> None:
        body = hello_body(network="refused") + b"\x00"
        for _ in range(2):
            self.assertRaises(DecodingError, decode_control, Kind.HELLO, body)

    def test_large_body_decoded_each_time(self) -> None:
        metadata = b"m" * HELLO_CACHE_BODY
        body = hello_body(metadata=metadata)
        self.assertGreater(len(body), HELLO_CACHE_BODY)
        first = decode_control(Kind.HELLO, body)
        self.assertEqual(first, make_hello(metadata=metadata))
        again = decode_control(Kind.HELLO, body)
        self.assertEqual(again, first)
        self.assertIsNot(again, first)
        self.assertRaises(DecodingError, decode_control, Kind.HELLO, body + b"\x00")


class EncodeRefusalTests(SynchronousTestCase):
    """
    L{encode} raises L{ValueError} for messages the wire cannot carry.
    """

    def test_impossible_messages(self) -> None:
        impossible: Sequence[ControlMessage] = [
            make_hello(proof_of_work_stamp=b"\0" * 23),
            make_hello(proof_of_work_stamp=b"\0" * 25),
            make_hello(network="x" * 256),
            make_hello(network="é" * 128),
            make_hello(p2p_versions=tuple(range(17))),
            make_hello(application_versions=tuple(range(17))),
            make_hello(p2p_versions=()),
            make_hello(p2p_versions=(0x10000,)),
            make_hello(application_versions=(-1,)),
            make_hello(port=65536),
            make_hello(metadata=b"\0" * 0x10000),
            # Fits the metadata length field, but the body would exceed
            # what a receiver accepts during the handshake.
            make_hello(metadata=b"\0" * 0xFFFF),
            attrs.evolve(largest_hello(), metadata=largest_hello().metadata + b"x"),
            Nack(0x10000),
            Nack(-1),
            Nack(1, tuple(Point("1.1.1.1", p) for p in range(101))),
            Advertise(tuple(Point("1.1.1.1", p) for p in range(101))),
        ]
        for msg in impossible:
            self.assertRaises(ValueError, encode, msg)

    def test_largest_hello_passes_handshake_limit(self) -> None:
        data = encode(largest_hello())
        self.assertEqual(len(data), 4 + 1 + HANDSHAKE_MAX_BODY)
        collector = Collector(max_body=HANDSHAKE_MAX_BODY)
        collector.decoder.feed(data)
        self.assertEqual([decode_control(k, b) for k, b in collector.frames], [largest_hello()])

    def test_limits_are_inclusive(self) -> None:
        for msg in (
            make_hello(network="x" * 255, p2p_versions=tuple(range(MAX_VERSIONS)), port=65535),
            Nack(0xFFFF, tuple(Point("1.1.1.1", p) for p in range(MAX_LISTED_POINTS))),
        ):
            kind, body = decode_frames(encode(msg), max_body=MIB)[0]
            self.assertEqual(decode_control(kind, body), msg)


class FuzzTests(SynchronousTestCase):
    """
    Arbitrary input never raises anything but L{DecodingError}.
    """

    @settings(max_examples=200, deadline=None)
    @given(
        data=st.one_of(
            st.binary(max_size=600),
            st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=120)), max_size=6).map(
                lambda frames: b"".join(frame(kind, body) for kind, body in frames)
            ),
        ),
        cut=st.integers(min_value=1, max_value=64),
    )
    def test_arbitrary_bytes(self, data: bytes, cut: int) -> None:
        delivered: list[object] = []

        def on_control(kind: int, body: bytes) -> None:
            msg = decode_control(kind, body)
            if _canonical(msg):
                # A decoded message re-encodes to the very same frame.
                self.assertEqual(encode(msg), frame(kind, body))
            delivered.append(msg)

        decoder = FrameDecoder(256, delivered.append, on_control)
        try:
            for pos in range(0, len(data), cut):
                decoder.feed(data[pos : pos + cut])
        except DecodingError:
            pass
        self.assertLessEqual(len(delivered), len(data) // 5)


def _canonical(msg: ControlMessage) -> bool:
    """
    Whether re-encoding C{msg} must give back its exact bytes (point text
    may be written non-canonically, e.g. an IPv4-mapped address).
    """
    return not isinstance(msg, (Nack, Advertise, SwapRequest, SwapAck))
