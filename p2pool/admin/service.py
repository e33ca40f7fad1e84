# -*- test-case-name: tests.test_admin -*-
"""
The admin HTTP service of a node: the L{AdminResource} served by
twisted.web on C{[admin] listen}, with the traffic sampler, the metrics and
the event feed it draws on.
"""

from __future__ import annotations

import io
import re
from typing import Any, Optional, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web.server import Request, Site

from p2pool.addressing import Point
from p2pool.admin.feed import EventFeed
from p2pool.admin.metrics import PoolMetrics
from p2pool.admin.resources import MAX_BODY_SIZE, AdminResource
from p2pool.admin.traffic import TrafficSampler
from p2pool.config import AdminConfig
from p2pool.errors import listen_failure_text
from p2pool.pool import Pool

__all__ = ["AdminListenError", "AdminService", "MAX_CONNECTIONS"]

#: HTTP connections served at once; more are closed at once.
MAX_CONNECTIONS = 64
#: Seconds an idle keep-alive connection stays open.
IDLE_TIMEOUT = 60
#: Seconds open connections get to close when the service stops.
CLOSE_GRACE = 2.0


class AdminListenError(Exception):
    """
    The admin API could not listen on C{[admin] listen}.
    """


_PRIVATE_KEY_PEM = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)


def load_tls_options(config: AdminConfig) -> Optional[CertificateOptions]:
    """
    Server TLS options (TLS 1.2 or later) from C{[admin] tls_certificate}
    (the leaf certificate, then any chain) and C{tls_key} (or the key in
    the certificate file when C{tls_key} is false); C{None} without TLS.

    @raise AdminListenError: naming the key whose file is missing,
        unreadable or not PEM, or when the key does not match.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if config.tls_certificate is None:
        if config.tls_key is not None:
            raise AdminListenError("admin.tls_key: set without admin.tls_certificate")
        return None

    def read(key: str, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise AdminListenError(f"{key}: cannot read {path}: {e.strerror or e}") from None

    cert_data = read("admin.tls_certificate", config.tls_certificate)
    try:
        certificates = x509.load_pem_x509_certificates(cert_data)
    except ValueError as e:
        raise AdminListenError(f"admin.tls_certificate: {config.tls_certificate} is not a PEM certificate: {e}") from None
    key_name, key_path = ("admin.tls_key", config.tls_key) if config.tls_key is not None else (
        "admin.tls_certificate", config.tls_certificate
    )
    key_data = read(key_name, key_path) if config.tls_key is not None else cert_data
    match = _PRIVATE_KEY_PEM.search(key_data)
    if match is None:
        raise AdminListenError(f"{key_name}: no PEM private key in {key_path}")
    try:
        private_key = serialization.load_pem_private_key(match.group(0), None)
    except (ValueError, TypeError) as e:
        raise AdminListenError(f"{key_name}: cannot load the private key in {key_path}: {e}") from None
    try:
        options = CertificateOptions(
            privateKey=private_key,
            certificate=certificates[0],
            extraCertChain=certificates[1:],
            raiseMinimumTo=TLSVersion.TLSv1_2,
        )
        options.getContext()
        return options
    except Exception as e:
        raise AdminListenError(f"{key_name}: the key does not fit admin.tls_certificate: {e}") from None


class AdminRequest(Request):
    """
    A request whose body is kept in memory up to L{MAX_BODY_SIZE} bytes;
    beyond that it is discarded and C{body_too_large} is set (the resource
    then answers 413).
    """

    content: Any
    body_too_large = False
    _body_size = 0

    def gotLength(self, length: Optional[int]) -> None:
        self.content = io.BytesIO()
        self.body_too_large = length is not None and length > MAX_BODY_SIZE

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._body_size += len(data)
        if self._body_size > MAX_BODY_SIZE:
            self.body_too_large = True
            self.content = io.BytesIO()
            return
        self.content.write(data)


class AdminSite(Site):
    """
    The admin site: capped request bodies, an idle timeout, and requests
    logged at debug level without their query strings (which may hold the
    dashboard's token).
    """

    requestFactory = AdminRequest
    noisy = False
    _log = Logger()

    def log(self, request: Any) -> None:
        self._log.debug(
            "admin API: {method} {path} {code}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
            code=request.code,
        )


class _ConnectionLimit(WrappingFactory):
    """
    Serves at most C{limit} connections at once, so that clients cannot
    use up the node's file descriptors, and closes them all on demand.
    """

    noisy = False
    _log = Logger()

    def __init__(self, wrapped: Site, limit: int) -> None:
        super().__init__(wrapped)
        self._limit = limit
        self._idle: list[Deferred[None]] = []

    def buildProtocol(self, addr: Optional[IAddress]) -> Any:
        if len(self.protocols) >= self._limit:
            self._log.warn("admin API: refusing a connection from {addr}: {limit} already open", addr=addr, limit=self._limit)
            return None
        return super().buildProtocol(addr)

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiters, self._idle = self._idle, []
            for d in waiters:
                d.callback(None)

    def close_all(self, clock: Any, grace: float) -> Deferred[None]:
        """
        Close every connection; those still open after C{grace} seconds are
        aborted.

        @return: fires once none is open.
        """
        if not self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        for wrapper in list(self.protocols):
            wrapper.transport.loseConnection()

        def abort() -> None:
            for wrapper in list(self.protocols):
                wrapper.transport.abortConnection()

        call = clock.callLater(grace, abort)

        def closed(result: None) -> None:
            if call.active():
                call.cancel()
            return result

        return d.addBoth(closed)


class AdminService(Service):
    """
    Serves a pool's admin API (see C{docs/ADMIN.md}).

    @ivar resource: the API's resource (usable without listening, e.g. with
        C{treq.testing.StubTreq}).
    @ivar traffic: samples the byte counters for C{/network/stat}.
    @ivar metrics: the pool's Prometheus metrics.
    @ivar feed: the event feed of C{/network/log}.
    @ivar port: the listening port, once listening.
    """

    _log = Logger()

    def __init__(self, pool: Pool, config: Optional[AdminConfig] = None, reactor: Any = None) -> None:
        """
        @param config: where to listen and the token; default: the pool's
            C{config.admin}. C{listen = None} serves nothing over the
            network (only L{resource}).
        @param reactor: the pool's reactor (default: the global one).
        """
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.pool = pool
        self.config = config if config is not None else pool.config.admin
        self._reactor = reactor
        self.traffic = TrafficSampler(pool, reactor)
        self.metrics = PoolMetrics(pool)
        self.feed = EventFeed(pool)
        self.resource = AdminResource(
            pool, token=self.config.token, traffic=self.traffic, metrics=self.metrics, feed=self.feed, clock=reactor
        )
        self.port: Optional[IListeningPort] = None
        self._factory: Optional[_ConnectionLimit] = None
        self._listen_outcome: Optional[Any] = None
        self._listen_waiters: list[Deferred[None]] = []

    @property
    def address(self) -> Optional[Point]:
        """
        The address and port the API listens on, once it does.
        """
        if self.port is None:
            return None
        host: Any = cast(Any, self.port).getHost()
        return Point(host.host, host.port)

    def startService(self) -> None:
        super().startService()
        self.metrics.attach()
        self.feed.attach()
        self.traffic.start()
        if self.config.listen is None:
            self._listen_outcome = None
            return
        self._listen_outcome = _PENDING
        Deferred.fromCoroutine(self._listen(self.config.listen)).addBoth(self._listened)

    async def _listen(self, listen: Point) -> None:
        endpoint_type = TCP6ServerEndpoint if listen.is_ipv6 else TCP4ServerEndpoint
        endpoint = endpoint_type(self._reactor, listen.port, interface=listen.ip)
        site = AdminSite(self.resource, timeout=IDLE_TIMEOUT, reactor=self._reactor)
        self._factory = _ConnectionLimit(site, MAX_CONNECTIONS)
        options = load_tls_options(self.config)
        factory: Any = self._factory if options is None else TLSMemoryBIOFactory(options, False, self._factory)
        try:
            self.port = await endpoint.listen(factory)
        except Exception as e:
            raise AdminListenError(listen_failure_text("admin.listen", listen, e)) from e
        scheme = "https" if options is not None else "http"
        self._log.info("admin API listening on {scheme}://{address}/", scheme=scheme, address=str(self.address))

    def _listened(self, outcome: Optional[Failure]) -> None:
        self._listen_outcome = outcome
        waiters, self._listen_waiters = self._listen_waiters, []
        for d in waiters:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(None)

    def when_listening(self) -> Deferred[None]:
        """
        Fires once the API listens (at once when it is not to listen);
        fails with L{AdminListenError} if it cannot.
        """
        outcome = self._listen_outcome
        if outcome is _PENDING:
            d: Deferred[None] = Deferred()
            self._listen_waiters.append(d)
            return d
        if isinstance(outcome, Failure):
            return fail(outcome)
        return succeed(None)

    @property
    def open_connections(self) -> int:
        """
        How many HTTP connections are open.
        """
        return len(self._factory.protocols) if self._factory is not None else 0

    def stopService(self) -> Deferred[None]:
        """
        Stop sampling and counting, end the event streams, stop listening
        and close the open connections.

        @return: fires once they are closed.
        """
        super().stopService()
        self.traffic.stop()
        self.metrics.detach()
        self.feed.detach()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        port: Any = self.port
        self.port = None
        if port is not None:
            await maybeDeferred(port.stopListening)
        if self._factory is not None:
            await self._factory.close_all(self._reactor, CLOSE_GRACE)


_PENDING = object()
