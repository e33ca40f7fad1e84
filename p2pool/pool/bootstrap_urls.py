# -*- test-case-name: tests.test_seeds -*-
"""
Bootstrap URLs (C{[p2p] bootstrap_urls}): HTTPS documents holding a JSON
list of point strings (C{"host:port"} or C{"host:port#peer_id"}).

A L{SeedFetcher} fetches every URL when the pool starts, and again when
maintenance finds no candidate to dial, each URL at most once per back-off
delay (30 s doubling to 1 h, jittered). Points are registered non-trusted
with medium C{"seed"}; a C{#peer_id} pins the identity expected there.

Servers are verified with Twisted's C{optionsForClientTLS} (through
C{twisted.web.client.BrowserLikePolicyForHTTPS}), which checks the
certificate chain against the trust root (the system store, or
C{[p2p] seed_ca_file}) and the host name with C{service_identity}. Every
failure (TLS, HTTP status, timeout, oversized or non-JSON body, malformed
entry) is a C{seed_error} event and a log line; none stops the node.
"""

from __future__ import annotations

import ipaddress
import json
import random
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from hyperlink import EncodedURL
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import TimeoutError as TwistedTimeoutError
from twisted.internet.interfaces import IPushProducer, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IAgentEndpointFactory, IResponse
from zope.interface import implementer

from p2pool.core.addressing import AddressError, PeerId, Point, PointSpec
from p2pool.core.lifetime import weak_owner
from p2pool.events import EventKind
from p2pool.pool.contracts import IPoolReactor, SeedPool, installed_reactor

__all__ = [
    "MAX_BODY",
    "MAX_ENTRIES",
    "SeedError",
    "SeedFetcher",
    "load_trust_root",
    "parse_seed_document",
    "request_url",
    "tls_failure_reason",
    "url_group",
]

#: Largest seed document read, in bytes; a longer body is abandoned.
MAX_BODY = 1024 * 1024
#: Most entries taken from one document.
MAX_ENTRIES = 1000
#: Seconds allowed for one fetch: connection, TLS, request and body.
FETCH_TIMEOUT = 10.0
#: Back-off between two fetches of one URL: first delay, factor, cap.
BACKOFF_INITIAL = 30.0
BACKOFF_FACTOR = 2.0
BACKOFF_CAP = 3600.0
#: Random spread of each back-off delay, as a fraction of it.
BACKOFF_JITTER = 0.1


class _RequestURL(EncodedURL):
    """
    A URL that treq can request when its host is an IP address literal.

    treq makes every URL a URI with hyperlink's C{to_uri()}, which
    IDNA-encodes the host, and IDNA refuses the colons of an IPv6 literal
    (C{http://[::1]:8732}: hyperlink issues 68 and 188). Here an address
    host is left as it is and the rest of the URL encoded as usual.
    """

    def to_uri(self) -> EncodedURL:
        host = self.host
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return super().to_uri()
        # hyperlink's own encoding of everything but the host.
        placeholder: EncodedURL = self.replace(host="ip-literal.invalid")
        return EncodedURL.to_uri(placeholder).replace(host=host)


def request_url(url: str) -> EncodedURL:
    """
    C{url} as treq should be given it, so that a host written as an IPv6
    address (C{https://[2001:db8::1]/}) can be requested.
    """
    return _RequestURL.from_text(url)


class SeedError(Exception):
    """
    A seed URL could not be used; the message says why, for an operator.
    """


def load_trust_root(ca_file: str) -> Any:
    """
    A trust root (C{IOpenSSLTrustRoot}) holding every certificate of a PEM
    bundle.

    @raise SeedError: the file cannot be read or holds no certificate.
    """
    try:
        with open(ca_file, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SeedError(f"cannot read seed_ca_file {ca_file}: {e.strerror or e}") from None
    marker = b"-----BEGIN CERTIFICATE-----"
    blocks = [marker + part for part in data.split(marker)[1:]]
    try:
        certificates = [Certificate.loadPEM(block) for block in blocks]
    except Exception as e:
        raise SeedError(f"seed_ca_file {ca_file}: not a PEM certificate bundle: {e}") from None
    if not certificates:
        raise SeedError(f"seed_ca_file {ca_file}: no PEM certificate found")
    return trustRootFromCertificates(certificates)


def url_group(url: str) -> str:
    """
    The source group of the points a bootstrap URL serves: C{seed:} and the
    URL's host, so that the URLs of one host share one group.
    """
    host = urllib.parse.urlsplit(url).hostname or url
    return "seed:" + host[:250]


def parse_seed_document(body: bytes, max_entries: int = MAX_ENTRIES) -> tuple[list[PointSpec], list[str]]:
    """
    Parse a seed document: a JSON array of point strings.

    @return: the well-formed points, and one message per malformed entry.
    @raise SeedError: the body is not UTF-8 JSON, or not an array.
    """
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SeedError(f"body is not JSON: {e}") from None
    if not isinstance(document, list):
        raise SeedError(f"body is JSON but not an array of point strings (got {type(document).__name__})")
    specs: list[PointSpec] = []
    problems: list[str] = []
    if len(document) > max_entries:
        problems.append(f"{len(document) - max_entries} entries past the first {max_entries} ignored")
        document = document[:max_entries]
    for index, item in enumerate(document):
        if not isinstance(item, str):
            problems.append(f"entry {index}: expected a point string, got {type(item).__name__}")
            continue
        try:
            specs.append(PointSpec.parse(item))
        except AddressError as e:
            problems.append(f"entry {index}: {e}")
    return specs, problems


class _Abandon(Protocol):
    """
    Stops a response body at once.
    """

    def connectionMade(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]


class _CappedBody(Protocol):
    """
    Collects a response body, abandoning it past C{cap} bytes.
    """

    def __init__(self, cap: int, finished: Deferred[bytes]) -> None:
        self._cap = cap
        self._finished = finished
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._finished.called:
            return
        self._size += len(data)
        if self._size > self._cap:
            self._finished.errback(SeedError(f"body exceeds {self._cap} bytes"))
            self.transport.stopProducing()  # type: ignore[union-attr]
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        if self._finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._parts))
        else:
            self._finished.errback(reason)


def read_capped(response: IResponse, cap: int) -> Deferred[bytes]:
    """
    The body of C{response}, or a L{SeedError} once it exceeds C{cap} bytes
    (the transfer is then stopped). Cancelling stops the transfer.
    """
    protocol: _CappedBody | None = None

    def cancel(d: Deferred[bytes]) -> None:
        if protocol is not None and protocol.transport is not None:
            # IResponse.deliverBody gives the protocol an IPushProducer.
            cast(IPushProducer, protocol.transport).stopProducing()

    finished: Deferred[bytes] = Deferred(cancel)
    protocol = _CappedBody(cap, finished)
    response.deliverBody(protocol)
    return finished


@implementer(IAgentEndpointFactory)
class _SeedEndpointFactory:
    """
    HTTPS endpoints for the seed agent: TLS verified against the URL's host
    name, over TCP to that host, or to the address C{host_addresses} maps
    it to (tests).
    """

    def __init__(
        self,
        reactor: IPoolReactor,
        policy: BrowserLikePolicyForHTTPS,
        timeout: float,
        host_addresses: Mapping[str, str],
    ) -> None:
        self._reactor = reactor
        self._policy = policy
        self._timeout = timeout
        self._host_addresses = dict(host_addresses)

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        if uri.scheme != b"https":
            raise SeedError(f"only https:// URLs are fetched, not {uri.scheme.decode('ascii', 'replace')}://")
        host = uri.host.decode("ascii")
        address = self._host_addresses.get(host, host)
        tcp = HostnameEndpoint(self._reactor, address, uri.port, timeout=self._timeout)
        return wrapClientTLS(self._policy.creatorForNetloc(uri.host, uri.port), tcp)


def _nested(failure: Failure) -> list[Failure]:
    """
    The failures an HTTP client error wraps (C{ResponseNeverReceived},
    C{ResponseFailed}, C{RequestTransmissionFailed}, ...), or none.
    """
    reasons = getattr(failure.value, "reasons", None)
    if isinstance(reasons, list) and all(isinstance(r, Failure) for r in reasons):
        return reasons
    return []


def describe_failure(failure: Failure) -> str:
    """
    An operator-facing reason for a failed fetch: TLS verification, time
    out, connection failure, or the error itself.
    """
    reasons: list[Failure] = [failure]
    seen: list[str] = []
    while reasons:
        f = reasons.pop(0)
        nested = _nested(f)
        if nested:
            reasons.extend(nested)
            continue
        seen.append(_describe_one(f))
    return "; ".join(dict.fromkeys(seen)) or "unknown error"


def tls_failure_reason(failure: Failure) -> str | None:
    """
    The reason of a TLS verification failure (bad chain or host name)
    somewhere in a failed request, or C{None} when it failed otherwise.
    """
    from OpenSSL.SSL import Error as SSLError
    from service_identity import VerificationError

    reasons: list[Failure] = [failure]
    while reasons:
        f = reasons.pop(0)
        nested = _nested(f)
        if nested:
            reasons.extend(nested)
        elif f.check(VerificationError, SSLError):
            return _describe_one(f)
    return None


def _describe_one(failure: Failure) -> str:
    from OpenSSL.SSL import Error as SSLError
    from service_identity import VerificationError

    if failure.check(VerificationError):
        return f"TLS certificate does not match the host name: {failure.value}"
    if failure.check(SSLError):
        return f"TLS certificate verification failed: {failure.getErrorMessage()}"
    if failure.check(TwistedTimeoutError):
        return f"timed out: {failure.getErrorMessage()}"
    if failure.check(SeedError):
        return str(failure.value)
    return f"{type(failure.value).__name__}: {failure.getErrorMessage()}"


class SeedFetcher:
    """
    Fetches the bootstrap URLs of a pool and registers their points.

    @ivar fetches: completed fetches per URL (success or not).
    @ivar errors: failed fetches per URL.
    """

    _log = Logger()

    def __init__(
        self,
        pool: SeedPool,
        urls: Sequence[str],
        ca_file: str | None = None,
        *,
        reactor: IPoolReactor | None = None,
        http_client: Any = None,
        clock: IReactorTime | None = None,
        rng: random.Random | None = None,
        timeout: float = FETCH_TIMEOUT,
        max_body: int = MAX_BODY,
        host_addresses: Mapping[str, str] | None = None,
        resolve: Callable[[str], Deferred[str]] | None = None,
    ) -> None:
        """
        @param pool: the pool to register points with.
        @param urls: the https:// URLs.
        @param ca_file: a PEM CA bundle replacing the system trust store.
        @param reactor: makes the HTTPS connections; the global reactor by
            default.
        @param http_client: a treq C{HTTPClient} to use instead of the
            verified one built here (tests).
        @param clock: times out fetches and paces back-off; the reactor
            by default.
        @param host_addresses: host name to IP, bypassing DNS for the TCP
            connection only; the certificate is still checked against the
            host name (tests).
        @param resolve: host name to IP (a Deferred); the reactor's
            C{resolve} by default. Used for DNS names in seed documents.
        """
        self._pool = weak_owner(pool)
        self.urls = tuple(urls)
        if reactor is None:
            reactor = installed_reactor()
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else reactor
        self._rng = rng or random.Random()
        self._timeout = timeout
        self._max_body = max_body
        self._resolve = resolve if resolve is not None else self._reactor.resolve
        self._ca_file = ca_file
        self._host_addresses = dict(host_addresses or {})
        self._client = http_client
        self._delay: dict[str, float] = {url: BACKOFF_INITIAL for url in self.urls}
        self._next_allowed: dict[str, float] = {}
        self._running: dict[str, Deferred[int]] = {}
        self._started = False
        self.fetches: dict[str, int] = {url: 0 for url in self.urls}
        self.errors: dict[str, int] = {url: 0 for url in self.urls}

    def _http_client(self) -> Any:
        """
        The treq client, built on first use: an agent whose TLS verifies
        the host name against the configured trust root.
        """
        if self._client is None:
            trust_root = load_trust_root(self._ca_file) if self._ca_file is not None else None
            policy = BrowserLikePolicyForHTTPS(trustRoot=trust_root)
            factory = _SeedEndpointFactory(self._reactor, policy, self._timeout, self._host_addresses)
            agent = Agent.usingEndpointFactory(self._reactor, factory)
            self._client = HTTPClient(agent)
        return self._client

    def fetching(self) -> list[str]:
        """
        The URLs being fetched now.
        """
        return list(self._running)

    def start(self) -> Deferred[Any]:
        """
        Fetch every URL now.

        @return: fires when all these fetches ended (never fails).
        """
        self._started = True
        return self.request()

    def stop(self) -> None:
        """
        Cancel running fetches; later requests are ignored until L{start}.
        """
        self._started = False
        for d in list(self._running.values()):
            d.cancel()
        self._running.clear()

    def request(self) -> Deferred[Any]:
        """
        Fetch the URLs whose back-off allows it and that are not being
        fetched (maintenance calls this when it lacks candidates).

        @return: fires when those fetches ended (never fails).
        """
        if not self._started:
            return DeferredList([])
        now = self._clock.seconds()
        fetches = [
            self.fetch(url) for url in self.urls if url not in self._running and self._next_allowed.get(url, 0.0) <= now
        ]
        return DeferredList(fetches, consumeErrors=True)

    def fetch(self, url: str) -> Deferred[int]:
        """
        Fetch one URL now and register its points, then back off that URL.

        @return: fires with how many points were registered, or 0 after an
            error (reported as a C{seed_error} event); never fails.
        """
        delay = self._delay.get(url, BACKOFF_INITIAL)
        self._next_allowed[url] = self._clock.seconds() + delay * self._rng.uniform(
            1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER
        )
        self._delay[url] = min(delay * BACKOFF_FACTOR, BACKOFF_CAP)
        attempt = ensureDeferred(self._fetch(url))
        timed_out: list[bool] = []

        def time_out() -> None:
            timed_out.append(True)
            attempt.cancel()

        timer = self._clock.callLater(self._timeout, time_out)
        self._running[url] = attempt

        def done(result: Any) -> int:
            if timer.active():
                timer.cancel()
            if self._running.get(url) is attempt:
                del self._running[url]
            self.fetches[url] = self.fetches.get(url, 0) + 1
            if isinstance(result, Failure):
                if not self._started:
                    return 0
                self.errors[url] = self.errors.get(url, 0) + 1
                if timed_out:
                    reason = f"timed out after {self._timeout:g} s"
                else:
                    reason = describe_failure(result)
                self._pool.events.emit(EventKind.SEED_ERROR, url=url, reason=reason)
                self._log.error("bootstrap URL {url}: {reason}", url=url, reason=reason)
                return 0
            return int(result)

        attempt.addBoth(done)
        return attempt

    async def _fetch(self, url: str) -> int:
        client = self._http_client()
        response = await client.get(request_url(url), headers={"Accept": ["application/json"]})
        if response.code != 200:
            response.deliverBody(_Abandon())
            raise SeedError(f"HTTP status {response.code}")
        length = response.length
        if isinstance(length, int) and length > self._max_body:
            response.deliverBody(_Abandon())
            raise SeedError(f"body of {length} bytes exceeds {self._max_body} bytes")
        body = await read_capped(response, self._max_body)
        specs, problems = parse_seed_document(body)
        for problem in problems:
            self._pool.events.emit(EventKind.SEED_ERROR, url=url, reason=f"malformed entry skipped: {problem}")
            self._log.warn("bootstrap URL {url}: malformed entry skipped: {problem}", url=url, problem=problem)
        resolved: list[tuple[Point, PeerId | None]] = []
        for spec in specs:
            point = spec.point
            if point is None:
                try:
                    point = Point(await self._resolve(spec.host), spec.port)
                except Exception as e:
                    reason = f"cannot resolve {spec}: {e}"
                    self._pool.events.emit(EventKind.SEED_ERROR, url=url, reason=reason)
                    self._log.warn("bootstrap URL {url}: {reason}", url=url, reason=reason)
                    continue
            resolved.append((point, spec.expected_peer_id))
        pool = self._pool
        pool.register_list_of_new_points(
            [p for p, _ in resolved], medium="seed", source=url, source_group=url_group(url)
        )
        for point, peer_id in resolved:
            if peer_id is not None:
                pool.set_expected_peer_id(point, peer_id)
        pool.events.emit(
            EventKind.SEED_FETCHED, url=url, points=len(resolved), skipped=len(specs) - len(resolved) + len(problems)
        )
        self._log.info("bootstrap URL {url}: {points} points", url=url, points=len(resolved))
        return len(resolved)
