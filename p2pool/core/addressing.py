# -*- test-case-name: tests.test_addressing -*-
"""
Points (C{ip:port}), peer ids, their text forms, and netgroups.

A L{Point} is an IP address and a TCP port. IPv4-mapped IPv6 addresses are
normalised to IPv4, so C{[::ffff:1.2.3.4]:9732} and C{1.2.3.4:9732} are the
same point. A L{PeerId} is the 16-byte BLAKE2b hash of a peer's Ed25519
public key, written as a Tezos-style base58check string starting with C{id}.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import ipaddress
import re
from collections.abc import Callable

import attrs
import msgspec
from msgspec.structs import force_setattr

import p2pool.core.base58 as base58

__all__ = [
    "AddressError",
    "PeerId",
    "Point",
    "PointSpec",
    "Reach",
    "built_point",
    "check_peer_id",
    "check_point",
    "kept_peer_id_texts",
    "learnt_point_refusal",
    "netgroup",
    "node_reach",
    "normalise_ip",
    "parse_point_once",
    "reach",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_PEER_ID_PREFIX = b"\x99\x67"
PEER_ID_SIZE = 16
#: Longer texts are refused unread; a peer id's text is 30 characters.
_PEER_ID_MAX_TEXT = 64


class AddressError(ValueError):
    """
    A point, address or peer id could not be parsed; the message says which
    text and why.
    """


#: Peer ids' base58check texts, made or parsed: at most L{MAX_PEER_ID_TEXTS},
#: then emptied and filled again (a text is made again when asked for).
_peer_id_texts: dict[PeerId, str] = {}
MAX_PEER_ID_TEXTS = 1 << 17


def _remember_text(peer_id: PeerId, text: str) -> None:
    """
    Keep C{text} as C{peer_id}'s text in L{_peer_id_texts}.
    """
    if len(_peer_id_texts) >= MAX_PEER_ID_TEXTS:
        _peer_id_texts.clear()
    _peer_id_texts[peer_id] = text


def kept_peer_id_texts() -> int:
    """
    How many peer ids' texts are kept (at most L{MAX_PEER_ID_TEXTS}).
    """
    return len(_peer_id_texts)


class PeerId(msgspec.Struct, frozen=True, order=True, gc=False, cache_hash=True):
    """
    The identity of a peer: the 16-byte BLAKE2b hash of its Ed25519 public
    key. C{str(peer_id)} is the base58check form (C{id…}, 30 characters).

    A C{msgspec.Struct}, as L{Point} is and for the same reasons: a node
    holds one per known peer and hashes it in every table, so its hash
    (computed once, then kept) and comparisons run in C, and the cyclic
    garbage collector does not track it (it refers to bytes only). Its text
    is kept in a bounded table of this module instead of in the value
    (such a value has no room outside its fields, and a field would take
    part in equality).
    """

    raw: bytes

    def __post_init__(self) -> None:
        raw = self.raw
        if not isinstance(raw, bytes) or len(raw) != PEER_ID_SIZE:
            raise AddressError(f"a peer id is {PEER_ID_SIZE} bytes")

    @classmethod
    def from_public_key(cls, public_key: bytes) -> PeerId:
        """
        The peer id of a raw 32-byte Ed25519 public key.
        """
        return cls(hashlib.blake2b(public_key, digest_size=PEER_ID_SIZE).digest())

    @classmethod
    def parse(cls, text: str) -> PeerId:
        """
        Parse the base58check form.

        @raise AddressError: the text is not a well-formed peer id.
        """
        if not isinstance(text, str) or not text:
            raise AddressError("empty peer id")
        if len(text) > _PEER_ID_MAX_TEXT:
            # Decoding base58 costs time quadratic in the length.
            raise AddressError(f"malformed peer id {text[:40]!r}…: {len(text)} characters, not a peer id")
        try:
            payload = base58.decode_check(text)
        except base58.Base58Error as e:
            raise AddressError(f"malformed peer id {text!r}: {e}") from None
        if not payload.startswith(_PEER_ID_PREFIX) or len(payload) != 2 + PEER_ID_SIZE:
            raise AddressError(f"malformed peer id {text!r}: not a peer id")
        if cls is not PeerId or type(text) is not str:
            return cls(payload[2:])
        # What the constructor makes of 16 bytes, without its check (a
        # peers file parses one per known peer).
        peer_id = _copy_peer_id()
        force_setattr(peer_id, "raw", payload[2:])
        # The text that decodes to a payload is the one its encoding
        # writes: a leading "1" is a zero byte (the prefix has none) and
        # the other digits are those of one number, without leading zeros.
        _remember_text(peer_id, text)
        return peer_id

    def __str__(self) -> str:
        text = _peer_id_texts.get(self)
        if text is None:
            text = base58.encode_check(_PEER_ID_PREFIX + self.raw)
            _remember_text(self, text)
        return text

    def __repr__(self) -> str:
        return f"PeerId({str(self)!r})"


#: A peer id whose copies L{PeerId.parse} fills in.
_copy_peer_id: Callable[[], PeerId] = PeerId(bytes(PEER_ID_SIZE)).__copy__  # type: ignore[attr-defined]


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: Dotted-quad IPv4 text as ipaddress writes it (no leading zeros): already
#: canonical, and far cheaper to recognise than to parse.
_CANONICAL_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


def _canonical_ip(text: str) -> str:
    """
    Canonical text of an IP address; IPv4-mapped IPv6 becomes IPv4.

    @raise AddressError: C{text} is not an IP address.
    """
    if type(text) is str and _CANONICAL_IPV4.fullmatch(text):
        return text
    try:
        address: IPAddress = ipaddress.ip_address(text)
    except ValueError:
        raise AddressError(f"not an IP address: {text!r}") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address.scope_id:
            raise AddressError(f"scoped IPv6 addresses are not supported: {text!r}")
    return str(address)


#: Canonical text of an IP address; IPv4-mapped IPv6 becomes IPv4 (cached:
#: the same few addresses are seen over and over).
#:
#: @raise AddressError: the text is not an IP address.
normalise_ip: Callable[[str], str] = functools.lru_cache(maxsize=65536)(_canonical_ip)


def _split_host_port(text: str) -> tuple[str, int]:
    if not isinstance(text, str):
        raise AddressError(f"a point is a string like '1.2.3.4:9732', not {text!r}")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise AddressError(f"malformed point {text!r}: expected '[ipv6]:port'")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise AddressError(f"malformed point {text!r}: missing ':port'")
        if ":" in host:
            raise AddressError(f"malformed point {text!r}: write IPv6 as '[addr]:port'")
    if not host:
        raise AddressError(f"malformed point {text!r}: missing address")
    # Leading zeros are allowed; more than five digits after them would make
    # int() raise a bare ValueError past sys.get_int_max_str_digits().
    digits = port_text.lstrip("0") or "0"
    if not (port_text.isascii() and port_text.isdigit()) or len(digits) > 5 or not 0 <= int(digits) <= 65535:
        raise AddressError(f"malformed point {text!r}: port must be 0-65535")
    return host, int(digits)


class Point(msgspec.Struct, frozen=True, order=True, gc=False, cache_hash=True):
    """
    A peer's network address: an IP (canonical text) and a TCP port.

    A C{msgspec.Struct}, not an attrs class: a node holds one per known
    point and hashes them in every table, so its hash and comparisons run
    in C (the hash computed once, then kept), and the cyclic garbage
    collector does not track it (it refers to a string and an integer
    only, so it can be part of no reference cycle).
    """

    ip: str
    port: int

    def __post_init__(self) -> None:
        ip, port = self.ip, self.port
        canonical = normalise_ip(ip)
        if canonical is not ip:
            force_setattr(self, "ip", canonical)
        if type(port) is not int and (not isinstance(port, int) or isinstance(port, bool)) or not 0 <= port <= 65535:
            raise AddressError(f"port must be an integer 0-65535, not {port!r}")

    @classmethod
    def parse(cls, text: str) -> Point:
        """
        Parse C{1.2.3.4:9732} or C{[::1]:9732}.

        @raise AddressError: the text is not a point with an IP address.
        """
        if cls is Point and type(text) is str:
            return _parse_point(text)
        host, port = _split_host_port(text)
        return cls(host, port)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.ip

    def __str__(self) -> str:
        ip = self.ip
        return f"[{ip}]:{self.port}" if ":" in ip else f"{ip}:{self.port}"


#: A point whose copies L{built_point} fills in.
_POINT_TEMPLATE = Point("0.0.0.0", 0)
_copy_point: Callable[[], Point] = _POINT_TEMPLATE.__copy__  # type: ignore[attr-defined]


def built_point(ip: str, port: int) -> Point:
    """
    The L{Point} that C{Point(ip, port)} makes. Canonical IPv4 text and a
    port in range are recognised at once, without the shared cache of
    L{normalise_ip}: for a caller making many distinct points once each
    (a peers file of a hundred thousand addresses would only churn it).

    @raise AddressError: as C{Point(ip, port)}.
    """
    if type(ip) is str and type(port) is int and 0 <= port <= 65535 and _CANONICAL_IPV4.fullmatch(ip):
        point = _copy_point()
        force_setattr(point, "ip", ip)
        force_setattr(point, "port", port)
        return point
    return Point(ip, port)


def parse_point_once(text: str) -> Point:
    """
    L{Point.parse} without its cache (see L{built_point}).

    @raise AddressError: the text is not a point with an IP address.
    """
    host, port = _split_host_port(text)
    return built_point(host, port)


@functools.lru_cache(maxsize=65536)
def _parse_point(text: str) -> Point:
    """
    L{Point.parse}, cached: a point is immutable, and the same points
    arrive over and over in point lists (each of up to 100 points, from
    every peer).

    @raise AddressError: the text is not a point with an IP address.
    """
    host, port = _split_host_port(text)
    return Point(host, port)


@attrs.frozen
class PointSpec:
    """
    A point as an operator writes it in configuration: a host (IP or DNS
    name), a port, and optionally the peer id expected there
    (C{host:port#id…}).
    """

    host: str
    port: int
    expected_peer_id: PeerId | None = None

    @classmethod
    def parse(cls, text: str) -> PointSpec:
        """
        Parse C{host:port} or C{host:port#peer_id}.

        @raise AddressError: malformed text.
        """
        if not isinstance(text, str):
            raise AddressError(f"a point is a string like '1.2.3.4:9732', not {text!r}")
        address, sep, peer = text.partition("#")
        expected = PeerId.parse(peer) if sep else None
        host, port = _split_host_port(address)
        if port == 0:
            raise AddressError(f"malformed point {text!r}: port 0 cannot be dialled")
        try:
            host = normalise_ip(host)
        except AddressError:
            if not _is_hostname(host):
                raise AddressError(f"malformed point {text!r}: {host!r} is neither an IP nor a host name") from None
            host = host.lower().rstrip(".")
        return cls(host, port, expected)

    @property
    def point(self) -> Point | None:
        """
        The L{Point}, when the host is an IP address (None for a DNS name).
        """
        try:
            return Point(self.host, self.port)
        except AddressError:
            return None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = f"#{self.expected_peer_id}" if self.expected_peer_id else ""
        return f"{host}:{self.port}{suffix}"


def _is_hostname(host: str) -> bool:
    host = host.rstrip(".")
    if not 0 < len(host) <= 253:
        return False
    for label in host.split("."):
        if not 0 < len(label) <= 63 or label.startswith("-") or label.endswith("-"):
            return False
        if not all(c.isascii() and (c.isalnum() or c == "-") for c in label):
            return False
    return True


@functools.lru_cache(maxsize=65536)
def netgroup(ip: str) -> str:
    """
    The network group of an address, for diversity decisions: the /16 of an
    IPv4 address, the /32 of an IPv6 address.
    """
    address = ipaddress.ip_address(ip)
    prefix = 16 if address.version == 4 else 32
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class Reach(enum.IntEnum):
    """
    Reachability classes of addresses, narrowest first: a node in one class
    can reach addresses of its own class and of the wider ones.
    """

    #: This host only (127.0.0.0/8, ::1).
    LOOPBACK = 0
    #: A local network: RFC 1918, shared (100.64.0.0/10), link-local,
    #: unique local IPv6, documentation and reserved ranges.
    PRIVATE = 1
    #: The Internet (C{ipaddress}'s C{is_global}).
    PUBLIC = 2


@functools.lru_cache(maxsize=65536)
def reach(ip: str) -> Reach | None:
    """
    The reachability class of an address; None for an address no point can
    be dialled at (unspecified, multicast, limited broadcast).
    """
    address = ipaddress.ip_address(ip)
    if address.is_unspecified or address.is_multicast or address == _BROADCAST:
        return None
    if address.is_loopback:
        return Reach.LOOPBACK
    if address.is_global:
        return Reach.PUBLIC
    return Reach.PRIVATE


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def node_reach(listen_ip: str) -> Reach:
    """
    The reachability class of a node listening on C{listen_ip}; a wildcard
    address (C{0.0.0.0}, C{::}) counts as public, since that is how a node
    reachable from the Internet listens.
    """
    own = reach(listen_ip)
    return Reach.PUBLIC if own is None else own


def learnt_point_refusal(point: Point, node: Reach) -> str | None:
    """
    Why a node of class C{node} drops C{point} when a peer tells it about
    it (None: it keeps it). Points outside the node's class cannot be
    reached from the node's network: a public node drops loopback and
    private points, a node on a private network drops loopback points, a
    node on loopback keeps them all. Port 0 and addresses no point can be
    dialled at are always dropped.
    """
    if point.port == 0:
        return "port 0"
    point_reach = reach(point.ip)
    if point_reach is None:
        return "not a unicast address"
    if point_reach < node:
        return f"{point_reach.name.lower()} address, unreachable from a {node.name.lower()} node"
    return None


def check_point(point: object, name: str = "point") -> None:
    """
    @raise TypeError: C{point} is not a L{Point} (a text is parsed with
        L{Point.parse} first).
    """
    if not isinstance(point, Point):
        raise _wrong_type(point, Point, name)


def check_peer_id(peer_id: object, name: str = "peer_id") -> None:
    """
    @raise TypeError: C{peer_id} is not a L{PeerId} (a text is parsed with
        L{PeerId.parse} first).
    """
    if not isinstance(peer_id, PeerId):
        raise _wrong_type(peer_id, PeerId, name)


def _wrong_type(value: object, expected: type, name: str) -> TypeError:
    hint = f" (parse text with {expected.__name__}.parse)" if isinstance(value, str) else ""
    return TypeError(f"{name} must be a {expected.__name__}, not {type(value).__name__} {value!r:.80}{hint}")
