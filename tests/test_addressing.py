"""
Tests for points, peer ids and netgroups.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import ipaddress
import pickle
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import p2pool.core.addressing as addressing
import p2pool.core.base58 as base58
from p2pool.core.addressing import (
    AddressError,
    PeerId,
    Point,
    PointSpec,
    Reach,
    built_point,
    learnt_point_refusal,
    netgroup,
    node_reach,
    normalise_ip,
    parse_point_once,
    reach,
)


class PeerIdTests(SynchronousTestCase):
    def test_base58check_round_trip(self) -> None:
        peer = PeerId.from_public_key(b"\x01" * 32)
        text = str(peer)
        self.assertTrue(text.startswith("id"))
        self.assertEqual(len(text), 30)
        self.assertEqual(PeerId.parse(text), peer)
        self.assertEqual(peer.raw, hashlib.blake2b(b"\x01" * 32, digest_size=16).digest())

    def test_malformed(self) -> None:
        text = str(PeerId(b"\x00" * 16))
        for bad in ["", "id0OIl", text[:-1] + ("1" if text[-1] != "1" else "2"), "1" * 30]:
            self.assertRaises(AddressError, PeerId.parse, bad)
        self.assertRaises(AddressError, PeerId, b"short")

    def test_texts_kept_within_bound(self) -> None:
        """
        The texts made or parsed are kept up to L{addressing.MAX_PEER_ID_TEXTS}
        ids, then forgotten; a forgotten text is made again, the same.
        """
        self.patch(addressing, "MAX_PEER_ID_TEXTS", 3)
        ids = [PeerId(bytes([i]) + b"kept-texts-test") for i in range(8)]
        texts = [base58.encode_check(b"\x99\x67" + peer.raw) for peer in ids]
        for peer, text in zip(ids, texts):
            self.assertEqual(str(peer), text)
            self.assertLessEqual(addressing.kept_peer_id_texts(), 3)
        self.assertEqual([str(peer) for peer in ids], texts)
        self.assertEqual([PeerId.parse(text) for text in texts], ids)

    @given(st.binary(min_size=16, max_size=16))
    def test_parsed_as_constructed(self, raw: bytes) -> None:
        """
        A parsed peer id has the fields of the constructed one (built
        without the constructor), and keeps its text; a subclass's parse
        still goes through its constructor.
        """
        built = PeerId(raw)
        text = str(PeerId(raw))
        parsed = PeerId.parse(text)
        self.assertEqual((parsed.raw, hash(parsed)), (built.raw, hash(built)))
        self.assertEqual(parsed, built)
        self.assertIs(str(parsed), text)
        self.assertFalse(gc.is_tracked(parsed))

        class Sub(PeerId):
            pass

        self.assertIs(type(Sub.parse(text)), Sub)
        self.assertEqual(Sub.parse(text).raw, raw)


class PointTests(SynchronousTestCase):
    def test_parse_and_text(self) -> None:
        self.assertEqual(str(Point.parse("1.2.3.4:9732")), "1.2.3.4:9732")
        self.assertEqual(str(Point.parse("[::1]:9732")), "[::1]:9732")
        self.assertEqual(Point.parse("[::ffff:1.2.3.4]:1"), Point("1.2.3.4", 1))
        self.assertEqual(normalise_ip("::FFFF:10.0.0.1"), "10.0.0.1")

    @settings(max_examples=500, deadline=None)
    @given(st.integers(0, 2**32 - 1), st.sampled_from(["{}", "0{}", "{} ", "::ffff:{}", "{}.1"]))
    def test_normalise_ip_as_ipaddress_does(self, number: int, form: str) -> None:
        """
        Dotted-quad IPv4 text is recognised without ipaddress when it is
        already canonical; every text still gets ipaddress's answer.
        """
        text = form.format(ipaddress.IPv4Address(number))
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            self.assertRaises(AddressError, normalise_ip, text)
            return
        mapped = getattr(address, "ipv4_mapped", None)
        self.assertEqual(normalise_ip(text), str(mapped or address))

    def test_parse_is_cached(self) -> None:
        """
        Parsing the same text twice gives the same point (a point list
        names the same points again and again); other text, or text that
        is not a point, is not confused with it.
        """
        first = Point.parse("10.1.2.3:9732")
        self.assertIs(Point.parse("10.1.2.3:9732"), first)
        self.assertEqual(Point.parse("10.1.2.3:9733"), Point("10.1.2.3", 9733))
        self.assertIs(Point.parse("[::ffff:10.1.2.3]:9732"), Point.parse("[::ffff:10.1.2.3]:9732"))
        self.assertEqual(Point.parse("[::ffff:10.1.2.3]:9732"), first)
        for bad in ("10.1.2.3", "10.1.2.3:99999", b"10.1.2.3:1", ["10.1.2.3:1"]):
            self.assertRaises(AddressError, Point.parse, bad)  # type: ignore[arg-type]

    @settings(max_examples=500, deadline=None)
    @given(
        st.one_of(
            st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
            st.sampled_from(
                ["01.2.3.4", "1.2.3.4 ", "::ffff:1.2.3.4", "2001:db8::1", "fe80::1%eth0", "", "x", "1.2.3"]
            ),
            st.text(alphabet="0123456789.:abcdef", max_size=20),
        ),
        st.one_of(st.integers(-2, 65537), st.sampled_from([True, False, 1.0, "1", None])),
    )
    def test_built_point_as_the_constructor(self, ip: str, port: object) -> None:
        """
        L{built_point} makes the point the constructor makes, with the same
        fields, hash and text, or refuses what it refuses, with the same
        message; L{parse_point_once} parses as L{Point.parse} does.
        """
        expected = self._point_or_error(lambda: Point(ip, port))  # type: ignore[arg-type]
        point = self._point_or_error(lambda: built_point(ip, port))  # type: ignore[arg-type]
        self.assertEqual(point, expected)
        if isinstance(point, Point) and isinstance(expected, Point):
            self.assertIs(type(point), Point)
            self.assertIs(type(point.port), int)
            self.assertEqual(hash(point), hash(expected))
            self.assertEqual(str(point), str(expected))
        text = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        self.assertEqual(
            self._point_or_error(lambda: parse_point_once(text)), self._point_or_error(lambda: Point.parse(text))
        )

    @staticmethod
    def _point_or_error(make: Callable[[], Point]) -> Point | str:
        """
        The point C{make} returns, or the message of the L{AddressError}
        it raises.
        """
        try:
            return make()
        except AddressError as e:
            return f"AddressError: {e}"

    def test_built_point_skips_the_caches(self) -> None:
        """
        Canonical IPv4 text is built without the shared cache of
        L{normalise_ip}: a file of many addresses does not churn it.
        """
        normalise_ip.cache_clear()
        built_point("10.9.8.7", 1)
        parse_point_once("10.9.8.6:1")
        self.assertEqual(normalise_ip.cache_info().currsize, 0)
        self.assertEqual(built_point("::ffff:10.9.8.7", 1), Point("10.9.8.7", 1))

    def test_value_untracked_with_kept_hash(self) -> None:
        """
        A point is a value: equal points hash alike however they were made
        (L{built_point} fills a copy of a template point, whose own hash may
        have been taken), order by IP then port, and are not tracked by the
        cyclic garbage collector.
        """
        point = Point("2001:db8::1", 1)
        self.assertEqual(str(point), "[2001:db8::1]:1")
        self.assertEqual(point, Point("2001:db8::1", 1))
        self.assertEqual(hash(point), hash(Point("2001:db8::1", 1)))
        hash(built_point("0.0.0.0", 0))
        built = built_point("10.9.8.7", 1)
        self.assertEqual((built, hash(built)), (Point("10.9.8.7", 1), hash(Point("10.9.8.7", 1))))
        self.assertNotEqual(hash(built), hash(Point("0.0.0.0", 0)))
        self.assertLess(Point("10.0.0.1", 9), Point("10.0.0.2", 1))
        self.assertLess(Point("10.0.0.1", 1), Point("10.0.0.1", 2))
        self.assertFalse(gc.is_tracked(point))
        self.assertFalse(gc.is_tracked(built))

    def test_copies_and_pickles(self) -> None:
        """
        A copied or unpickled point equals the original and hashes alike.
        """
        point = Point.parse("[::ffff:10.1.2.3]:9732")
        for other in (copy.copy(point), copy.deepcopy(point), pickle.loads(pickle.dumps(point))):
            self.assertEqual((other, hash(other), str(other)), (point, hash(point), "10.1.2.3:9732"))

    def test_malformed_points_name_the_problem(self) -> None:
        cases = {
            "1.2.3.4": "missing ':port'",
            "1.2.3.4:99999": "port must be 0-65535",
            "1.2.3.4:\u00b2": "port must be 0-65535",
            "::1:5": "write IPv6 as '[addr]:port'",
            ":5": "missing address",
            "[::1:5": "expected '[ipv6]:port'",
            "host.example:5": "not an IP address",
        }
        for text, problem in cases.items():
            with self.assertRaises(AddressError) as caught:
                Point.parse(text)
            self.assertIn(problem, str(caught.exception), text)

    def test_point_spec(self) -> None:
        peer = PeerId(b"\x07" * 16)
        spec = PointSpec.parse(f"Seed.Example.org.:9732#{peer}")
        self.assertEqual((spec.host, spec.port, spec.expected_peer_id), ("seed.example.org", 9732, peer))
        self.assertIsNone(spec.point)
        self.assertEqual(PointSpec.parse("10.0.0.1:1").point, Point("10.0.0.1", 1))
        self.assertRaises(AddressError, PointSpec.parse, "10.0.0.1:0")
        self.assertRaises(AddressError, PointSpec.parse, "bad_host!:1")
        self.assertRaises(AddressError, PointSpec.parse, "10.0.0.1:1#notapeer")

    def test_netgroup(self) -> None:
        self.assertEqual(netgroup("10.2.3.4"), "10.2.0.0/16")
        self.assertEqual(netgroup("2001:db8:1::1"), "2001:db8::/32")


class ReachTests(SynchronousTestCase):
    """
    Reachability classes, and which learnt points a node keeps.
    """

    def test_classes(self) -> None:
        cases = {
            "127.0.0.1": Reach.LOOPBACK,
            "127.9.3.4": Reach.LOOPBACK,
            "::1": Reach.LOOPBACK,
            "10.0.0.1": Reach.PRIVATE,
            "192.168.1.1": Reach.PRIVATE,
            "100.64.0.1": Reach.PRIVATE,
            "169.254.1.1": Reach.PRIVATE,
            "fe80::1": Reach.PRIVATE,
            "fc00::1": Reach.PRIVATE,
            "192.0.2.1": Reach.PRIVATE,
            "240.0.0.1": Reach.PRIVATE,
            "1.2.3.4": Reach.PUBLIC,
            "2a00::1": Reach.PUBLIC,
        }
        for ip, expected in cases.items():
            self.assertEqual(reach(ip), expected, ip)
        for ip in ("0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"):
            self.assertIsNone(reach(ip), ip)

    def test_node_class(self) -> None:
        self.assertEqual(node_reach("127.0.0.2"), Reach.LOOPBACK)
        self.assertEqual(node_reach("10.1.0.1"), Reach.PRIVATE)
        self.assertEqual(node_reach("1.2.3.4"), Reach.PUBLIC)
        # A wildcard listen address is how an Internet node listens.
        self.assertEqual(node_reach("0.0.0.0"), Reach.PUBLIC)
        self.assertEqual(node_reach("::"), Reach.PUBLIC)

    def test_public_node_keeps_only_public_points(self) -> None:
        for text in ("127.0.0.1:9732", "10.0.0.1:9732", "169.254.0.1:9732", "[fe80::1]:9732", "224.0.0.1:9732"):
            self.assertIsNotNone(learnt_point_refusal(Point.parse(text), Reach.PUBLIC), text)
        self.assertIsNone(learnt_point_refusal(Point.parse("1.2.3.4:9732"), Reach.PUBLIC))
        self.assertEqual(learnt_point_refusal(Point("1.2.3.4", 0), Reach.PUBLIC), "port 0")
        self.assertEqual(
            learnt_point_refusal(Point.parse("10.0.0.1:1"), Reach.PUBLIC),
            "private address, unreachable from a public node",
        )

    def test_private_and_loopback_nodes(self) -> None:
        self.assertIsNone(learnt_point_refusal(Point.parse("10.0.0.1:9732"), Reach.PRIVATE))
        self.assertIsNone(learnt_point_refusal(Point.parse("1.2.3.4:9732"), Reach.PRIVATE))
        self.assertIsNotNone(learnt_point_refusal(Point.parse("127.0.0.1:9732"), Reach.PRIVATE))
        for text in ("127.0.0.1:9732", "10.0.0.1:9732", "1.2.3.4:9732"):
            self.assertIsNone(learnt_point_refusal(Point.parse(text), Reach.LOOPBACK), text)
        # Never dialable, whatever the node.
        for point in (Point("127.0.0.1", 0), Point("0.0.0.0", 9732), Point("224.0.0.1", 9732)):
            self.assertIsNotNone(learnt_point_refusal(point, Reach.LOOPBACK), str(point))
