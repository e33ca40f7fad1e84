# -*- test-case-name: tests.test_persistence -*-
"""
The bytes of a peers file as a L{PeersFileContent}: the whole file is
checked (JSON, shape, format, network), then each record is decoded on its
own; a bad record is left out and reported, never a reason to refuse the
rest. Blocking: meant for a thread.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from typing import Any, TypeVar

from p2pool.core.acl import IPBlacklist, canonical_entry
from p2pool.core.addressing import AddressError, PeerId, Point
from p2pool.core.json_kind import json_kind
from p2pool.core.states import EVENT_RING_SIZE, PeerInfo, PointInfo, StateEvent
from p2pool.core.timestamps import parse_time
from p2pool.pool.persistence.document import (
    FORMAT,
    NO_METADATA,
    SECTIONS,
    IncompatibleFile,
    PeersFileContent,
    PeersFileError,
    RecordProblem,
    kind_from_file,
    tezos_address,
)

__all__ = ["decode_document"]

T = TypeVar("T")

#: The longest C{source_group} text a point record may carry (a network
#: group is at most 43 characters, a bootstrap URL's group longer).
MAX_SOURCE_GROUP_TEXT = 300


class _BadRecord(ValueError):
    """
    One record is unusable; the message names the field.
    """


class _Decoder:
    """
    Record decoding, with memos of the values that repeat across records
    (peer ids, addresses and times appear in several places). Each method
    raises L{_BadRecord} with a message naming the field.
    """

    def __init__(self) -> None:
        self.peer_ids: dict[str, PeerId] = {}
        self.addresses: dict[tuple[str, int], Point] = {}
        self.points: dict[str, Point] = {}
        self.times: dict[str, float] = {}
        self.groups: dict[str, str] = {}
        self.blacklist = IPBlacklist()

    def peer_id(self, value: object, field: str) -> PeerId:
        if type(value) is not str:
            raise _BadRecord(f"{field}: a peer id is a string, not {json_kind(value)}")
        peer_id = self.peer_ids.get(value)
        if peer_id is None:
            try:
                peer_id = self.peer_ids[value] = PeerId.parse(value)
            except AddressError as e:
                raise _BadRecord(f"{field}: {e}") from None
        return peer_id

    def time(self, value: object, field: str) -> float:
        if type(value) is str:
            known = self.times.get(value)
            if known is not None:
                return known
        try:
            t = parse_time(value)
        except ValueError as e:
            raise _BadRecord(f"{field}: {e}") from None
        if type(value) is str:
            self.times[value] = t
        return t

    @staticmethod
    def flag(record: dict[str, Any], field: str) -> bool:
        value = record.get(field, False)
        if value is not True and value is not False:
            raise _BadRecord(f"{field}: expected a boolean, got {json_kind(value)}")
        return value

    def address(self, value: Any, field: str) -> Point | None:
        """
        A Tezos address object C{{"addr", "port"?}}, or null. Without a
        port there is no point to record: None.
        """
        if value is None:
            return None
        if type(value) is not dict:
            raise _BadRecord(f"{field}: expected an address object, got {json_kind(value)}")
        addr, port = value.get("addr"), value.get("port")
        if type(addr) is not str:
            raise _BadRecord(f"{field}: addr: expected a string, got {json_kind(addr)}")
        if port is None:
            return None
        if type(port) is not int:
            raise _BadRecord(f"{field}: port: expected an integer, got {json_kind(port)}")
        point = self.addresses.get((addr, port))
        if point is None:
            # Tezos writes IPv4 as IPv4-mapped IPv6; the IPv4 text is
            # much cheaper to check.
            ip = addr[7:] if addr.startswith("::ffff:") and "." in addr else addr
            try:
                point = Point(ip, port)
            except AddressError as e:
                raise _BadRecord(f"{field}: {e}") from None
            self.addresses[addr, port] = point
        return point

    def point_text(self, value: object, field: str) -> Point:
        if type(value) is not str:
            raise _BadRecord(f"{field}: expected a string like '1.2.3.4:9732', got {json_kind(value)}")
        point = self.points.get(value)
        if point is None:
            try:
                point = Point.parse(value)
            except AddressError as e:
                raise _BadRecord(f"{field}: {e}") from None
            self.points[value] = point
            # The peers name the same points in Tezos's address form.
            self.addresses.setdefault((tezos_address(point.ip), point.port), point)
        return point

    def peer_stamp(self, record: dict[str, Any], field: str) -> tuple[Point | None, float] | None:
        value = record.get(field)
        if value is None:
            return None
        if type(value) is not list or len(value) != 2:
            raise _BadRecord(f"{field}: expected [address, time], got {json_kind(value)}")
        return (self.address(value[0], field), self.time(value[1], field))

    def point_stamp(self, record: dict[str, Any], field: str) -> tuple[PeerId, float] | None:
        value = record.get(field)
        if value is None:
            return None
        if type(value) is not list or len(value) != 2:
            raise _BadRecord(f"{field}: expected [peer_id, time], got {json_kind(value)}")
        return (self.peer_id(value[0], field), self.time(value[1], field))

    def events(self, value: Any) -> collections.deque[StateEvent] | None:
        if value is None:
            return None
        if type(value) is not list:
            raise _BadRecord(f"events: expected an array, got {json_kind(value)}")
        if not value:
            return None
        events: collections.deque[StateEvent] = collections.deque(maxlen=EVENT_RING_SIZE)
        first = max(0, len(value) - EVENT_RING_SIZE)
        for i in range(first, len(value)):
            item = value[i]
            try:
                if type(item) is not dict:
                    raise _BadRecord(f"expected an object, got {json_kind(item)}")
                kind = item.get("kind")
                if type(kind) is not str:
                    raise _BadRecord(f"kind: expected a string, got {json_kind(kind)}")
                point = self.address(item, "address") if "addr" in item else None
                timestamp = self.time(item.get("timestamp"), "timestamp")
            except _BadRecord as e:
                raise _BadRecord(f"events[{i}]: {e}") from None
            events.append(StateEvent(kind_from_file(kind), timestamp, None, point))
        return events

    def peer(self, record: Any) -> PeerInfo:
        if type(record) is not dict:
            raise _BadRecord(f"expected an object, got {json_kind(record)}")
        if "peer_id" not in record:
            raise _BadRecord("peer_id: missing")
        if "created" not in record:
            raise _BadRecord("created: missing")
        peer_stamp = self.peer_stamp
        return PeerInfo(
            self.peer_id(record["peer_id"], "peer_id"),
            self.time(record["created"], "created"),
            record.get("peer_metadata", NO_METADATA),
            self.flag(record, "trusted"),
            last_failed_connection=peer_stamp(record, "last_failed_connection"),
            last_rejected_connection=peer_stamp(record, "last_rejected_connection"),
            last_established_connection=peer_stamp(record, "last_established_connection"),
            last_disconnection=peer_stamp(record, "last_disconnection"),
            events=self.events(record.get("events")),
        )

    def point(self, record: Any) -> PointInfo:
        if type(record) is not dict:
            raise _BadRecord(f"expected an object, got {json_kind(record)}")
        if "point" not in record:
            raise _BadRecord("point: missing")
        expected = record.get("expected_peer_id")
        failed = record.get("last_failed_connection")
        point_stamp = self.point_stamp
        return PointInfo(
            self.point_text(record["point"], "point"),
            self.flag(record, "trusted"),
            None if expected is None else self.peer_id(expected, "expected_peer_id"),
            last_failed_connection=None if failed is None else self.time(failed, "last_failed_connection"),
            last_rejected_connection=point_stamp(record, "last_rejected_connection"),
            last_established_connection=point_stamp(record, "last_established_connection"),
            last_disconnection=point_stamp(record, "last_disconnection"),
            known_public=self.flag(record, "known_public"),
            source_group=self.source_group(record.get("source_group")),
        )

    def source_group(self, value: object) -> str | None:
        """
        A point's optional C{source_group}: a non-empty string of at most
        L{MAX_SOURCE_GROUP_TEXT} characters, or null (absent in files
        written before it existed).
        """
        if value is None:
            return None
        if type(value) is not str or not 0 < len(value) <= MAX_SOURCE_GROUP_TEXT:
            got = f"{len(value)} characters" if type(value) is str else json_kind(value)
            raise _BadRecord(f"source_group: expected a string of 1 to {MAX_SOURCE_GROUP_TEXT} characters, got {got}")
        # The same few groups name many points: one string each.
        return self.groups.setdefault(value, value)

    def banned_ip(self, value: object) -> str:
        if type(value) is not str:
            raise _BadRecord(f"expected an address or CIDR range, got {json_kind(value)}")
        try:
            self.blacklist.ban(value)
        except AddressError as e:
            raise _BadRecord(str(e)) from None
        return value

    def banned_peer(self, value: object) -> PeerId:
        return self.peer_id(value, "peer id")

    def peer_ban_by_ip(self, record: object) -> tuple[str, PeerId]:
        """
        A peer ban placed by banning an address: C{{"ip", "peer_id"}}.
        """
        if type(record) is not dict:
            raise _BadRecord(f"expected an object, got {json_kind(record)}")
        ip = record.get("ip")
        if type(ip) is not str or "/" in ip:
            raise _BadRecord(f"ip: expected an address, got {ip!r}")
        try:
            addr = canonical_entry(ip)
        except AddressError as e:
            raise _BadRecord(f"ip: {e}") from None
        return addr, self.peer_id(record.get("peer_id"), "peer_id")


def _records(items: list[Any], section: str, decode: Callable[[Any], T], skipped: list[RecordProblem]) -> list[T]:
    """
    The decoded C{items}; the bad ones are left out and listed in
    C{skipped} with their index. Each item is dropped from C{items} once
    decoded: the JSON values of a large file are freed as its records are
    built, instead of being traversed by the cyclic GC alongside them.
    """
    good = []
    for index, item in enumerate(items):
        items[index] = None
        try:
            good.append(decode(item))
        except _BadRecord as e:
            skipped.append(RecordProblem(section, index, str(e)))
    return good


def _section(document: dict[str, Any], name: str, container: str = "") -> list[Any]:
    value = document.get(name, [])
    if not isinstance(value, list):
        raise PeersFileError(f"'{container}{name}' must be an array, not {json_kind(value)}")
    return value


def _parse_json(data: bytes) -> Any:
    """
    The JSON value of C{data}.

    @raise PeersFileError: C{data} is empty, not UTF-8, or not JSON.
    """
    if not data.strip():
        raise PeersFileError("the file is empty")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise PeersFileError(f"not UTF-8 text: {e}") from None
    except ValueError as e:
        raise PeersFileError(f"not JSON (truncated or damaged): {e}") from None
    except RecursionError:
        raise PeersFileError("not JSON: nested too deeply") from None


def _check_header(document: Any, network: str) -> float | None:
    """
    Check the top level of a peers file: an object with an integer
    C{format} this version reads and the string C{network} of this node.

    @return: its C{saved_at}, if any.
    @raise PeersFileError: not so shaped.
    @raise IncompatibleFile: a newer format, or another network.
    """
    if not isinstance(document, dict):
        raise PeersFileError(f"expected a JSON object, found {json_kind(document)}")
    file_format = document.get("format")
    if not isinstance(file_format, int) or isinstance(file_format, bool):
        raise PeersFileError(f"'format' must be an integer, not {json_kind(file_format)}")
    if file_format > FORMAT:
        raise IncompatibleFile(
            "format",
            f"format {file_format} is newer than this version of p2pool reads (format {FORMAT})",
        )
    if file_format < 1:
        raise PeersFileError(f"unknown format {file_format}")
    file_network = document.get("network")
    if not isinstance(file_network, str):
        raise PeersFileError(f"'network' must be a string, not {json_kind(file_network)}")
    if file_network != network:
        raise IncompatibleFile("network", f"the file is for network {file_network!r}, this node runs {network!r}")
    if document.get("saved_at") is None:
        return None
    try:
        return parse_time(document["saved_at"])
    except ValueError as e:
        raise PeersFileError(f"'saved_at': {e}") from None


def decode_document(data: bytes, network: str) -> PeersFileContent:
    """
    Check and decode the bytes of a peers file. Records that are not
    usable are left out and listed in C{skipped}; unknown fields are
    ignored.

    @raise PeersFileError: the file is not JSON (or is truncated), is not
        an object, has no integer C{format} or string C{network}, or has a
        top-level field of the wrong type.
    @raise IncompatibleFile: its C{format} is newer than L{FORMAT}, or its
        C{network} is not C{network}.
    """
    document = _parse_json(data)
    saved_at = _check_header(document, network)
    peers = _section(document, "peers")
    points = _section(document, "points")
    bans = document.get("bans", {})
    if not isinstance(bans, dict):
        raise PeersFileError(f"'bans' must be an object, not {json_kind(bans)}")
    ips = _section(bans, "ips", "bans.")
    banned_peers = _section(bans, "peers", "bans.")
    by_ip = _section(bans, "peers_by_ip", "bans.")
    decoder = _Decoder()
    skipped: list[RecordProblem] = []
    # Points first: the peers refer to the same addresses, which are then
    # known already.
    decoded_points = _records(points, "points", decoder.point, skipped)
    decoded_peers = _records(peers, "peers", decoder.peer, skipped)
    return PeersFileContent(
        network=network,
        saved_at=saved_at,
        peers=decoded_peers,
        points=decoded_points,
        banned_ips=_records(ips, "bans.ips", decoder.banned_ip, skipped),
        banned_peers=_records(banned_peers, "bans.peers", decoder.banned_peer, skipped),
        peer_bans_by_ip=_records(by_ip, "bans.peers_by_ip", decoder.peer_ban_by_ip, skipped),
        skipped=sorted(skipped, key=lambda p: (SECTIONS.index(p.section), p.index)),
    )
