# -*- test-case-name: tests.test_admin -*-
"""
The admin HTTP service of a node: the L{AdminResource} served by
twisted.web on C{[admin] listen}, with the traffic sampler, the metrics and
the event feed it draws on.
"""

from __future__ import annotations

import io
import re
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IDelayedCall, IListeningPort, IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Request, Site

from p2pool.admin.feed import EventFeed
from p2pool.admin.limits import ConnectionTable, Phase
from p2pool.admin.metrics import AdminCollector, PoolMetrics
from p2pool.admin.resources import MAX_BODY_SIZE, AdminResource
from p2pool.admin.traffic import TrafficSampler
from p2pool.config import AdminConfig
from p2pool.core.addressing import Point
from p2pool.errors import listen_failure_text
from p2pool.pool.contracts import IPoolReactor, installed_reactor
from p2pool.pool.refusals import RefusalLog, RefusalSummary
from p2pool.pool.service import Pool

__all__ = ["AdminChannel", "AdminListenError", "AdminService", "AdminSite"]

#: Seconds open connections get to close when the service stops, and an
#: idle connection closed for a newcomer gets to deliver what it was
#: answered.
CLOSE_GRACE = 2.0
#: Connections the kernel queues until the API accepts them (capped by the
#: system's C{net.core.somaxconn}). With Twisted's default of 50, a burst of
#: slowloris reconnections filled the queue and the kernel dropped a fresh
#: client's SYN, which the client sends again only after 1 s.
LISTEN_BACKLOG = 1024
#: The one application protocol offered over TLS (ALPN). A server that
#: offers none answers a client offering ALPN (curl, every browser) with a
#: TLS internal-error alert.
ALPN_PROTOCOLS = [b"http/1.1"]


class AdminListenError(Exception):
    """
    The admin API could not listen on C{[admin] listen}.
    """


_PRIVATE_KEY_PEM = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)


def load_tls_options(config: AdminConfig) -> CertificateOptions | None:
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
        raise AdminListenError(
            f"admin.tls_certificate: {config.tls_certificate} is not a PEM certificate: {e}"
        ) from None
    key_name, key_path = (
        ("admin.tls_key", config.tls_key)
        if config.tls_key is not None
        else ("admin.tls_certificate", config.tls_certificate)
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
        # Twisted annotates these as pyOpenSSL's PKey and X509, but hands
        # them to pyOpenSSL, which takes cryptography's key and certificates.
        options = CertificateOptions(
            privateKey=private_key,  # type: ignore[arg-type]
            certificate=certificates[0],  # type: ignore[arg-type]
            extraCertChain=certificates[1:],  # type: ignore[arg-type]
            raiseMinimumTo=TLSVersion.TLSv1_2,
            acceptableProtocols=ALPN_PROTOCOLS,
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

    def gotLength(self, length: int | None) -> None:
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


class AdminChannel(HTTPChannel):
    """
    One HTTP/1.1 connection to the admin API. It tells its site's
    L{ConnectionTable} which L{Phase} it is in, and bounds each phase in
    time: a client must send a whole request (line, headers and body)
    within C{request_timeout} seconds of opening the connection or of the
    request's first byte, or the connection is aborted (slowloris); a
    keep-alive connection idle for C{idle_timeout} seconds is closed. While
    a request is being answered (a stream of C{/network/log} included) no
    deadline runs.

    (Twisted's own idle timeout restarts at every byte received, so a
    client sending a header line every few seconds never met it.)
    """

    site: AdminSite
    #: The client's address.
    address = ""
    _phase = Phase.READING
    _deadline: IDelayedCall | None = None
    #: Requests fully received and fully answered.
    _received = 0
    _answered = 0
    #: Bytes arrived while a request was being answered (a pipelined one).
    _early = False

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]  # unannotated in Twisted
        peer: Any = self.getPeer()  # type: ignore[no-untyped-call]  # unannotated in Twisted
        self.address = str(getattr(peer, "host", ""))
        self.site.opened(self, self.address)
        self._enter(Phase.READING)

    def dataReceived(self, data: bytes) -> None:
        if self._phase is Phase.IDLE:
            self._enter(Phase.READING)
        elif self._phase is Phase.BUSY:
            self._early = True
        super().dataReceived(data)  # type: ignore[no-untyped-call]  # unannotated in Twisted

    def allContentReceived(self) -> None:
        self._received += 1
        self._early = False
        self._enter(Phase.BUSY)
        super().allContentReceived()  # type: ignore[no-untyped-call]  # unannotated in Twisted

    def requestDone(self, request: Any) -> None:
        self._answered += 1
        super().requestDone(request)  # type: ignore[no-untyped-call]  # unannotated in Twisted
        # super() may have gone on with a pipelined request (BUSY again).
        if self._answered == self._received and self.transport is not None:
            self._enter(Phase.READING if self._early or self.requests else Phase.IDLE)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self._cancel_deadline()
        self.site.closed(self)
        super().connectionLost(reason)  # type: ignore[no-untyped-call]  # unannotated in Twisted

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _enter(self, phase: Phase) -> None:
        self._cancel_deadline()
        self._phase = phase
        self.site.connections.set_phase(self, phase)
        if phase is Phase.READING:
            self._deadline = self.callLater(self.site.request_timeout, self._request_timed_out)  # type: ignore[no-untyped-call]  # unannotated in Twisted
        elif phase is Phase.IDLE:
            self._deadline = self.callLater(self.site.idle_timeout, self._idle_timed_out)  # type: ignore[no-untyped-call]  # unannotated in Twisted

    def _request_timed_out(self) -> None:
        self._deadline = None
        self.site.refusals.refused("request_timeout", self.address)
        self.shed()

    def _idle_timed_out(self) -> None:
        self._deadline = None
        if self.transport is not None:
            cast(Any, self.transport).loseConnection()

    def close_idle(self, grace: float) -> None:
        """
        Close this idle connection for a newcomer: what it was answered is
        still delivered (a client that asked for the close may not have
        received it yet), and the connection is aborted if that takes more
        than C{grace} seconds.
        """
        self._cancel_deadline()
        if self.transport is None:
            return
        if not getattr(self.transport, "disconnecting", False):
            # (A client that asked for the close is already being closed.)
            self.loseConnection()  # type: ignore[no-untyped-call]  # unannotated in Twisted
        self._deadline = self.callLater(grace, self.shed)  # type: ignore[no-untyped-call]  # unannotated in Twisted

    def shed(self) -> None:
        """
        Close this connection at once, whatever it was doing.
        """
        self._cancel_deadline()
        if self.transport is not None:
            cast(Any, self.transport).abortConnection()


class AdminSite(Site):
    """
    The admin site: capped request bodies, per-phase deadlines (see
    L{AdminChannel}), and requests logged at debug level without their
    query strings (which may hold the dashboard's token).

    @ivar connections: the table that caps connections and picks who gives
        way to a newcomer.
    @ivar refusals: counts (and summarises in the log) connections refused,
        shed and timed out.
    """

    requestFactory = AdminRequest
    protocol = AdminChannel  # type: ignore[assignment]
    noisy = False
    _log = Logger()

    def __init__(
        self,
        resource: Any,
        connections: ConnectionTable[AdminChannel],
        refusals: RefusalLog,
        request_timeout: float,
        idle_timeout: float,
        reactor: IReactorTime,
    ) -> None:
        super().__init__(resource, timeout=None, reactor=reactor)  # type: ignore[no-untyped-call]  # unannotated in Twisted
        self.connections = connections
        self.refusals = refusals
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.open: set[AdminChannel] = set()
        self._all_closed: list[Deferred[None]] = []

    def acceptableProtocols(self) -> list[bytes]:
        """
        The protocols offered over TLS (ALPN): HTTP/1.1 only, which is all
        L{AdminChannel} speaks, even when Twisted could offer HTTP/2.
        """
        return list(ALPN_PROTOCOLS)

    def log(self, request: Any) -> None:
        self._log.debug(
            "admin API: {method} {path} {code}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("utf-8", "replace"),
            code=request.code,
        )

    def admit(self, address: str) -> bool:
        """
        Whether to open a new connection from C{address}, closing the
        connections that give way to it.
        """
        admission = self.connections.admit(address)
        for channel, reason in admission.shed:
            self.refusals.refused(reason, channel.address)
            if reason == "shed_idle":
                channel.close_idle(CLOSE_GRACE)
            else:
                channel.shed()
        if admission.refusal is not None:
            self.refusals.refused(admission.refusal, address)
        return admission.admitted

    def opened(self, channel: AdminChannel, address: str) -> None:
        """
        A channel's connection is up.
        """
        self.open.add(channel)
        self.connections.add(channel, address)

    def closed(self, channel: AdminChannel) -> None:
        """
        A channel's connection is down.
        """
        self.connections.remove(channel)
        self.open.discard(channel)
        if not self.open:
            waiters, self._all_closed = self._all_closed, []
            for d in waiters:
                d.callback(None)

    def close_all(self, clock: IReactorTime, grace: float) -> Deferred[None]:
        """
        Close every connection; those still open after C{grace} seconds are
        aborted.

        @return: fires once none is open.
        """
        if not self.open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._all_closed.append(d)
        for channel in list(self.open):
            channel.loseConnection()  # type: ignore[no-untyped-call]  # unannotated in Twisted

        def abort() -> None:
            for channel in list(self.open):
                channel.shed()

        call = clock.callLater(grace, abort)

        def closed(result: None) -> None:
            if call.active():
                call.cancel()
            return result

        return d.addBoth(closed)


class _Admission(Factory):
    """
    Asks the site whether to accept each TCP connection before anything
    is built for it (TLS included), then builds it with C{inner}.
    """

    noisy = False

    def __init__(self, site: AdminSite, inner: Any) -> None:
        self._site = site
        self._inner = inner

    def logPrefix(self) -> str:
        """
        What the listening port's log lines call it (C{admin API starting
        on 8732}), rather than this class's name.
        """
        return "admin API"

    def startFactory(self) -> None:
        self._inner.doStart()

    def stopFactory(self) -> None:
        self._inner.doStop()

    def buildProtocol(self, addr: IAddress | None) -> Any:
        if not self._site.admit(str(getattr(addr, "host", ""))):
            return None
        return self._inner.buildProtocol(addr)


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

    def __init__(self, pool: Pool, config: AdminConfig | None = None, reactor: IPoolReactor | None = None) -> None:
        """
        @param config: where to listen and the token; default: the pool's
            C{config.admin}. C{listen = None} serves nothing over the
            network (only L{resource}).
        @param reactor: the pool's reactor (default: the global one).
        """
        if reactor is None:
            reactor = installed_reactor()
        self.pool = pool
        self.config = config if config is not None else pool.config.admin
        self._reactor = reactor
        self.traffic = TrafficSampler(pool, reactor)
        self.metrics = PoolMetrics(pool)
        self.feed = EventFeed(pool)
        self.resource = AdminResource(
            pool, token=self.config.token, traffic=self.traffic, metrics=self.metrics, feed=self.feed, clock=reactor
        )
        self.connections: ConnectionTable[AdminChannel] = ConnectionTable(
            self.config.max_connections, self.config.max_connections_per_address
        )
        self.refusals = RefusalLog(reactor, pool.config.refusal_log_interval, self._report_refusals)
        self.metrics.registry.register(AdminCollector(self.connections, self.refusals))
        self.port: IListeningPort | None = None
        self._site: AdminSite | None = None
        self._listen_outcome: Any | None = None
        self._listen_waiters: list[Deferred[None]] = []

    @property
    def address(self) -> Point | None:
        """
        The address and port the API listens on, once it does.
        """
        if self.port is None:
            return None
        host: Any = cast(Any, self.port).getHost()
        return Point(host.host, host.port)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # unannotated in Twisted
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
        endpoint = endpoint_type(self._reactor, listen.port, backlog=LISTEN_BACKLOG, interface=listen.ip)
        config = self.config
        site = self._site = AdminSite(
            self.resource, self.connections, self.refusals, config.request_timeout, config.idle_timeout, self._reactor
        )
        options = load_tls_options(config)
        inner: Any = site if options is None else TLSMemoryBIOFactory(options, False, cast(Any, site))
        factory = _Admission(site, inner)
        try:
            self.port = await endpoint.listen(factory)  # type: ignore[no-untyped-call]  # unannotated in Twisted
        except Exception as e:
            raise AdminListenError(listen_failure_text("admin.listen", listen, e)) from e
        scheme = "https" if options is not None else "http"
        self._log.info("admin API listening on {scheme}://{address}/", scheme=scheme, address=str(self.address))

    def _listened(self, outcome: Failure | None) -> None:
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
        return len(self._site.open) if self._site is not None else 0

    def stopService(self) -> Deferred[None]:
        """
        Stop sampling and counting, end the event streams, stop listening
        and close the open connections.

        @return: fires once they are closed.
        """
        super().stopService()  # type: ignore[no-untyped-call]  # unannotated in Twisted
        self.traffic.stop()
        self.metrics.detach()
        self.feed.detach()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        port: Any = self.port
        self.port = None
        if port is not None:
            await maybeDeferred(port.stopListening)
        if self._site is not None:
            await self._site.close_all(self._reactor, CLOSE_GRACE)
        self.refusals.stop()

    def _report_refusals(self, summary: RefusalSummary) -> None:
        self._log.info("admin API: connections refused or closed: {summary}", summary=summary.describe())


_PENDING = object()
