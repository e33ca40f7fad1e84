# -*- test-case-name: tests.test_acl -*-
"""
Access control: IP and peer-id blacklists and greylists (Tezos
C{P2p_acl} and C{Bloomer}).

Four lists decide who may connect:

  - L{IPBlacklist}: addresses and CIDR ranges banned by an operator, until
    unbanned.
  - L{PeerBlacklist}: peer ids banned by an operator, until unbanned.
  - L{IPGreylist}: addresses greylisted automatically (failed
    authentication, garbage on the wire). It is a L{CountingBloomFilter}
    whose counters the caller decrements every L{IPGreylist.countdown_interval}
    seconds, so an entry expires after about C{cleanup_delay} seconds, plus
    a FIFO of the addresses for listing.
  - L{PeerGreylist}: peer ids greylisted automatically, a bounded FIFO with
    no expiry in time.

L{ACL} holds the four together. The module does no I/O and never reads a
clock: the times it records come from its callers, and the caller drives the
periodic countdown (the pool runs C{acl.ip_greylist.countdown} from a
C{LoopingCall} every C{acl.ip_greylist.countdown_interval} seconds).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import mmap
from collections import OrderedDict
from collections.abc import Iterator

from p2pool.core.addressing import AddressError, PeerId, check_peer_id

__all__ = [
    "ACL",
    "CountingBloomFilter",
    "IPBlacklist",
    "IPGreylist",
    "PeerBlacklist",
    "PeerGreylist",
    "canonical_entry",
    "entry_contains",
]

IPText = str | ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv4 addresses live in the IPv6 space as IPv4-mapped ::ffff:a.b.c.d.
_V4_MAPPED_PREFIX = 0xFFFF << 32
_V4_MAPPED_MASK = ~0xFFFFFFFF & ((1 << 128) - 1)
_ALL_V6 = (1 << 128) - 1


def _ip_int(addr: IPText) -> int:
    """
    The 128-bit IPv6 form of an address as an integer; an IPv4 address
    becomes its IPv4-mapped form C{::ffff:a.b.c.d}.

    @raise AddressError: C{addr} is not an IP address, or is a scoped IPv6
        address.
    """
    if isinstance(addr, str):
        return _text_ip_int(addr)
    return _address_int(addr)


@functools.lru_cache(maxsize=65536)
def _text_ip_int(addr: str) -> int:
    """
    L{_ip_int} of address text, cached: the same addresses are checked
    over and over (every incoming connection, every listed point).
    """
    try:
        address = ipaddress.ip_address(addr)
    except ValueError:
        raise AddressError(f"not an IP address: {addr!r}") from None
    return _address_int(address)


def _address_int(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    if isinstance(address, ipaddress.IPv4Address):
        return _V4_MAPPED_PREFIX | int(address)
    if address.scope_id:
        raise AddressError(f"scoped IPv6 addresses are not supported: {str(address)!r}")
    return int(address)


def _is_v4_mapped(value: int) -> bool:
    return value & _V4_MAPPED_MASK == _V4_MAPPED_PREFIX


def _ip_text(value: int) -> str:
    """
    Canonical text of a 128-bit address, as L{p2pool.addressing.normalise_ip}
    writes it: IPv4-mapped addresses as dotted IPv4.
    """
    if _is_v4_mapped(value):
        return str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(value))


def _ip_key(value: int) -> bytes:
    """
    The bloom filter key of a 128-bit address: its 16 IPv6 octets.
    """
    return value.to_bytes(16, "big")


# ---------------------------------------------------------------------------
# Counting bloom filter


@functools.lru_cache(maxsize=65536)
def _cell_indices(key: bytes, bits: int, hashes: int) -> tuple[int, ...]:
    """
    L{CountingBloomFilter.indices}, cached: the same addresses are looked
    up again and again.
    """
    mask = (1 << bits) - 1
    h = int.from_bytes(hashlib.blake2b(key, digest_size=32).digest(), "little")
    return tuple((h >> (j * bits)) & mask for j in range(hashes))


def _nibbles(byte: int) -> tuple[int, int]:
    return byte & 0x0F, byte >> 4


# Each table maps one packed byte (two 4-bit cells) to a result byte, so a
# bytes.translate processes every cell of a chunk of the storage at C speed.
_DECREMENT = bytes((max(high - 1, 0) << 4) | max(low - 1, 0) for low, high in map(_nibbles, range(256)))
_NONZERO_CELLS = bytes((low != 0) + (high != 0) for low, high in map(_nibbles, range(256)))
_LOW_CELL = bytes(low for low, _ in map(_nibbles, range(256)))
_HIGH_CELL = bytes(high for _, high in map(_nibbles, range(256)))


class CountingBloomFilter:
    """
    A "generational" counting bloom filter (Tezos C{Bloomer}): a set of byte
    strings whose members expire after L{max_count} calls to L{countdown}.

    There are C{2 ** index_bits} cells, each a 4-bit counter. A key maps to
    L{hashes} cells (see L{indices}). L{add} sets them to L{max_count} (15),
    L{countdown} decrements every non-zero cell, and a key is a member while
    all of its cells are non-zero. So a key added and not re-added is a
    member for exactly 15 countdowns (or longer, if a later key shares all
    of its cells) and the 15th countdown expires it. False positives are
    possible; false negatives happen only through L{rem}, which zeroes the
    cells and so can also remove other keys that share one of them.

    The counters are packed two per byte in L{storage}: cell C{i} is the low
    nibble of byte C{i // 2} when C{i} is even, the high nibble when odd.

    The storage is an anonymous memory map, not a C{bytearray}: its pages
    take memory only once a key is added to them (a greylist of a few
    addresses holds a few pages of its 4 MiB), and it goes back to the
    system when the filter is freed, whatever the allocator does with
    large blocks (glibc serves them from its heap once one has been freed,
    where they leave holes it keeps).

    @ivar index_bits: log2 of the number of cells.
    """

    #: Bytes of storage that L{countdown}, L{fill_percentage} and
    #: L{life_expectancy_histogram} handle at once.
    chunk_size = 64 * 1024

    hashes = 5
    countdown_bits = 4
    max_count = (1 << countdown_bits) - 1
    max_index_bits = 24

    def __init__(self, size_kib: int | None = None, *, index_bits: int | None = None) -> None:
        """
        Make an empty filter, sized either as Tezos's C{P2p_acl} does from a
        size in KiB (C{index_bits = numbits(size_kib * 8 * 1024 // 4)}, so
        2048 KiB gives 23 bits, 2 ** 23 cells and 4 MiB of storage), or by
        C{index_bits} directly. Give exactly one.

        @raise ValueError: neither or both are given, or C{index_bits} is not
            within 1..24 (C{size_kib} must be 1..8191).
        """
        if (size_kib is None) == (index_bits is None):
            raise ValueError("give exactly one of size_kib and index_bits")
        if size_kib is not None:
            if not isinstance(size_kib, int) or isinstance(size_kib, bool) or size_kib <= 0:
                raise ValueError(f"size_kib must be a positive integer, not {size_kib!r}")
            index_bits = (size_kib * 8 * 1024 // 4).bit_length()
        if (
            not isinstance(index_bits, int)
            or isinstance(index_bits, bool)
            or not 1 <= index_bits <= self.max_index_bits
        ):
            raise ValueError(
                f"index_bits must be within 1..{self.max_index_bits}, not {index_bits!r}"
                + (f" (from size_kib={size_kib})" if size_kib is not None else "")
            )
        self.index_bits: int = index_bits
        self._mask = (1 << index_bits) - 1
        self._storage = self._new_storage()
        self._empty = True

    @property
    def empty(self) -> bool:
        """
        Whether every cell is known to be zero (no key added since the
        filter was made, cleared or counted down to zero): then no key is
        a member. After L{rem} it stays False even when the cells are all
        zero again.
        """
        return self._empty

    def _new_storage(self) -> mmap.mmap:
        """
        Zeroed storage for every cell (a page at least).
        """
        return mmap.mmap(-1, max(self.cell_count // 2, 1))

    def _chunks(self) -> Iterator[tuple[int, bytes]]:
        """
        The storage's bytes, L{chunk_size} at a time, with their offset.
        """
        storage, size, step = self._storage, self.cell_count // 2, self.chunk_size
        for offset in range(0, size, step):
            yield offset, storage[offset : min(offset + step, size)]

    @property
    def cell_count(self) -> int:
        """
        The number of 4-bit cells, C{2 ** index_bits}.
        """
        return 1 << self.index_bits

    @property
    def storage(self) -> bytes:
        """
        A copy of the packed counters, C{cell_count // 2} bytes.
        """
        return self._storage[: self.cell_count // 2]

    def indices(self, key: bytes) -> list[int]:
        """
        The L{hashes} cells of C{key}: with C{h} the BLAKE2b-256 digest of
        C{key} read as a little-endian integer, index C{j} (0..4) is
        C{(h >> (j * index_bits)) & (2 ** index_bits - 1)}. Two of them may
        be equal.
        """
        return list(_cell_indices(key, self.index_bits, self.hashes))

    def add(self, key: bytes) -> None:
        """
        Add C{key}, or refresh it: its cells are set to L{max_count}.
        """
        storage = self._storage
        for i in _cell_indices(key, self.index_bits, self.hashes):
            storage[i >> 1] |= 0xF0 if i & 1 else 0x0F
        self._empty = False

    def mem(self, key: bytes) -> bool:
        """
        Whether C{key} is (probably) a member: all of its cells are
        non-zero.
        """
        if self._empty:
            return False
        storage = self._storage
        return all((storage[i >> 1] >> ((i & 1) << 2)) & 0x0F for i in _cell_indices(key, self.index_bits, self.hashes))

    def rem(self, key: bytes) -> None:
        """
        Remove C{key}: its cells are set to 0, which also removes any member
        that shares one of them.
        """
        storage = self._storage
        for i in _cell_indices(key, self.index_bits, self.hashes):
            storage[i >> 1] &= 0x0F if i & 1 else 0xF0

    def countdown(self) -> None:
        """
        Decrement every non-zero cell by one (a C{translate} per chunk, in
        place; chunks without a non-zero cell are not written, so their
        pages stay unused: a few milliseconds for 4 MiB; nothing at all
        when the filter is L{empty}).
        """
        if self._empty:
            return
        storage = self._storage
        live = False
        for offset, chunk in self._chunks():
            decremented = chunk.translate(_DECREMENT)
            if decremented != chunk:
                storage[offset : offset + len(chunk)] = decremented
            live = live or decremented.count(0) != len(decremented)
        self._empty = not live

    def clear(self) -> None:
        """
        Remove every member: all cells become 0 (and their pages unused).
        """
        old, self._storage = self._storage, self._new_storage()
        old.close()
        self._empty = True

    def fill_percentage(self) -> float:
        """
        The share of non-zero cells, from 0.0 (empty) to 1.0 (every key is
        a member).
        """
        nonzero = 0
        for _, chunk in self._chunks():
            counts = chunk.translate(_NONZERO_CELLS)
            nonzero += counts.count(1) + 2 * counts.count(2)
        return nonzero / self.cell_count

    def life_expectancy_histogram(self) -> list[int]:
        """
        How many cells hold each counter value: 16 buckets, index C{v} is
        the number of cells equal to C{v} (bucket 0 counts the empty cells,
        bucket 15 the freshest).
        """
        histogram = [0] * (self.max_count + 1)
        for _, chunk in self._chunks():
            low = chunk.translate(_LOW_CELL)
            high = chunk.translate(_HIGH_CELL)
            for v in range(self.max_count + 1):
                histogram[v] += low.count(v) + high.count(v)
        return histogram

    def __repr__(self) -> str:
        return f"<CountingBloomFilter index_bits={self.index_bits}>"


# ---------------------------------------------------------------------------
# IP greylist


class IPGreylist:
    """
    Automatically greylisted IP addresses (Tezos C{P2p_acl.IPGreylist}).

    Membership is a L{CountingBloomFilter} keyed by the 16 octets of the
    IPv6 form of the address (IPv4 as IPv4-mapped, so C{1.2.3.4} and
    C{::ffff:1.2.3.4} are the same address). The caller calls L{countdown}
    every L{countdown_interval} (C{cleanup_delay / 16}) seconds, so an added
    address stays greylisted for 14 to 15 intervals, just under
    C{cleanup_delay}. The filter can report false positives, and
    L{remove} of one address can ungreylist another that shares a cell.

    The filter cannot be enumerated, so the addresses are also kept in a
    listing FIFO of L{capacity} entries (Tezos reuses the size in KiB as
    the entry count). Re-adding an address moves it to the newest
    position; when an add evicts an address that is still greylisted,
    L{not_reliable_since} records the time of that add, because from then
    on L{listing} may miss greylisted addresses.

    Differences from Tezos, on purpose:

      - L{listing} filters on read and shows only addresses that are still
        members. Tezos lists the FIFO as it is and its periodic countdown
        never prunes it, so expired addresses stay listed (a QUIRK).
      - L{clear} also clears the FIFO and resets L{not_reliable_since}.
        Tezos's C{IPGreylist.clear} clears only the filter (a QUIRK), but a
        user who clears the greylist expects it to list nothing.
      - L{not_reliable_since} is set only when an add evicts an address
        that is still greylisted, not on every add to a full FIFO: re-adding
        a listed address or evicting an expired one loses nothing.

    @ivar not_reliable_since: when the listing first lost a greylisted
        address, or C{None}. Reset only by L{clear}.
    """

    def __init__(self, size_kib: int, cleanup_delay: float) -> None:
        """
        @param size_kib: the filter size in KiB (1..8191) and the listing
            capacity in entries.
        @param cleanup_delay: seconds an address stays greylisted; the
            countdown runs every C{cleanup_delay / 16} seconds.

        @raise ValueError: C{size_kib} or C{cleanup_delay} is not positive
            (or the size is too large for the filter).
        """
        if not isinstance(size_kib, int) or isinstance(size_kib, bool) or size_kib <= 0:
            raise ValueError(f"IP greylist size must be a positive integer, not {size_kib!r}")
        if isinstance(cleanup_delay, bool) or not (0 < cleanup_delay < math.inf):
            raise ValueError(f"IP greylist cleanup delay must be positive, not {cleanup_delay!r}")
        self._filter = CountingBloomFilter(size_kib)
        self._capacity = size_kib
        self._cleanup_delay = float(cleanup_delay)
        self._listing: OrderedDict[str, bytes] = OrderedDict()
        self.not_reliable_since: float | None = None

    @property
    def bloom_filter(self) -> CountingBloomFilter:
        """
        The underlying filter (for statistics such as
        C{life_expectancy_histogram}).
        """
        return self._filter

    @property
    def capacity(self) -> int:
        """
        The number of addresses the listing FIFO holds.
        """
        return self._capacity

    @property
    def cleanup_delay(self) -> float:
        """
        Seconds an added address stays greylisted (at most).
        """
        return self._cleanup_delay

    @property
    def countdown_interval(self) -> float:
        """
        Seconds between two calls to L{countdown}: C{cleanup_delay / 16}.
        """
        return self._cleanup_delay / 16

    def add(self, addr: IPText, now: float) -> None:
        """
        Greylist C{addr} (or refresh it) at time C{now}.

        @raise AddressError: C{addr} is not an IP address.
        """
        value = _ip_int(addr)
        key = _ip_key(value)
        text = _ip_text(value)
        self._filter.add(key)
        listing = self._listing
        if text in listing:
            listing.move_to_end(text)
            return
        if len(listing) >= self._capacity:
            _, evicted = listing.popitem(last=False)
            if self.not_reliable_since is None and self._filter.mem(evicted):
                self.not_reliable_since = now
        listing[text] = key

    def mem(self, addr: IPText) -> bool:
        """
        Whether C{addr} is (probably) greylisted.

        @raise AddressError: C{addr} is not an IP address.
        """
        return self.mem_value(_ip_int(addr))

    def mem_value(self, value: int) -> bool:
        """
        L{mem} of an address given as its 128-bit integer (IPv4 as
        IPv4-mapped).
        """
        return not self._filter.empty and self._filter.mem(_ip_key(value))

    def remove(self, addr: IPText) -> None:
        """
        Ungreylist C{addr}: zero its filter cells and drop it from the
        listing.

        @raise AddressError: C{addr} is not an IP address.
        """
        self._remove_value(_ip_int(addr))

    def _remove_value(self, value: int) -> None:
        self._filter.rem(_ip_key(value))
        self._listing.pop(_ip_text(value), None)

    def countdown(self) -> None:
        """
        One step of expiry: decrement every filter counter. Call it every
        L{countdown_interval} seconds.
        """
        self._filter.countdown()

    def gc(self) -> None:
        """
        One L{countdown}, then drop the listed addresses that expired.
        """
        self._filter.countdown()
        mem = self._filter.mem
        for text in [text for text, key in self._listing.items() if not mem(key)]:
            del self._listing[text]

    def clear(self) -> None:
        """
        Ungreylist everything: clear the filter and the listing, and reset
        L{not_reliable_since}.
        """
        self._filter.clear()
        self._listing.clear()
        self.not_reliable_since = None

    def listing(self) -> list[str]:
        """
        The listed addresses that are still greylisted, oldest first, as
        canonical text (IPv4 dotted, IPv6 compressed).
        """
        mem = self._filter.mem
        return [text for text, key in self._listing.items() if mem(key)]

    def fill_percentage(self) -> float:
        """
        The share of non-zero filter cells, 0.0 to 1.0.
        """
        return self._filter.fill_percentage()


# ---------------------------------------------------------------------------
# Peer greylist


class PeerGreylist:
    """
    Automatically greylisted peer ids: a FIFO set of bounded capacity (Tezos
    C{Vache.Set (FIFO_Precise)}). L{add} of a present id moves it to the
    newest position, L{mem} does not, and when full an add evicts the id
    least recently added. Entries do not expire in time.
    """

    def __init__(self, capacity: int) -> None:
        """
        @raise ValueError: C{capacity} is not a positive integer.
        """
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
            raise ValueError(f"peer greylist size must be a positive integer, not {capacity!r}")
        self._capacity = capacity
        self._ids: OrderedDict[PeerId, None] = OrderedDict()

    @property
    def capacity(self) -> int:
        """
        The most ids held at once.
        """
        return self._capacity

    def add(self, peer_id: PeerId) -> None:
        """
        Greylist C{peer_id}, or move it to the newest position if present;
        evict the oldest id when full.

        @raise TypeError: C{peer_id} is not a L{PeerId}.
        """
        check_peer_id(peer_id)
        ids = self._ids
        if peer_id in ids:
            ids.move_to_end(peer_id)
            return
        if len(ids) >= self._capacity:
            ids.popitem(last=False)
        ids[peer_id] = None

    def mem(self, peer_id: PeerId) -> bool:
        """
        Whether C{peer_id} is greylisted (without promoting it).
        """
        return peer_id in self._ids

    def remove(self, peer_id: PeerId) -> None:
        """
        Ungreylist C{peer_id}, if present.
        """
        self._ids.pop(peer_id, None)

    def clear(self) -> None:
        """
        Ungreylist every id.
        """
        self._ids.clear()

    def listing(self) -> list[PeerId]:
        """
        The greylisted ids, oldest first.
        """
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


# ---------------------------------------------------------------------------
# Blacklists


def _parse_entry(text: str) -> tuple[int, int]:
    """
    Parse an address or CIDR range into C{(network, prefix length)} in the
    IPv6 space: IPv4 becomes IPv4-mapped (C{10.0.0.0/8} is
    C{::ffff:10.0.0.0/104}), and a single address is a /128.

    @raise AddressError: C{text} is neither; the message names it.
    """
    if not isinstance(text, str):
        raise AddressError(f"not an IP address or CIDR range: {text!r}")
    if "/" not in text:
        return _ip_int(text), 128
    try:
        network = ipaddress.ip_network(text)
    except ValueError as e:
        raise AddressError(f"not an IP address or CIDR range: {text!r} ({e})") from None
    if isinstance(network, ipaddress.IPv4Network):
        return _V4_MAPPED_PREFIX | int(network.network_address), network.prefixlen + 96
    if network.network_address.scope_id:
        raise AddressError(f"scoped IPv6 ranges are not supported: {text!r}")
    return int(network.network_address), network.prefixlen


def _entry_text(network: int, prefixlen: int) -> str:
    """
    Canonical text of a parsed entry: a bare address for a /128, IPv4 CIDR
    for ranges inside the IPv4-mapped space, IPv6 CIDR otherwise.
    """
    if prefixlen == 128:
        return _ip_text(network)
    if prefixlen >= 96 and _is_v4_mapped(network):
        return f"{ipaddress.IPv4Address(network & 0xFFFFFFFF)}/{prefixlen - 96}"
    return f"{ipaddress.IPv6Address(network)}/{prefixlen}"


def canonical_entry(text: str) -> str:
    """
    The canonical text of an address or CIDR range, as ban listings show
    it (C{::ffff:10.0.0.1} is C{10.0.0.1}, C{10.0.0.0/32} is C{10.0.0.0}).

    @raise AddressError: C{text} is neither.
    """
    return _entry_text(*_parse_entry(text))


def entry_contains(entry: str, addr: IPText) -> bool:
    """
    Whether the address or CIDR range C{entry} contains the address
    C{addr} (with L{IPBlacklist}'s rules: IPv4 as IPv4-mapped IPv6).

    @raise AddressError: C{entry} or C{addr} does not parse.
    """
    network, prefixlen = _parse_entry(entry)
    return _ip_int(addr) >> (128 - prefixlen) == network >> (128 - prefixlen)


class IPBlacklist:
    """
    IP addresses and CIDR ranges banned by an operator.

    Entries are written as C{1.2.3.4}, C{2001:db8::1}, C{10.0.0.0/8} or
    C{2001:db8::/32}. Everything is held in the IPv6 space with IPv4 as
    IPv4-mapped, so C{::ffff:1.2.3.4} is C{1.2.3.4}, C{::ffff:10.0.0.0/104}
    is C{10.0.0.0/8}, a /32 IPv4 or /128 IPv6 range is the single address,
    and an IPv6 range covering C{::ffff:0:0/96} (such as C{::/0}) also
    covers IPv4 addresses.

    L{mem} costs one set lookup for single addresses plus one per distinct
    prefix length among the ranges, however many ranges there are.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[int, int], None] = {}
        self._singles: set[int] = set()
        # prefix length -> the banned networks of that length, each as its
        # top prefix-length bits (network >> (128 - prefix length)).
        self._ranges: dict[int, set[int]] = {}

    def ban(self, text: str) -> bool:
        """
        Ban an address or CIDR range. Host bits must be zero in a range
        (C{10.0.0.1/8} is refused).

        @return: whether the entry is new.
        @raise AddressError: C{text} is neither an address nor a range.
        """
        entry = _parse_entry(text)
        if entry in self._entries:
            return False
        self._entries[entry] = None
        network, prefixlen = entry
        if prefixlen == 128:
            self._singles.add(network)
        else:
            self._ranges.setdefault(prefixlen, set()).add(network >> (128 - prefixlen))
        return True

    def unban(self, text: str) -> bool:
        """
        Remove exactly this entry; an address inside a banned range stays
        banned.

        @return: whether the entry was banned.
        @raise AddressError: C{text} is neither an address nor a range.
        """
        entry = _parse_entry(text)
        if entry not in self._entries:
            return False
        del self._entries[entry]
        network, prefixlen = entry
        if prefixlen == 128:
            self._singles.discard(network)
        else:
            networks = self._ranges[prefixlen]
            networks.discard(network >> (128 - prefixlen))
            if not networks:
                del self._ranges[prefixlen]
        return True

    def mem(self, addr: IPText) -> bool:
        """
        Whether C{addr} is banned, by itself or by a range containing it.

        @raise AddressError: C{addr} is not an IP address.
        """
        return self.mem_value(_ip_int(addr))

    def mem_value(self, value: int) -> bool:
        """
        L{mem} of an address given as its 128-bit integer (IPv4 as
        IPv4-mapped).
        """
        if value in self._singles:
            return True
        for prefixlen, networks in self._ranges.items():
            if value >> (128 - prefixlen) in networks:
                return True
        return False

    def listing(self) -> list[str]:
        """
        The entries in ban order, as canonical text (C{1.2.3.4},
        C{10.0.0.0/8}, C{2001:db8::/32}).
        """
        return [_entry_text(network, prefixlen) for network, prefixlen in self._entries]

    def clear(self) -> None:
        """
        Unban everything.
        """
        self._entries.clear()
        self._singles.clear()
        self._ranges.clear()

    def __len__(self) -> int:
        return len(self._entries)


class PeerBlacklist:
    """
    Peer ids banned by an operator, each with where its ban came from: on
    its own (L{ban} without an address), or with the ban of an address it
    was connected from (L{ban} with C{addr}, as C{Points.ban} does). A ban
    placed with an address ban is lifted by L{lift_addr} when that address
    is unbanned; a ban on its own stays until L{unban}.
    """

    def __init__(self) -> None:
        self._ids: dict[PeerId, None] = {}
        self._own: set[PeerId] = set()
        # address -> the peer ids banned with it, in ban order.
        self._by_addr: dict[str, dict[PeerId, None]] = {}
        # peer id -> the addresses whose bans banned it.
        self._addrs_of: dict[PeerId, set[str]] = {}

    def ban(self, peer_id: PeerId, addr: str | None = None) -> bool:
        """
        Ban C{peer_id}: on its own, or with the ban of the address C{addr}
        (written as L{canonical_entry} writes it).

        @return: whether it was not banned already.
        @raise TypeError: C{peer_id} is not a L{PeerId}.
        """
        check_peer_id(peer_id)
        new = peer_id not in self._ids
        self._ids[peer_id] = None
        if addr is None:
            self._own.add(peer_id)
        else:
            self._by_addr.setdefault(addr, {})[peer_id] = None
            self._addrs_of.setdefault(peer_id, set()).add(addr)
        return new

    def unban(self, peer_id: PeerId) -> bool:
        """
        Unban C{peer_id}, whatever banned it.

        @return: whether it was banned.
        """
        if peer_id not in self._ids:
            return False
        del self._ids[peer_id]
        self._own.discard(peer_id)
        for addr in self._addrs_of.pop(peer_id, ()):
            banned = self._by_addr[addr]
            del banned[peer_id]
            if not banned:
                del self._by_addr[addr]
        return True

    def lift_addr(self, addr: str) -> list[PeerId]:
        """
        The address C{addr} is unbanned: lift the peer bans its ban
        placed. A peer also banned on its own, or with another address
        still banned, stays banned.

        @return: the peer ids unbanned.
        """
        lifted = []
        for peer_id in self._by_addr.pop(addr, {}):
            addrs = self._addrs_of[peer_id]
            addrs.discard(addr)
            if not addrs:
                del self._addrs_of[peer_id]
                if peer_id not in self._own:
                    del self._ids[peer_id]
                    lifted.append(peer_id)
        return lifted

    def mem(self, peer_id: PeerId) -> bool:
        """
        Whether C{peer_id} is banned.
        """
        return peer_id in self._ids

    def listing(self) -> list[PeerId]:
        """
        The banned ids, in ban order.
        """
        return list(self._ids)

    def own_listing(self) -> list[PeerId]:
        """
        The ids banned on their own, in ban order.
        """
        return [peer_id for peer_id in self._ids if peer_id in self._own]

    def by_addr(self) -> dict[str, list[PeerId]]:
        """
        The ids banned with the ban of an address, by address.
        """
        return {addr: list(ids) for addr, ids in self._by_addr.items()}

    def clear(self) -> None:
        """
        Unban every id.
        """
        self._ids.clear()
        self._own.clear()
        self._by_addr.clear()
        self._addrs_of.clear()

    def __len__(self) -> int:
        return len(self._ids)


# ---------------------------------------------------------------------------
# The four lists together


class ACL:
    """
    The pool's access control lists (Tezos C{P2p_acl}): an address is
    banned when blacklisted or greylisted, and so is a peer id. An address
    can be banned while the peer id behind it is not, and the reverse.

    @ivar ip_blacklist: L{IPBlacklist}.
    @ivar peer_blacklist: L{PeerBlacklist}.
    @ivar ip_greylist: L{IPGreylist}.
    @ivar peer_greylist: L{PeerGreylist}.
    """

    def __init__(
        self,
        peer_greylist_size: int,
        ip_greylist_size_in_kilobytes: int,
        ip_greylist_cleanup_delay: float,
    ) -> None:
        """
        @raise ValueError: a size or the delay is not positive.
        """
        self.peer_greylist = PeerGreylist(peer_greylist_size)
        self.ip_greylist = IPGreylist(ip_greylist_size_in_kilobytes, ip_greylist_cleanup_delay)
        self.ip_blacklist = IPBlacklist()
        self.peer_blacklist = PeerBlacklist()

    def bans_addresses(self) -> bool:
        """
        Whether any address may be banned now: the blacklist has an entry,
        or the greylist's filter is not L{empty<CountingBloomFilter.empty>}.
        When not, L{banned_addr} is false for every address, and a caller
        checking many may skip the checks.
        """
        return len(self.ip_blacklist) > 0 or not self.ip_greylist.bloom_filter.empty

    def banned_addr(self, addr: IPText) -> bool:
        """
        Whether C{addr} is blacklisted (alone or by range) or greylisted.

        @raise AddressError: C{addr} is not an IP address.
        """
        value = _ip_int(addr)
        return self.ip_blacklist.mem_value(value) or self.ip_greylist.mem_value(value)

    def banned_peer(self, peer_id: PeerId) -> bool:
        """
        Whether C{peer_id} is blacklisted or greylisted.
        """
        return self.peer_blacklist.mem(peer_id) or self.peer_greylist.mem(peer_id)

    def unban_addr(self, addr: str) -> list[PeerId]:
        """
        Remove C{addr}'s blacklist entry and ungreylist it, and lift the
        peer bans that banning it placed (L{PeerBlacklist.lift_addr}). A
        range that contains C{addr} stays; given range text, only that
        blacklist entry is removed.

        @return: the peer ids unbanned with it.
        @raise AddressError: C{addr} is neither an address nor a range.
        """
        network, prefixlen = _parse_entry(addr)
        self.ip_blacklist.unban(addr)
        if prefixlen == 128:
            self.ip_greylist.remove(_ip_text(network))
        return self.peer_blacklist.lift_addr(_entry_text(network, prefixlen))

    def unban_peer(self, peer_id: PeerId) -> None:
        """
        Remove C{peer_id} from the peer blacklist and greylist.
        """
        self.peer_blacklist.unban(peer_id)
        self.peer_greylist.remove(peer_id)

    def clear(self) -> None:
        """
        Empty all four lists, the greylist listing, and the greylist's
        C{not_reliable_since}.
        """
        self.ip_blacklist.clear()
        self.peer_blacklist.clear()
        self.ip_greylist.clear()
        self.peer_greylist.clear()
