"""
Helpers for the admin API tests: an in-memory harness (two pools on a
L{MemoryNetwork}, the first one's admin resource behind C{StubTreq}) and
real admin services on loopback addresses.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import treq
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

from p2pool.admin import AdminService
from p2pool.config import AdminConfig
from p2pool.core.addressing import Point
from p2pool.pool.service import Pool
from p2pool.testing.network import MemoryNetwork

IP_A = "10.0.0.1"
IP_B = "10.0.0.2"
#: A valid bearer token for tests.
TOKEN = "test-token_0123456789~abcdef"


@attrs.frozen
class Result:
    """
    One HTTP reply: status, headers and body.
    """

    code: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name.encode("ascii"))
        return values[-1].decode("latin-1") if values else None


def settle(network: MemoryNetwork, stub: StubTreq, d: Deferred[Any], seconds: float) -> list[Any]:
    """
    Run C{network} and C{stub} until C{d} fires, for at most C{seconds} of
    simulated time: its result (or failure) in a one-item list, or an
    empty list if it did not fire.
    """
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    for _ in range(int(seconds / 0.05)):
        stub.flush()
        if outcome:
            break
        network.advance(0.05)
    return outcome


class MemoryAdmin:
    """
    Pools A and B on a simulated network (maintenance off), and A's admin
    API served in memory.
    """

    def __init__(self, test: Any, token: str = "", **config: Any) -> None:
        settings = {"maintenance_idle_time": None, **config}
        self.network = MemoryNetwork(seed=7)
        self.a = self.network.add_pool(IP_A, **settings)
        self.b = self.network.add_pool(IP_B, **settings)
        self.admin = AdminService(self.a, AdminConfig(listen=None, token=token), reactor=self.network.reactor(IP_A))
        self.admin.startService()
        self.stub = StubTreq(self.admin.resource)
        test.addCleanup(self.stop)

    def stop(self) -> None:
        if self.admin.running:
            self.admin.stopService()
        self.network.stop()

    def start_request(
        self, method: str, path: str, body: Any = None, headers: dict[str, Any] | None = None
    ) -> Deferred[Any]:
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        return self.stub.request(method, "http://127.0.0.1" + path, data=data, headers=headers)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, Any] | None = None, seconds: float = 20.0
    ) -> Result:
        """
        Send a request and return its reply, letting at most C{seconds} of
        simulated time pass.
        """
        d = self.start_request(method, path, body, headers)
        d.addCallback(lambda r: treq.content(r).addCallback(lambda c: Result(r.code, r.headers, c)))
        outcome = settle(self.network, self.stub, d, seconds)
        assert outcome, f"no reply to {method} {path} within {seconds} simulated seconds"
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        result: Result = outcome[0]
        return result

    def get(self, path: str, **kw: Any) -> Any:
        """
        The JSON of a successful GET.
        """
        result = self.request("GET", path, **kw)
        assert result.code == 200, (path, result)
        return result.json()

    def connect(self) -> None:
        """
        Connect A to B and wait for it.
        """
        done: list[Any] = []
        self.a.connect(Point(IP_B, 9732)).addBoth(done.append)
        self.network.run_until(lambda: bool(done) and self.b.active_connections() == 1, timeout=10)
        assert self.a.active_connections() == 1, done


def http_client(test: Any) -> HTTPClient:
    """
    A treq client on the real reactor that does not keep connections.
    """
    pool = HTTPConnectionPool(reactor, persistent=False)
    test.addCleanup(pool.closeCachedConnections)
    return HTTPClient(Agent(reactor, pool=pool))


async def start_admin(test: Any, pool: Pool, ip: str, token: str = "", **config: Any) -> AdminService:
    """
    Serve C{pool}'s admin API on C{ip}, any port, with more C{[admin]}
    settings in C{config}; stopped when the test ends.
    """
    service = AdminService(pool, AdminConfig(listen=Point(ip, 0), token=token, **config))
    service.startService()
    test.addCleanup(lambda: service.stopService() if service.running else None)
    await service.when_listening()
    return service


def base_url(service: AdminService) -> str:
    address = service.address
    assert address is not None
    return f"http://{address}"
