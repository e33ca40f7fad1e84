# -*- test-case-name: tests.test_admin -*-
"""
The admin HTTP API as one twisted.web resource: routing, authentication,
input checks and JSON replies for the routes of C{docs/ADMIN.md}.

Every request goes through L{AdminResource.render}, which never lets an
exception out: bad input is a 4xx reply and anything unexpected is logged
and answered with a 500, both as JSON C{{"error", "detail"}}.
"""

from __future__ import annotations

import hmac
import inspect
import ipaddress
import json
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
from prometheus_client import CONTENT_TYPE_LATEST
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from p2pool._version import __version__
from p2pool.admin.dashboard import dashboard_page
from p2pool.admin.feed import EventFeed
from p2pool.admin.json_shapes import (
    connection_json,
    greylist_ips_json,
    node_json,
    peer_info_json,
    point_info_json,
    traffic_history_json,
)
from p2pool.admin.metrics import PoolMetrics, snake_case
from p2pool.admin.traffic import TrafficSampler
from p2pool.core.acl import canonical_entry
from p2pool.core.addressing import AddressError, PeerId, Point
from p2pool.core.states import PeerState, PointState
from p2pool.errors import (
    Connected,
    DisconnectReason,
    Myself,
    P2PError,
    PeerBanned,
    PendingConnection,
    PointBanned,
    PrivateMode,
    Timeout,
    TooManyConnections,
)

if TYPE_CHECKING:
    from p2pool.pool.service import Pool

__all__ = ["APIError", "AdminResource", "MAX_BODY_SIZE", "Reply"]

#: Largest request body accepted, in bytes.
MAX_BODY_SIZE = 64 * 1024
#: Longest C{?timeout=} of C{PUT /network/points/<point>}, in seconds.
MAX_DIAL_TIMEOUT = 600.0
#: How long C{DELETE /network/connections/<peer_id>?wait=true} waits.
DISCONNECT_WAIT = 10.0
#: Entries a listing (C{GET /network/connections}, C{/points}, C{/peers})
#: renders and encodes before it lets the reactor run other work: a node
#: with thousands of peers answers without stalling its connections.
LISTING_CHUNK = 64
#: How a client gives the admin token, for 401 replies.
HOW_TO_GIVE_THE_TOKEN = (
    "p2pool --token TOKEN (or $P2POOL_ADMIN_TOKEN), an 'Authorization: Bearer TOKEN' header, "
    "or /?access_token=TOKEN for the dashboard"
)
#: The C{acl} values of a C{PATCH} body.
ACL_VALUES = ("ban", "trust", "open")

_JSON = "application/json; charset=utf-8"
_Item = TypeVar("_Item")
_NDJSON = "application/x-ndjson; charset=utf-8"

#: The status of a failed C{PUT /network/points/<point>}, by error.
_DIAL_STATUS: tuple[tuple[type[P2PError], int], ...] = (
    (PointBanned, 403),
    (PeerBanned, 403),
    (PrivateMode, 403),
    (Connected, 409),
    (PendingConnection, 409),
    (Myself, 409),
    (TooManyConnections, 503),
    (Timeout, 504),
)


class APIError(Exception):
    """
    A request that gets an error reply: C{status}, a short C{error} code and
    a C{detail} sentence.
    """

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


@attrs.frozen
class Reply:
    """
    A reply other than a plain JSON 200: a status, and either a JSON value
    or raw bytes of C{content_type}, with extra headers.
    """

    value: Any = None
    status: int = 200
    raw: bytes | None = None
    content_type: str = _JSON
    headers: dict[str, str] = attrs.field(factory=dict)


def _bad(error: str, detail: str) -> APIError:
    return APIError(400, error, detail)


def _not_found(what: str) -> APIError:
    return APIError(404, "not_found", what)


# -- parameters --------------------------------------------------------------


def _parse_point(text: str) -> Point:
    try:
        return Point.parse(text)
    except AddressError as e:
        raise _bad("malformed_point", str(e)) from None


def _dialable(point: Point) -> Point:
    """
    C{point}, which a request is about to dial or register: port 0 is
    refused, as in the configuration and the CLI (C{GET} of such a point
    is merely unknown).
    """
    if point.port == 0:
        raise _bad("malformed_point", f"malformed point {str(point)!r}: port 0 cannot be dialled")
    return point


def _parse_peer_id(text: str) -> PeerId:
    try:
        return PeerId.parse(text)
    except AddressError as e:
        raise _bad("malformed_peer_id", str(e)) from None


def _parse_addr(text: str) -> str:
    """
    An address or CIDR range (C{/} written C{%2F} in a path), canonical.
    """
    try:
        return canonical_entry(text)
    except AddressError as e:
        raise _bad("malformed_address", str(e)) from None


_PARAMETERS: dict[str, Callable[[str], Any]] = {
    ":point": _parse_point,
    ":peer_id": _parse_peer_id,
    ":addr": _parse_addr,
}


def _arguments(request: Request) -> dict[bytes, list[bytes]]:
    """
    The query arguments of a request.
    """
    return request.args or {}


def _query(request: Request, name: str) -> str | None:
    """
    The last value of query argument C{name}, if given.
    """
    values = _arguments(request).get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("bad_query", f"{name}: not UTF-8") from None


def _query_bool(request: Request, name: str, default: bool) -> bool:
    text = _query(request, name)
    if text is None:
        return default
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    try:
        return words[text.strip().lower()]
    except KeyError:
        raise _bad("bad_query", f"{name}: expected true or false, got {text!r}") from None


def _query_seconds(request: Request, name: str, maximum: float) -> float | None:
    text = _query(request, name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise _bad("bad_query", f"{name}: expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= maximum):
        raise _bad("bad_query", f"{name}: must be > 0 and <= {maximum:g} seconds, got {text!r}")
    return value


#: The most digits of a count in a query (L{_query_count}).
_COUNT_DIGITS = 18


def _query_count(request: Request, name: str) -> int:
    """
    A whole number from 0 to 10**18 - 1 given as C{?name=}; 0 when not
    given.
    """
    text = _query(request, name)
    if text is None:
        return 0
    if not (text.isascii() and text.isdigit()) or len(text) > _COUNT_DIGITS:
        raise _bad("bad_query", f"{name}: expected a whole number from 0 to {'9' * _COUNT_DIGITS}, got {text[:40]!r}")
    return int(text)


def _query_states(request: Request, states: tuple[str, ...]) -> set[str] | None:
    """
    The states given as C{?filter=} (repeatable), if any.
    """
    values = _arguments(request).get(b"filter")
    if not values:
        return None
    chosen = set()
    for value in values:
        text = value.decode("utf-8", "replace")
        if text not in states:
            raise _bad("bad_query", f"filter: expected one of {', '.join(states)}, got {text!r}")
        chosen.add(text)
    return chosen


def _json_body(request: Request) -> dict[str, Any]:
    """
    The request body as a JSON object.

    @raise APIError: 413 when larger than L{MAX_BODY_SIZE}; 400 when not a
        JSON object.
    """
    content = request.content
    data = b""
    if content is not None:
        content.seek(0)
        data = content.read(MAX_BODY_SIZE + 1)
    if len(data) > MAX_BODY_SIZE or getattr(request, "body_too_large", False):
        raise APIError(413, "body_too_large", f"the request body exceeds {MAX_BODY_SIZE} bytes")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad("bad_json", f"the body is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise _bad("bad_json", "the body must be a JSON object")
    return value


def _acl_body(request: Request, fields: tuple[str, ...]) -> tuple[str | None, dict[str, Any]]:
    """
    A C{PATCH} body: C{{"acl": "ban"|"trust"|"open", ...}}, each field
    optional.
    """
    body = _json_body(request)
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise _bad("bad_request", f"unknown field(s) {', '.join(unknown)}; expected {', '.join(fields)}")
    acl = body.get("acl")
    if acl is not None and acl not in ACL_VALUES:
        raise _bad("bad_acl", f"acl must be one of {', '.join(ACL_VALUES)}, got {json.dumps(acl)[:80]}")
    return acl, body


def _dial_error(error: P2PError) -> APIError:
    status = next((code for kind, code in _DIAL_STATUS if isinstance(error, kind)), 502)
    return APIError(status, snake_case(type(error).__name__), str(error) or type(error).__name__)


def _host_allowed(host: str) -> bool:
    """
    Whether a C{Host} header names an IP address or C{localhost}: what a
    browser tricked by DNS rebinding never sends.
    """
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


# -- the resource ------------------------------------------------------------

Handler = Callable[..., Any]

#: The routes: path segments (C{:point} and C{:peer_id} are parameters) and
#: the handler method of each HTTP method.
ROUTES: tuple[tuple[tuple[str, ...], dict[str, str]], ...] = (
    ((), {"GET": "dashboard"}),
    (("metrics",), {"GET": "get_metrics"}),
    (("version",), {"GET": "get_version"}),
    (("node",), {"GET": "get_node"}),
    (("health", "live"), {"GET": "get_live"}),
    (("health", "ready"), {"GET": "get_ready"}),
    (("network", "self"), {"GET": "get_self"}),
    (("network", "stat"), {"GET": "get_stat"}),
    (("network", "stat", "history"), {"GET": "get_stat_history"}),
    (("network", "connections"), {"GET": "list_connections"}),
    (("network", "connections", ":peer_id"), {"GET": "get_connection", "DELETE": "delete_connection"}),
    (("network", "points"), {"GET": "list_points"}),
    (("network", "points", ":point"), {"GET": "get_point", "PUT": "put_point", "PATCH": "patch_point"}),
    (("network", "peers"), {"GET": "list_peers"}),
    (("network", "peers", ":peer_id"), {"GET": "get_peer", "PATCH": "patch_peer"}),
    (("network", "bans"), {"GET": "list_bans"}),
    (("network", "bans", "ips", ":addr"), {"PUT": "put_ban", "DELETE": "delete_ban"}),
    (("network", "greylist"), {"DELETE": "delete_greylist"}),
    (("network", "greylist", "ips"), {"GET": "greylist_ips"}),
    (("network", "greylist", "peers"), {"GET": "greylist_peers"}),
    (("network", "log"), {"GET": "get_log"}),
)


#: Routes served without the token or the C{Host} check: the health probes
#: of a container orchestrator, which say nothing but whether the node runs.
PUBLIC_ROUTES: frozenset[tuple[str, ...]] = frozenset({("health", "live"), ("health", "ready")})


class AdminResource(Resource):
    """
    The admin API of one pool (see C{docs/ADMIN.md}).

    @param token: the bearer token every request must carry; C{""} for
        none, in which case only requests whose C{Host} is an IP address or
        C{localhost} are served.
    @param clock: the pool's reactor, for timeouts.
    """

    isLeaf = True
    _log = Logger()

    def __init__(
        self,
        pool: Pool,
        *,
        token: str,
        traffic: TrafficSampler,
        metrics: PoolMetrics,
        feed: EventFeed,
        clock: IReactorTime,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # unannotated in Twisted
        self._pool = pool
        self._token = token.encode("utf-8")
        self._traffic = traffic
        self._metrics = metrics
        self._feed = feed
        self._clock = clock

    # -- plumbing ----------------------------------------------------------

    def render(self, request: Request) -> bytes | int:
        """
        Answer one request; never raises.
        """
        try:
            result: object = self._dispatch(request)
            if result is NOT_DONE_YET:
                return NOT_DONE_YET
            if inspect.iscoroutine(result):
                self._reply_later(request, Deferred.fromCoroutine(result))
                return NOT_DONE_YET
            body = self._reply(request, result)
        except APIError as e:
            body = self._error(request, e)
        except Exception:
            self._log.failure("admin API: {method} {uri} failed", method=_text(request.method), uri=_text(request.uri))
            body = self._error(request, APIError(500, "internal_error", "the request failed; see the node's log"))
        if request.method == b"HEAD":
            # The headers GET would send, its length included, and no body.
            request.setHeader(b"content-length", b"%d" % len(body))
            return b""
        return body

    def _reply_later(self, request: Request, d: Deferred[Any]) -> None:
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)

        def done(result: Any) -> None:
            if gone:
                return
            if isinstance(result, Failure):
                if isinstance(result.value, APIError):
                    body = self._error(request, result.value)
                else:
                    self._log.failure(
                        "admin API: {method} {uri} failed", result, method=_text(request.method), uri=_text(request.uri)
                    )
                    body = self._error(
                        request, APIError(500, "internal_error", "the request failed; see the node's log")
                    )
            else:
                try:
                    body = self._reply(request, result)
                except Exception:
                    self._log.failure("admin API: cannot encode the reply to {uri}", uri=_text(request.uri))
                    body = self._error(request, APIError(500, "internal_error", "the reply could not be encoded"))
            request.write(body)
            request.finish()

        d.addBoth(done)

    def _reply(self, request: Request, result: Any) -> bytes:
        reply = result if isinstance(result, Reply) else Reply(result)
        request.setResponseCode(reply.status)
        request.setHeader(b"content-type", reply.content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        for name, value in reply.headers.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
        if reply.raw is not None:
            return reply.raw
        return _encode(reply.value)

    def _error(self, request: Request, error: APIError) -> bytes:
        return self._reply(
            request, Reply({"error": error.error, "detail": error.detail}, error.status, headers=error.headers)
        )

    def _dispatch(self, request: Request) -> Any:
        segments = self._segments(request)
        if tuple(segments) not in PUBLIC_ROUTES:
            self._check_host(request)
            self._authorize(request, query_token=segments == [])
        pattern, methods = self._route(segments)
        method = _text(request.method)
        # HEAD is GET without the body (RFC 9110, 9.3.2).
        name = methods.get("GET" if method == "HEAD" else method)
        if name is None:
            allowed = ", ".join(sorted({*methods, "HEAD"} if "GET" in methods else methods))
            raise APIError(
                405, "method_not_allowed", f"{method} is not allowed here; use {allowed}", {"Allow": allowed}
            )
        arguments = [_PARAMETERS[p](s) for p, s in zip(pattern, segments) if p in _PARAMETERS]
        handler: Handler = getattr(self, name)
        return handler(request, *arguments)

    @staticmethod
    def _segments(request: Request) -> list[str]:
        try:
            segments = [s.decode("utf-8") for s in (request.postpath or [])]
        except UnicodeDecodeError:
            raise _bad("bad_request", "the path is not UTF-8") from None
        while segments and segments[-1] == "":
            segments.pop()
        return segments

    @staticmethod
    def _route(segments: list[str]) -> tuple[tuple[str, ...], dict[str, str]]:
        for pattern, methods in ROUTES:
            if len(pattern) == len(segments) and all(p == s or p in _PARAMETERS for p, s in zip(pattern, segments)):
                return pattern, methods
        raise _not_found(f"no route /{'/'.join(segments)}")

    def _check_host(self, request: Request) -> None:
        if self._token:
            return
        host = request.getHeader(b"host")
        if host is not None and not _host_allowed(_text(host)):
            raise APIError(
                403,
                "forbidden_host",
                f"Host {_text(host)!r} is not an IP address or localhost; without admin.token only those are served",
            )

    def _authorize(self, request: Request, query_token: bool) -> None:
        """
        Check the bearer token (RFC 6750): in the C{Authorization} header,
        or for the dashboard page only, in an C{access_token} query argument.
        """
        if not self._token:
            return
        given: bytes | None = None
        header = request.getHeader(b"authorization")
        if header is not None:
            scheme, _, credentials = header.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                given = credentials.strip()
        if given is None and query_token:
            values = _arguments(request).get(b"access_token")
            given = values[-1] if values else None
        if given is None:
            raise APIError(
                401,
                "unauthorized",
                f"this node requires its admin token ([admin] token): {HOW_TO_GIVE_THE_TOKEN}",
                {"WWW-Authenticate": 'Bearer realm="p2pool"'},
            )
        if not hmac.compare_digest(given, self._token):
            raise APIError(
                401,
                "unauthorized",
                f"wrong token: give the node's [admin] token: {HOW_TO_GIVE_THE_TOKEN}",
                {"WWW-Authenticate": 'Bearer realm="p2pool", error="invalid_token"'},
            )

    # -- node ----------------------------------------------------------------

    def dashboard(self, request: Request) -> Reply:
        page = dashboard_page()
        return Reply(
            raw=page.body,
            content_type="text/html; charset=utf-8",
            headers={
                "Content-Security-Policy": page.content_security_policy,
                "Referrer-Policy": "no-referrer",
                "X-Frame-Options": "DENY",
            },
        )

    def get_metrics(self, request: Request) -> Reply:
        return Reply(raw=self._metrics.render(), content_type=CONTENT_TYPE_LATEST)

    def get_version(self, request: Request) -> dict[str, Any]:
        """
        The p2pool version this node runs, and its network name.
        """
        return {"version": __version__, "network": self._pool.config.network}

    def get_live(self, request: Request) -> dict[str, Any]:
        """
        Liveness: the node's reactor answers.
        """
        return {"live": True}

    def get_ready(self, request: Request) -> Reply:
        """
        Readiness: the identity is loaded, the peers file read, and the
        pool listens for peers; 503 with what is missing otherwise.
        """
        pool = self._pool
        checks = {
            "identity": pool.identity is not None,
            "peers_file": bool(pool.persistence.loaded),
            "listening": pool.is_started and pool.listening_port is not None,
        }
        if all(checks.values()):
            return Reply({"ready": True, "checks": checks})
        missing = ", ".join(name for name, ok in checks.items() if not ok)
        return Reply(
            {"ready": False, "checks": checks, "error": "not_ready", "detail": f"waiting for: {missing}"}, status=503
        )

    def get_node(self, request: Request) -> dict[str, Any]:
        """
        The node at a glance: version, network, peer id, listening point,
        private mode, start time and uptime.
        """
        return node_json(self._pool)

    def get_self(self, request: Request) -> str:
        if self._pool.identity is None:
            raise APIError(503, "starting", "the node's identity is not ready yet")
        return str(self._pool.peer_id)

    def get_stat(self, request: Request) -> dict[str, Any]:
        return self._traffic.stat()

    def get_stat_history(self, request: Request) -> dict[str, Any]:
        """
        The traffic of the last intervals; C{?after=<seq>} only those
        numbered above C{seq}.
        """
        return traffic_history_json(self._traffic.history, _query_count(request, "after"))

    # -- connections ---------------------------------------------------------

    async def _listing(self, items: Sequence[_Item], entry: Callable[[_Item], Any]) -> Reply:
        """
        The JSON array of C{entry(item)} for each of C{items} (a snapshot),
        rendered and encoded L{LISTING_CHUNK} entries at a time with the
        reactor free in between; the same bytes as encoding the whole list.
        """
        parts: list[bytes] = []
        for start in range(0, len(items), LISTING_CHUNK):
            if start:
                await deferLater(self._clock, 0, lambda: None)
            chunk = [entry(item) for item in items[start : start + LISTING_CHUNK]]
            parts.append(_encode(chunk)[1:-2])  # without "[", "]" and the newline
        return Reply(raw=b"[" + b",".join(parts) + b"]\n")

    def list_connections(self, request: Request) -> Any:
        return self._listing(
            list(self._pool.connections), lambda conn: connection_json(self._pool, conn, self._traffic)
        )

    def _connection(self, peer_id: PeerId) -> Any:
        conn = self._pool.connections.find_by_peer_id(peer_id)
        if conn is None:
            raise _not_found(f"no connection to {peer_id}")
        return conn

    def get_connection(self, request: Request, peer_id: PeerId) -> dict[str, Any]:
        return connection_json(self._pool, self._connection(peer_id), self._traffic)

    async def delete_connection(self, request: Request, peer_id: PeerId) -> dict[str, Any]:
        wait = _query_bool(request, "wait", False)
        closed = self._connection(peer_id).disconnect(DisconnectReason.REQUESTED)
        if wait:
            closed.addTimeout(DISCONNECT_WAIT, self._clock)
            try:
                await closed
            except (TimeoutError, CancelledError):
                raise APIError(
                    504, "timeout", f"the connection to {peer_id} did not close within {DISCONNECT_WAIT:g} s"
                ) from None
        return {}

    # -- points --------------------------------------------------------------

    def list_points(self, request: Request) -> Any:
        states = _query_states(request, tuple(s.value for s in PointState))
        infos = [info for info in self._pool.points if states is None or info.state.value in states]
        return self._listing(infos, lambda info: [str(info.point), point_info_json(info)])

    def get_point(self, request: Request, point: Point) -> dict[str, Any]:
        info = self._pool.points.info(point)
        if info is None:
            raise _not_found(f"unknown point {point}")
        return point_info_json(info)

    async def put_point(self, request: Request, point: Point) -> dict[str, Any]:
        _dialable(point)
        timeout = _query_seconds(request, "timeout", MAX_DIAL_TIMEOUT)
        if not self._pool.is_started:
            raise APIError(503, "starting", "the node has not started yet")
        try:
            conn = await self._pool.connect(point, timeout)
        except P2PError as e:
            raise _dial_error(e) from None
        return connection_json(self._pool, conn, self._traffic)

    def patch_point(self, request: Request, point: Point) -> dict[str, Any] | None:
        """
        Tezos semantics: C{ban} = untrust then ban, C{trust} = trust (which
        unbans and registers the point), C{open} = unban then untrust; then
        C{peer_id} sets the expected peer id of a known point (after the
        C{acl}, so that trusting a new point can pin its peer id at once).
        Answers the point's info, C{null} if it is unknown.
        """
        _dialable(point)
        acl, body = _acl_body(request, ("acl", "peer_id"))
        expected = body.get("peer_id")
        if expected is not None and not isinstance(expected, str):
            raise _bad("malformed_peer_id", "peer_id must be a string")
        expected_peer_id = _parse_peer_id(expected) if expected is not None else None
        points = self._pool.points
        _apply_acl(points, point, acl)
        if expected_peer_id is not None:
            self._pool.set_expected_peer_id(point, expected_peer_id)
        info = points.info(point)
        return point_info_json(info) if info is not None else None

    # -- peers ---------------------------------------------------------------

    def list_peers(self, request: Request) -> Any:
        states = _query_states(request, tuple(s.value for s in PeerState))
        infos = [info for info in self._pool.peers if states is None or info.state.value in states]
        return self._listing(infos, lambda info: [str(info.peer_id), peer_info_json(self._pool, info, self._traffic)])

    def get_peer(self, request: Request, peer_id: PeerId) -> dict[str, Any]:
        info = self._pool.peers.info(peer_id)
        if info is None:
            raise _not_found(f"unknown peer {peer_id}")
        return peer_info_json(self._pool, info, self._traffic)

    def patch_peer(self, request: Request, peer_id: PeerId) -> dict[str, Any] | None:
        """
        Tezos semantics: C{ban} = untrust then ban, C{trust} = trust (which
        unbans), C{open} = unban then untrust. Answers the peer's info,
        C{null} if it is unknown.
        """
        acl, _ = _acl_body(request, ("acl",))
        peers = self._pool.peers
        _apply_acl(peers, peer_id, acl)
        info = peers.info(peer_id)
        return peer_info_json(self._pool, info, self._traffic) if info is not None else None

    # -- bans ------------------------------------------------------------------

    def list_bans(self, request: Request) -> dict[str, list[str]]:
        """
        The ban lists: addresses and CIDR ranges, and peer ids, in ban order.
        """
        acl = self._pool.acl
        return {"ips": acl.ip_blacklist.listing(), "peers": [str(p) for p in acl.peer_blacklist.listing()]}

    def put_ban(self, request: Request, addr: str) -> dict[str, Any]:
        """
        Ban an address or CIDR range and close the connections from it.
        """
        return {"ip": addr, "disconnected": self._pool.points.ban_addr(addr)}

    def delete_ban(self, request: Request, addr: str) -> dict[str, Any]:
        """
        Lift the ban of exactly this address or range.
        """
        return {"ip": addr, "was_banned": self._pool.points.unban_addr(addr)}

    # -- greylists -------------------------------------------------------------

    def greylist_ips(self, request: Request) -> dict[str, Any]:
        return greylist_ips_json(self._pool)

    def greylist_peers(self, request: Request) -> list[str]:
        return [str(peer_id) for peer_id in self._pool.peers.get_greylisted_list()]

    def delete_greylist(self, request: Request) -> dict[str, Any]:
        """
        Tezos C{acl_clear}: empty the greylists and the ban lists.
        """
        self._pool.acl_clear()
        return {}

    # -- events ----------------------------------------------------------------

    def get_log(self, request: Request) -> Any:
        """
        Stream the pool's events as JSON lines (C{?recent=true} replays the
        latest first; C{?follow=false} ends after the replay).
        """
        recent = _query_bool(request, "recent", False)
        follow = _query_bool(request, "follow", True)
        if not follow or request.method == b"HEAD":
            return Reply(raw=b"".join(self._feed.recent()) if recent else b"", content_type=_NDJSON)
        if self._feed.full:
            raise APIError(503, "too_many_streams", "too many clients are following the log; try again later")
        self._reply(request, Reply(raw=b"", content_type=_NDJSON))
        request.write(b"")  # send the headers now: events may be a while coming
        self._feed.stream(request, recent)
        return NOT_DONE_YET


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode("utf-8") + b"\n"


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value is not None else ""


def _apply_acl(view: Any, key: Any, acl: str | None) -> None:
    """
    Apply a PATCH C{acl} to a point or peer with Tezos semantics: C{ban} =
    untrust then ban, C{trust} = trust (which unbans), C{open} = unban then
    untrust; C{None} changes nothing.
    """
    if acl == "ban":
        view.untrust(key)
        view.ban(key)
    elif acl == "trust":
        view.trust(key)
    elif acl == "open":
        view.unban(key)
        view.untrust(key)
