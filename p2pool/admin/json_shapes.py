# -*- test-case-name: tests.test_admin -*-
"""
The JSON shapes of the admin API, after Tezos's C{/network} RPCs
(C{P2p_point.Info}, C{P2p_peer.Info}, C{P2p_connection.Info},
C{P2p_stat}): plain functions from pool objects to JSON-ready values.

Times are RFC 3339 strings in UTC with milliseconds
(C{2024-05-01T12:00:00.250Z}); points are C{"1.2.3.4:9732"} or
C{"[::1]:9732"}; peer ids are their C{id…} text; an address with an
optional port (Tezos C{id_point}) is C{{"addr": "1.2.3.4", "port": 9732}}.
Optional fields are left out when they have no value, as Tezos does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.logger import Logger

from p2pool._version import __version__
from p2pool.core.addressing import Point
from p2pool.core.states import PeerInfo, PeerState, PointInfo, PointState, TrustSource
from p2pool.core.timestamps import format_time as rfc3339
from p2pool.interfaces import BasePoolApplication, IPeerMetadataConfig

if TYPE_CHECKING:
    from p2pool.admin.traffic import TrafficHistory, TrafficSampler
    from p2pool.pool.service import Pool
    from p2pool.transport.connection import Connection

__all__ = [
    "connection_json",
    "greylist_ips_json",
    "id_point_json",
    "node_json",
    "peer_info_json",
    "point_info_json",
    "rfc3339",
    "traffic_history_json",
]

_log = Logger()

S = TypeVar("S", bound=tuple[Any, float])


def id_point_json(ip: str, port: int | None) -> dict[str, Any]:
    """
    Tezos C{P2p_connection.Id}: an address and, when known, a port.
    """
    out: dict[str, Any] = {"addr": ip}
    if port:
        out["port"] = port
    return out


def _latest(*stamps: S | None) -> S | None:
    """
    The stamp (C{(what, time)}) with the latest time, if any.
    """
    present = [s for s in stamps if s is not None]
    return max(present, key=lambda s: s[1]) if present else None


def _peer_stamp(stamp: tuple[Any, float] | None) -> list[Any] | None:
    """
    A point's C{(peer_id, time)} stamp as C{[peer_id, time]}.
    """
    if stamp is None:
        return None
    return [str(stamp[0]), rfc3339(stamp[1])]


def _point_stamp(stamp: tuple[Point | None, float] | None) -> list[Any] | None:
    """
    A peer's C{(point, time)} stamp as C{[id_point, time]} (C{null} for a
    peer that did not listen).
    """
    if stamp is None:
        return None
    point = stamp[0]
    where = id_point_json(point.ip, point.port) if point is not None else None
    return [where, rfc3339(stamp[1])]


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def _trusted_by(out: dict[str, Any], trust: TrustSource) -> None:
    """
    Where a trusted entry's trust came from (C{"config"}, C{"api"}); left
    out when untrusted.
    """
    if trust:
        out["trusted_by"] = [(source.name or "").lower() for source in TrustSource if source in trust]


def point_info_json(info: PointInfo) -> dict[str, Any]:
    """
    Tezos C{P2p_point.Info}: C{trusted} (and, beyond Tezos, C{trusted_by}:
    C{"config"}, C{"api"}), C{greylisted_until} (the end of
    the reconnection back-off), C{state} (C{{"event_kind", "p2p_peer_id"?}}),
    C{p2p_peer_id}, C{last_failed_connection} and C{last_miss} (times),
    C{last_rejected_connection}, C{last_established_connection},
    C{last_disconnection} and C{last_seen} (C{[peer_id, time]}),
    C{expected_peer_id}, and (not in Tezos) the C{source_group} of a point
    learnt from the network.
    """
    out: dict[str, Any] = {"trusted": info.trusted}
    _trusted_by(out, info.trust)
    if info.reconnection_time is not None:
        out["greylisted_until"] = rfc3339(info.reconnection_time)
    state: dict[str, Any] = {"event_kind": info.state.value}
    current = info.current_peer_id if info.state in (PointState.ACCEPTED, PointState.RUNNING) else None
    if current is not None:
        state["p2p_peer_id"] = str(current)
    out["state"] = state
    if current is not None:
        out["p2p_peer_id"] = str(current)
    if info.last_failed_connection is not None:
        out["last_failed_connection"] = rfc3339(info.last_failed_connection)
    _put(out, "last_rejected_connection", _peer_stamp(info.last_rejected_connection))
    _put(out, "last_established_connection", _peer_stamp(info.last_established_connection))
    _put(out, "last_disconnection", _peer_stamp(info.last_disconnection))
    _put(
        out,
        "last_seen",
        _peer_stamp(_latest(info.last_rejected_connection, info.last_established_connection, info.last_disconnection)),
    )
    if info.last_miss is not None:
        out["last_miss"] = rfc3339(info.last_miss)
    if info.expected_peer_id is not None:
        out["expected_peer_id"] = str(info.expected_peer_id)
    _put(out, "source_group", info.source_group)
    return out


def _metadata_json(pool: Pool, metadata: Any) -> Any:
    """
    Peer metadata as the application encodes it (its
    C{IPeerMetadataConfig.encode_metadata}); C{null} if that fails.
    """
    config: IPeerMetadataConfig = IPeerMetadataConfig(pool.app, None) or BasePoolApplication()
    try:
        return config.encode_metadata(metadata)
    except Exception:
        _log.failure("the application could not encode peer metadata")
        return None


def _score(pool: Pool, metadata: Any) -> float | None:
    """
    The application's score of a peer; C{null} if it fails or is not a
    finite number.
    """
    try:
        score = pool.score(metadata)
    except Exception:
        _log.failure("the application could not score peer metadata")
        return None
    return score if math.isfinite(score) else None


def conn_metadata_json(private: bool, data: bytes) -> dict[str, Any]:
    """
    Connection metadata: the private-mode flag and the application's
    opaque bytes in hex.
    """
    return {"private_node": private, "data": data.hex()}


def stat_json(total_sent: int, total_recv: int, inflow: int, outflow: int) -> dict[str, int]:
    """
    Tezos C{P2p_stat}: totals in bytes, current flows in bytes per second.
    """
    return {"total_sent": total_sent, "total_recv": total_recv, "current_inflow": inflow, "current_outflow": outflow}


def traffic_history_json(history: TrafficHistory, after: int = 0) -> dict[str, Any]:
    """
    C{GET /network/stat/history}: C{interval} (seconds each entry counts,
    at least), C{length} (entries kept at most), C{since} (when counting
    began: the numbering starts again when it changes), and C{intervals},
    oldest first, those numbered above C{after}: each C{seq} (its number,
    from 1), C{end} (a time), C{seconds} (its length), C{sent} and C{recv}
    (bytes).
    """
    return {
        "interval": history.interval,
        "length": history.length,
        "since": rfc3339(history.since),
        "intervals": [
            {
                "seq": entry.seq,
                "end": rfc3339(entry.end),
                "seconds": round(entry.seconds, 3),
                "sent": entry.sent,
                "recv": entry.received,
            }
            for entry in history.intervals(after)
        ],
    }


def node_json(pool: Pool) -> dict[str, Any]:
    """
    C{GET /node}: this node at a glance: C{version} (of p2pool),
    C{network}, C{peer_id} (C{null} until the identity is ready),
    C{listen} (the point it listens on for peers, C{null} until it does),
    C{private_mode}, C{started_at} (a time, C{null} before the pool starts)
    and C{uptime} (seconds since then, C{null} before).
    """
    listening = pool.listening_point
    started_at = pool.started_at
    return {
        "version": __version__,
        "network": pool.config.network,
        "peer_id": str(pool.peer_id) if pool.identity is not None else None,
        "listen": str(listening) if listening is not None else None,
        "private_mode": pool.config.private_mode,
        "started_at": rfc3339(started_at) if started_at is not None else None,
        "uptime": round(max(0.0, pool.now() - started_at), 3) if started_at is not None else None,
    }


def connection_stat_json(conn: Connection, traffic: TrafficSampler) -> dict[str, int]:
    """
    The traffic of one connection.
    """
    inflow, outflow = traffic.connection_rates(conn)
    return stat_json(conn.bytes_sent, conn.bytes_received, inflow, outflow)


def peer_info_json(pool: Pool, info: PeerInfo, traffic: TrafficSampler) -> dict[str, Any]:
    """
    Tezos C{P2p_peer.Info}: C{score}, C{trusted} (and C{trusted_by}, as
    for points), C{conn_metadata} (the
    remote's connection metadata while running), C{peer_metadata},
    C{state} (C{"accepted"|"running"|"disconnected"}), C{reachable_at}
    (C{id_point} while accepted or running), C{stat} (zero when not
    connected), and the six C{last_*} fields as C{[id_point, time]}.
    """
    conn = pool.connections.find_by_peer_id(info.peer_id) if info.state is PeerState.RUNNING else None
    out: dict[str, Any] = {"score": _score(pool, info.metadata), "trusted": info.trusted}
    _trusted_by(out, info.trust)
    if conn is not None:
        out["conn_metadata"] = conn_metadata_json(conn.private, conn.remote_metadata)
    out["peer_metadata"] = _metadata_json(pool, info.metadata)
    out["state"] = info.state.value
    if info.state is not PeerState.DISCONNECTED and info.current_point is not None:
        out["reachable_at"] = id_point_json(info.current_point.ip, info.current_point.port)
    out["stat"] = connection_stat_json(conn, traffic) if conn is not None else stat_json(0, 0, 0, 0)
    stamps: Sequence[tuple[str, tuple[Point | None, float] | None]] = (
        ("last_failed_connection", info.last_failed_connection),
        ("last_rejected_connection", info.last_rejected_connection),
        ("last_established_connection", info.last_established_connection),
        ("last_disconnection", info.last_disconnection),
        (
            "last_seen",
            _latest(info.last_rejected_connection, info.last_established_connection, info.last_disconnection),
        ),
        ("last_miss", _latest(info.last_failed_connection, info.last_rejected_connection, info.last_disconnection)),
    )
    for key, stamp in stamps:
        _put(out, key, _point_stamp(stamp))
    return out


def connection_json(pool: Pool, conn: Connection, traffic: TrafficSampler) -> dict[str, Any]:
    """
    Tezos C{P2p_connection.Info}: C{peer_id}, C{point} (where the remote
    can be reached, C{null} when it does not listen), C{id_point} (its
    address and advertised port), C{incoming}, C{private},
    C{announced_version} (C{chain_name}, C{distributed_db_version} = the
    application version, C{p2p_version}), C{local_metadata} and
    C{remote_metadata}; plus C{established_at} and C{stat}.
    """
    port = conn.point.port if conn.point is not None else None
    return {
        "peer_id": str(conn.peer_id),
        "point": str(conn.point) if conn.point is not None else None,
        "id_point": id_point_json(conn.remote_ip, port),
        "incoming": conn.incoming,
        "private": conn.private,
        "announced_version": {
            "chain_name": pool.config.network,
            "distributed_db_version": conn.application_version,
            "p2p_version": conn.p2p_version,
        },
        "local_metadata": conn_metadata_json(pool.config.private_mode, conn.local_metadata),
        "remote_metadata": conn_metadata_json(conn.private, conn.remote_metadata),
        "established_at": rfc3339(conn.established_at),
        "stat": connection_stat_json(conn, traffic),
    }


def greylist_ips_json(pool: Pool) -> dict[str, Any]:
    """
    C{GET /network/greylist/ips}: the greylisted addresses still listed,
    oldest first, and since when that listing may miss some (C{null}
    while it is complete).
    """
    since = pool.points.greylisted_list_not_reliable_since()
    return {
        "ips": pool.points.get_greylisted_list(),
        "not_reliable_since": rfc3339(since) if since is not None else None,
    }
