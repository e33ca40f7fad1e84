"""
Attacks on a p2pool node (issue 13): each case runs the node under attack
in its own process on loopback, the attacker (and, for gossip, a publisher)
in others, and measures from this process, which is also an honest peer.

Cases:

- ``slow_reader``: the node runs the gossip example; a publisher sends 64
  KiB gossip messages at ``--rate`` per second; the attacker completes the
  handshake and never reads. Measured: node RSS, when and how the attacker
  was cut, honest round trip.
- ``ping_flood``: the attacker writes packed Ping frames as fast as its
  socket takes them and never reads the Pongs. Measured: node RSS and CPU,
  honest round trip, admin API latency.
- ``silent_reader``: like ``slow_reader`` with keepalive on and the
  no-progress abort out of the way: the node's ``idle_timeout`` close must
  free the socket within its grace period.
- ``async_app``: the node's application handles one message per 100 ms
  (it returns a Deferred per message); a sender sends 64 KiB numbered
  messages as fast as the node lets it. Measured: node RSS, messages
  delivered, order and loss.
- ``eviction`` (issue 14): cheap identities from 9 /16s (127.201-209.x)
  fill a node's connection slots, with a top-scored peer (it sent useful
  gossip) and a trusted one (trusted through the admin API) among them;
  then newcomers from other /16s dial. Measured on a node with inbound
  eviction and, as the baseline, on the same node with
  ``eviction_protection = false``: which newcomers get in, who is evicted.
- ``advertise_flood`` (issue 14): the node starts with 300 points that have
  connected before (its peers file) and maintenance on; 8 connections from
  one /16 (127.66.0.0/16) send Advertise frames of 100 random points as fast
  as the node takes them. Measured: the flood's share of the known-points
  table, the points that had connected still known, and the node's dials to
  flooded points per second against ``source_group_dial_burst +
  source_group_dial_rate * t``. Its baseline is the same run against a node
  whose bounds are lifted (``max_source_group_share = 1``, an unlimited dial
  budget).

Issue 14 (fair admission, the admin API, quiet refusals), with attackers
in other 127.x.0.0/16 groups, each a network group for the node
(``netgroup_cap_exempts_loopback`` stays off):

- ``stalled_handshakes``: 60 TLS connections that never send a Hello, from
  64 addresses in two /16s, each reopened 50 ms after it closes; an honest
  peer from a third /16 dials the node every 0.5 s and closes each
  connection once established. Measured: the share of its handshakes that
  complete, the attacker addresses greylisted.
- ``slowloris``: 1,000 connections to the admin API from 4 addresses, one
  header line each every 10 s, closed ones reopened every 10 s; a fresh
  client from a fifth address sends ``GET /network/connections`` on a new
  connection every 100 ms. Measured: its latency and failures.
- ``handshake_flood``: 32 connections at once from 32 addresses in four
  /16s, each sending a one-byte Hello after TLS and reopened at once, for
  90 s; the node logs as twistd does at the defaults. Measured: the log's
  growth per minute.

Each case first measures the same node with its honest peers and no
attacker (the baseline, same run), then under attack. The honest round trip
is an application echo: this process sends a small message, the node's
application sends it back. Admin latency is ``GET /network/connections``.

    PYTHONPATH=. /work/venv/bin/python bench/attack.py            # full
    PYTHONPATH=. /work/venv/bin/python bench/attack.py --quick    # <= 20 s, CI

Prints progress on stderr and one JSON object on stdout; exits 0 when every
case ran (the targets are reported as ``targets`` with ``met`` flags, not
asserted).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import (  # noqa: E402
    check_loopback,
    emit,
    env_info,
    log,
    quiet_twisted_logging,
    raise_nofile,
    vmrss_kib,
)

CASES = (
    "slow_reader",
    "ping_flood",
    "silent_reader",
    "async_app",
    "eviction",
    "advertise_flood",
    "stalled_handshakes",
    "slowloris",
    "handshake_flood",
)
ECHO = b"ECHO"
SEQ = struct.Struct("!Q")
MIB = 1024 * 1024


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _pool(ip: str, data_dir: str, app: Any = None, **config: Any) -> Any:
    from p2pool.config import PoolConfig
    from p2pool.core.addressing import Point
    from p2pool.core.identity import Identity
    from p2pool.pool.service import Pool

    settings: dict[str, Any] = dict(
        listen=Point(_loopback_ip(ip), 0),
        expected_proof_of_work=0,
        maintenance_idle_time=None,
        keepalive_interval=None,
        data_dir=data_dir,
        admin=__import__("p2pool.config", fromlist=["AdminConfig"]).AdminConfig(listen=None),
    )
    settings.update(config)
    return Pool(PoolConfig(**settings), app, identity=Identity.generate(0))


# -- the node under attack (child process) --------------------------------------


def node_main(args: argparse.Namespace) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.task import LoopingCall

    from p2pool.config import AdminConfig
    from p2pool.core.addressing import Point
    from p2pool.daemon.node import make_node_service
    from p2pool.examples.gossip import Gossip

    if args.log_file:
        _log_to(args.log_file)
    else:
        quiet_twisted_logging()
    raise_nofile(8192)
    overrides = json.loads(args.overrides)
    stats: dict[str, Any] = {"handled": 0, "in_order": True, "next": 0}
    pending: list[Deferred[None]] = []
    events: list[dict[str, Any]] = []
    watched = {
        "send_stalled",
        "close_timeout",
        "idle_timeout",
        "disconnection",
        "external_disconnection",
        "send_queue_full",
        "peer_evicted",
        "outgoing_connection",
        "greylisted_addr",
    }

    class EchoGossip(Gossip):
        def message_received(self, conn: Any, data: bytes) -> Any:
            if data.startswith(ECHO):
                conn.send_when_room(data)
                return None
            return super().message_received(conn, data)

    class AsyncApp(EchoGossip):
        """
        Takes one message per 100 ms: each message_received returns a
        Deferred fired by a 10/s loop, in order.
        """

        def message_received(self, conn: Any, data: bytes) -> Any:
            if data.startswith(ECHO):
                conn.send_when_room(data)
                return None
            (seq,) = SEQ.unpack_from(data)
            if seq != stats["next"]:
                stats["in_order"] = False
            stats["next"] = seq + 1
            d: Deferred[None] = Deferred()
            pending.append(d)
            return d

    def handle_one() -> None:
        if pending:
            pending.pop(0).callback(None)
            stats["handled"] += 1

    app = AsyncApp() if args.app == "async" else EchoGossip()
    from p2pool.config import PoolConfig
    from p2pool.core.identity import Identity

    settings: dict[str, Any] = dict(
        listen=Point(check_loopback(args.ip), 0),
        expected_proof_of_work=0,
        maintenance_idle_time=None,
        keepalive_interval=None,
        data_dir=args.data_dir,
        admin=AdminConfig(listen=Point(args.ip, 0)),
    )
    settings.update(overrides)
    service = make_node_service(PoolConfig(**settings), app=app, reactor=reactor)
    pool = service.pool
    pool.identity = Identity.generate(0)
    app.attach(pool)

    def on_event(event: Any) -> None:
        if event.event in watched:
            events.append({"t": time.time(), **event.to_json()})

    pool.events.callbacks.append(on_event)
    service.startService()
    if args.app == "async":
        LoopingCall(handle_one).start(0.1, now=False)

    def report() -> None:
        fields = {
            "t": time.time(),
            "rss_kib": vmrss_kib(),
            "cpu_s": time.process_time(),
            "connections": pool.active_connections(),
            "budget_used": pool.flow.budget.used,
            "handled": stats["handled"],
            "in_order": stats["in_order"],
            "next_seq": stats["next"],
            "relayed": app.stats.relayed,
            "skipped": app.stats.skipped,
            "known_points": pool.directory.point_count(),
            "connected_before": sum(1 for info in pool.directory.points() if info.has_connected),
            "learnt_groups": pool.directory.learnt_groups(),
            "dials_deferred": pool.dial_budget.deferred,
            "events": events[:],
            **_admission_fields(pool, service.admin),
        }
        events.clear()
        print(json.dumps(fields), flush=True)

    def ready(_: object) -> None:
        admin_port = service.admin.port.getHost().port if service.admin is not None else None  # type: ignore[union-attr]
        port = pool.listening_port.getHost().port  # type: ignore[union-attr]
        print(
            json.dumps({"ready": True, "port": port, "peer_id": str(pool.peer_id), "admin_port": admin_port}),
            flush=True,
        )
        LoopingCall(report).start(0.5)

    def admin_ready() -> Any:
        return service.admin.when_listening() if service.admin is not None else None  # type: ignore[union-attr]

    d = pool.when_started()
    d.addCallback(lambda _: admin_ready())
    d.addCallback(ready)
    reactor.run()


# -- attackers and publishers (child processes) -----------------------------------


def peer_main(args: argparse.Namespace) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall

    from p2pool.core.addressing import PeerId, Point, PointSpec
    from p2pool.core.wire import Ping, encode
    from p2pool.examples.gossip import GossipMessage
    from p2pool.interfaces import BasePoolApplication

    quiet_twisted_logging()

    class App(BasePoolApplication):
        def connection_lost(self, conn: Any, reason: Any) -> None:
            print(json.dumps({"lost": time.time(), "reason": reason.reason.value}), flush=True)

    pool = _pool(args.ip, args.data_dir, App(), trusted_points=())
    pool.startService()
    target = PointSpec(check_loopback(args.node_ip), args.port, PeerId.parse(args.peer_id))

    def connected(conn: Any) -> None:
        print(json.dumps({"connected": time.time(), "peer_id": str(pool.peer_id)}), flush=True)
        if args.kind in ("slow_reader", "silent_reader", "ping_flood"):
            conn.pause_reading()
        if args.kind == "ping_flood":
            burst = encode(Ping()) * 13000  # 65 KB per write
            protocol = conn._protocol  # the attacker bypasses the pool's own bounds

            def flood() -> None:
                for _ in range(16):
                    if not conn.is_open or not protocol.send_queue.writable:
                        return
                    protocol.write(burst)

            LoopingCall(flood).start(0.002)
        elif args.kind == "publisher":
            payload = os.urandom(64 * 1024 - 64)
            interval = 1.0 / args.rate

            def publish() -> None:
                if conn.is_open:
                    message = GossipMessage(os.urandom(16), 4, payload).encode()
                    conn.send_when_room(message).addErrback(lambda f: None)

            LoopingCall(publish).start(interval)
        elif args.kind == "sender":
            state = {"seq": 0}
            payload = b"s" * (64 * 1024 - 8)

            def more(_: object = None) -> None:
                if conn.is_open:
                    state["seq"] += 1
                    d = conn.send_when_room(SEQ.pack(state["seq"] - 1) + payload)
                    d.addCallbacks(more, lambda f: None)

            more()

            def report() -> None:
                print(json.dumps({"sent": state["seq"], "t": time.time()}), flush=True)

            LoopingCall(report).start(0.5)

    def start() -> None:
        pool.when_started().addCallback(lambda _: pool.connect(Point(target.host, target.port))).addCallbacks(
            connected, lambda f: print(json.dumps({"error": f.getErrorMessage()}), flush=True)
        )

    _start_when_told(start, args.wait_go)
    reactor.run()


def _start_when_told(start: Any, wait_go: bool) -> None:
    """
    Call C{start} in the reactor: at once, or with C{wait_go} once the
    parent writes a line on standard input (L{_Child.go}).
    """
    from twisted.internet import reactor

    if not wait_go:
        start()
        return
    import threading

    def wait() -> None:
        sys.stdin.readline()
        reactor.callFromThread(start)  # type: ignore[attr-defined]

    threading.Thread(target=wait, daemon=True).start()


# -- the measuring parent -----------------------------------------------------------


class _Child:
    """
    A child process whose JSON lines are collected by a reader thread.
    """

    def __init__(self, argv: list[str]) -> None:
        import threading

        self.lines: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    def go(self, line: str = "go") -> None:
        """
        Tell a process started with C{--wait-go} to begin (a crowd reads
        its targets from C{line}).
        """
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def first(self, key: str) -> dict[str, Any] | None:
        return next((line for line in self.lines if key in line), None)

    def stop(self) -> None:
        """
        Kill the process (nothing of it is needed after the measurement).
        """
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _spawn(role: str, *extra: str) -> _Child:
    return _Child([sys.executable, os.path.abspath(__file__), "--role", role, *extra])


async def _until(predicate: Any, timeout: float, what: str) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.05, lambda: None)


class _Probe:
    """
    This process as an honest peer: echo round trips through the node's
    application every 50 ms, admin requests every 200 ms.
    """

    def __init__(self, conn: Any, node_ip: str, admin_port: int) -> None:
        from twisted.internet import reactor
        from twisted.internet.task import LoopingCall
        from twisted.web.client import Agent

        self.conn = conn
        self.rtts: list[float] = []
        self.admin: list[float] = []
        self._sent: dict[int, float] = {}
        self._seq = 0
        self._agent = Agent(reactor)
        self._url = f"http://{node_ip}:{admin_port}/network/connections".encode()
        self._loops = [LoopingCall(self._ping), LoopingCall(self._get)]
        self._busy = False

    def start(self) -> None:
        self._loops[0].start(0.05)
        self._loops[1].start(0.2)

    def stop(self) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()

    def reset(self) -> None:
        self.rtts, self.admin = [], []

    def _ping(self) -> None:
        if not self.conn.is_open:
            return
        self._seq += 1
        self._sent[self._seq] = time.monotonic()
        try:
            self.conn.send(ECHO + SEQ.pack(self._seq))
        except Exception:
            self._sent.pop(self._seq, None)

    def echoed(self, data: bytes) -> None:
        (seq,) = SEQ.unpack_from(data, len(ECHO))
        sent = self._sent.pop(seq, None)
        if sent is not None:
            self.rtts.append((time.monotonic() - sent) * 1000)

    def _get(self) -> None:
        if self._busy:
            return
        from twisted.web.client import readBody

        self._busy = True
        started = time.monotonic()
        d = self._agent.request(b"GET", self._url)
        d.addCallback(readBody)

        def done(_: object) -> None:
            self._busy = False
            self.admin.append((time.monotonic() - started) * 1000)

        d.addBoth(done)

    def summary(self) -> dict[str, Any]:
        return {
            "rtt_ms_p50": _percentile(self.rtts, 0.5),
            "rtt_ms_p99": _percentile(self.rtts, 0.99),
            "rtt_samples": len(self.rtts),
            "admin_ms_p50": _percentile(self.admin, 0.5),
            "admin_ms_p99": _percentile(self.admin, 0.99),
            "admin_samples": len(self.admin),
        }


def _series(node: _Child, since: float) -> list[dict[str, Any]]:
    return [line for line in node.lines if "rss_kib" in line and line["t"] >= since]


def _rss_mib(samples: list[dict[str, Any]]) -> dict[str, Any]:
    values = [s["rss_kib"] / 1024 for s in samples]
    if not values:
        return {}
    return {"start": round(values[0], 1), "max": round(max(values), 1), "end": round(values[-1], 1)}


def _cpu_share(samples: list[dict[str, Any]]) -> float | None:
    if len(samples) < 2:
        return None
    return round((samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / (samples[-1]["t"] - samples[0]["t"]), 3)


def _events(node: _Child, since: float) -> list[dict[str, Any]]:
    return [e for line in _series(node, since) for e in line["events"]]


async def run_case(case: str, args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    from twisted.internet import defer, reactor  # noqa: F401
    from twisted.internet.task import deferLater

    from p2pool.core.addressing import Point
    from p2pool.interfaces import BasePoolApplication

    if case in ISSUE14_CASES:
        return await ISSUE14_CASES[case](args, tmp)
    if case == "eviction":
        return await run_eviction(args, tmp)
    if case == "advertise_flood":
        return await run_advertise_flood(args, tmp)
    quick = args.quick
    base = 40 + 10 * CASES.index(case)
    node_ip, honest_ip, attacker_ip, publisher_ip = (f"127.0.0.{base + i}" for i in range(4))
    baseline_s = 1.0 if quick else 10.0
    if quick:
        attack_s = {"slow_reader": 4.0, "ping_flood": 2.0, "silent_reader": 4.0, "async_app": 2.0}[case]
    else:
        attack_s = {"slow_reader": 120.0, "ping_flood": 60.0, "silent_reader": 60.0, "async_app": 60.0}[
            case
        ] * args.scale
    stall = 1.5 if quick else 30.0
    keepalive = 0.5 if quick else 5.0
    overrides: dict[str, Any] = {"send_stall_timeout": stall}
    if case == "silent_reader":
        overrides = {"keepalive_interval": keepalive, "send_stall_timeout": 3600.0}
    node = _spawn(
        "node",
        "--ip",
        node_ip,
        "--data-dir",
        os.path.join(tmp, case),
        "--overrides",
        json.dumps(overrides),
        "--app",
        "async" if case == "async_app" else "gossip",
    )
    children = [node]
    probe: _Probe | None = None
    honest = None
    try:
        await _until(lambda: node.first("ready") is not None, 30, "the node")
        ready = node.first("ready")
        assert ready is not None

        class Honest(BasePoolApplication):
            def message_received(self, conn: Any, data: bytes) -> None:
                if data.startswith(ECHO) and probe is not None:
                    probe.echoed(data)

        honest = _pool(honest_ip, os.path.join(tmp, case + "-honest"), Honest())
        honest.startService()
        await honest.when_started()
        conn = await honest.connect(Point(node_ip, ready["port"]))
        probe = _Probe(conn, node_ip, ready["admin_port"])
        probe.start()
        peer_args = ["--node-ip", node_ip, "--port", str(ready["port"]), "--peer-id", ready["peer_id"], "--data-dir"]
        if case in ("slow_reader", "silent_reader"):
            children.append(
                _spawn(
                    "peer",
                    "--kind",
                    "publisher",
                    "--ip",
                    publisher_ip,
                    *peer_args,
                    os.path.join(tmp, case + "-pub"),
                    "--rate",
                    str(args.rate),
                )
            )
        if case == "async_app":
            children.append(
                _spawn("peer", "--kind", "sender", "--ip", publisher_ip, *peer_args, os.path.join(tmp, case + "-snd"))
            )
        attacker = None
        if case != "async_app":
            # Started now, so that its start-up is not part of the attack; it
            # connects when told to.
            attacker = _spawn(
                "peer", "--kind", case, "--wait-go", "--ip", attacker_ip, *peer_args, os.path.join(tmp, case + "-att")
            )
            children.append(attacker)
        await deferLater(reactor, baseline_s, lambda: None)
        t_base = time.time() - baseline_s
        base_samples = _series(node, t_base)
        idle_rss = min((s["rss_kib"] for s in base_samples), default=0) / 1024
        baseline = {"rss_mib": _rss_mib(base_samples), "cpu_share": _cpu_share(base_samples), **probe.summary()}
        probe.reset()
        t_attack = time.time()
        if attacker is not None:
            attacker.go()
            await _until(
                lambda: attacker.first("connected") is not None or attacker.first("error") is not None,
                30,
                "the attacker",
            )
        await deferLater(reactor, attack_s, lambda: None)
        samples = _series(node, t_attack)
        result: dict[str, Any] = {
            "case": case,
            "seconds": attack_s,
            "node_config": overrides,
            "baseline": baseline,
            "attack": {"rss_mib": _rss_mib(samples), "cpu_share": _cpu_share(samples), **probe.summary()},
            "rss_series_mib": [round(s["rss_kib"] / 1024, 1) for s in samples[:: max(1, len(samples) // 40)]],
        }
        events = _events(node, t_attack)
        result["node_events"] = _count(events)
        attack = result["attack"]
        peak = attack["rss_mib"].get("max", 0)
        if attacker is not None:
            # The attacker does not read, so it does not notice the reset:
            # the cut is the node's disconnection of it (its socket is
            # closed in connectionLost).
            connected = attacker.first("connected")
            attacker_id = connected["peer_id"] if connected is not None else None
            drops = [
                e
                for e in events
                if e["event"] in ("disconnection", "external_disconnection") and e.get("peer_id") == attacker_id
            ]
            cut: dict[str, Any] = {"cut": bool(drops)}
            if drops and connected is not None:
                cut["after_s"] = round(drops[0]["t"] - connected["connected"], 2)
                cut["reason"] = drops[0].get("reason")
            cut["node_disconnect_reasons"] = sorted({e.get("reason") or "" for e in drops})
            result["attacker"] = cut
        targets: dict[str, Any] = {}
        if case == "slow_reader":
            bound = 1.0  # send_queue_size default, MiB
            targets["rss_le_idle_plus_bound_plus_32MiB"] = _met(
                peak <= idle_rss + bound + 32, peak, idle_rss + bound + 32
            )
            after = result["attacker"].get("after_s")
            targets["cut_within_stall_plus_5s"] = _met(after is not None and after <= stall + 5, after, stall + 5)
            targets["honest_rtt_p99_le_50ms"] = _met((attack["rtt_ms_p99"] or 1e9) <= 50, attack["rtt_ms_p99"], 50)
        elif case == "ping_flood":
            growth = peak - attack["rss_mib"].get("start", peak)
            targets["rss_growth_le_16MiB"] = _met(growth <= 16, round(growth, 1), 16)
            targets["honest_rtt_p99_le_50ms"] = _met((attack["rtt_ms_p99"] or 1e9) <= 50, attack["rtt_ms_p99"], 50)
            targets["admin_p99_le_100ms"] = _met((attack["admin_ms_p99"] or 1e9) <= 100, attack["admin_ms_p99"], 100)
        elif case == "silent_reader":
            after = result["attacker"].get("after_s")
            limit = 3 * keepalive + 5
            targets["socket_gone_within_3_keepalives_plus_5s"] = _met(
                after is not None and after <= limit, after, limit
            )
        elif case == "async_app":
            sender = children[1]
            sent = max((line["sent"] for line in sender.lines if "sent" in line), default=0)
            last = samples[-1] if samples else {}
            result["delivery"] = {
                "sent_by_sender": sent,
                "received_by_app": last.get("next_seq"),
                "handled_by_app": last.get("handled"),
                "in_order": last.get("in_order"),
                "sender_held_back": sent - (last.get("next_seq") or 0),
            }
            targets["rss_le_idle_plus_32MiB"] = _met(peak <= idle_rss + 32, peak, idle_rss + 32)
            targets["in_order_nothing_dropped"] = _met(bool(last.get("in_order")), last.get("in_order"), True)
        result["idle_rss_mib"] = round(idle_rss, 1)
        result["targets"] = targets
        return result
    finally:
        if probe is not None:
            probe.stop()
        if honest is not None:
            await honest.stopService()
        for child in children:
            child.stop()


# -- eviction (issue 14, item 2) ---------------------------------------------------------

#: The attacker's network groups (127.201.0.0/16 ... 127.209.0.0/16), the
#: newcomers' (127.210.0.0/16 and up) and the nodes' addresses.
EVICTION_GROUPS = 9
EVICTION_NODES = {"eviction": "127.200.0.1", "baseline": "127.200.0.2"}
#: Handshakes a crowd runs at once with each node.
CROWD_LANES = 4


def crowd_main(args: argparse.Namespace) -> None:
    """
    One cheap identity per address of C{--ips}, started at once; then each
    dials every node of the targets read from stdin (a JSON list of
    C{[ip, port]}), L{CROWD_LANES} handshakes at a time per node, and holds
    its connections. Prints a line per connection, refusal and loss.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredList, ensureDeferred
    from twisted.internet.threads import deferToThread

    from p2pool.core.addressing import Point
    from p2pool.interfaces import BasePoolApplication

    quiet_twisted_logging()
    ips = args.ips.split(",")

    class App(BasePoolApplication):
        def __init__(self, ip: str) -> None:
            self.ip = ip

        def connection_lost(self, conn: Any, reason: Any) -> None:
            line = {"lost": time.time(), "ip": self.ip, "node": conn.remote_ip, "reason": reason.reason.value}
            print(json.dumps(line), flush=True)

    pools = [_pool(ip, os.path.join(args.data_dir, ip), App(ip)) for ip in ips]

    async def dial(target: Any, lane: int) -> None:
        for ip, pool in list(zip(ips, pools, strict=True))[lane::CROWD_LANES]:
            try:
                await pool.connect(target)
            except Exception as e:
                print(json.dumps({"error": str(e), "ip": ip, "node": target.ip}), flush=True)
            else:
                print(json.dumps({"connected": time.time(), "ip": ip, "node": target.ip}), flush=True)

    async def main() -> None:
        for pool in pools:
            pool.startService()
        for pool in pools:
            await pool.when_started()
        line = await deferToThread(sys.stdin.readline)
        targets = [Point(check_loopback(ip), port) for ip, port in json.loads(line)]
        await DeferredList([ensureDeferred(dial(t, lane)) for t in targets for lane in range(CROWD_LANES)])
        print(json.dumps({"done": True}), flush=True)

    reactor.callWhenRunning(lambda: ensureDeferred(main()))
    reactor.run()


async def _admin(method: str, node_ip: str, admin_port: int, path: str, body: Any = None) -> Any:
    """
    One admin API request to a node; its JSON answer.
    """
    import treq

    response = await treq.request(method, f"http://{node_ip}:{admin_port}{path}", json=body)
    return json.loads(await response.text())


async def run_eviction(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """
    The ``eviction`` case: slots full of identities from 9 /16s, then
    newcomers from new /16s, on a node with eviction and on the baseline
    node without it.
    """
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    from p2pool.core.addressing import Point
    from p2pool.examples.gossip import GossipMessage
    from p2pool.interfaces import BasePoolApplication

    quick = args.quick
    # Full: the slots of a node with the default bounds (maintenance's
    # max_threshold, 84) and the default protection. Quick: 27 slots, so
    # the protection is halved to leave more than 9 peers unprotected.
    slots = 27 if quick else 84
    newcomers = 3 if quick else 10
    common = {
        "max_connections": slots,
        "expected_connections": slots // 2,
        "min_connections": slots // 4,
        "keepalive_interval": 1.0 if quick else 5.0,
    }
    configs = {
        "eviction": {**common, "eviction_protection": 2 if quick else 4},
        "baseline": {**common, "eviction_protection": None},
    }
    nodes = {
        name: _spawn(
            "node",
            "--ip",
            ip,
            "--data-dir",
            os.path.join(tmp, f"eviction-{name}"),
            "--overrides",
            json.dumps(configs[name]),
        )
        for name, ip in EVICTION_NODES.items()
    }
    children = list(nodes.values())
    pools: list[Any] = []

    class Peer(BasePoolApplication):
        def __init__(self) -> None:
            self.lost: list[str] = []

        def connection_lost(self, conn: Any, reason: Any) -> None:
            self.lost.append(reason.reason.value)

    async def peer(ip: str, name: str) -> Any:
        pool = _pool(ip, os.path.join(tmp, f"eviction-{name}"), Peer())
        pools.append(pool)
        pool.startService()
        await pool.when_started()
        return pool

    # The slots spread over the 9 groups; the top-scored and the trusted
    # peer take one each in the first two groups, after the crowd, which
    # connects in turns over the groups.
    per_group = [slots // EVICTION_GROUPS + (g < slots % EVICTION_GROUPS) for g in range(EVICTION_GROUPS)]
    crowd_ips = [
        f"127.{201 + g}.0.{2 + k}"
        for k in range(max(per_group))
        for g in range(EVICTION_GROUPS)
        if k < per_group[g] - (g < 2)
    ]
    # It starts with the nodes, and dials when told where they listen.
    crowd = _spawn("crowd", "--ips", ",".join(crowd_ips), "--data-dir", os.path.join(tmp, "eviction-crowd"))
    children.append(crowd)
    try:
        top = await peer("127.201.0.250", "top")
        trusted = await peer("127.202.0.250", "trusted")
        await _until(lambda: all(node.first("ready") for node in nodes.values()), 30, "the nodes")
        ready = {name: node.first("ready") or {} for name, node in nodes.items()}
        points = {name: Point(EVICTION_NODES[name], ready[name]["port"]) for name in nodes}
        t_crowd = time.monotonic()
        crowd.go(json.dumps([[p.ip, p.port] for p in points.values()]))
        await _until(lambda: crowd.first("done") is not None, 120, "the crowd")
        crowd_s = time.monotonic() - t_crowd
        held: dict[str, dict[str, Any]] = {}
        for name, point in points.items():
            held[name] = {"top": await top.connect(point), "trusted": await trusted.connect(point)}
            for _ in range(3):  # useful gossip: the node scores the peer 3, the others 0
                held[name]["top"].send(GossipMessage(os.urandom(16), 1, b"useful").encode())
            admin_port = ready[name]["admin_port"]
            await _admin("PATCH", point.ip, admin_port, f"/network/peers/{trusted.peer_id}", {"acl": "trust"})

            async def scored(ip: str = point.ip, port: int = admin_port) -> bool:
                info = await _admin("GET", ip, port, f"/network/peers/{top.peer_id}")
                return bool(info and (info.get("score") or 0) >= 3)

            deadline = time.monotonic() + 30
            while not await scored():
                if time.monotonic() > deadline:
                    raise RuntimeError("timed out waiting for the top peer's score")
                await deferLater(reactor, 0.05, lambda: None)

        def running(name: str) -> int:
            series = _series(nodes[name], 0)
            return int(series[-1]["connections"]) if series else 0

        await _until(lambda: all(running(name) == slots for name in nodes), 30, "full slots")
        t_newcomers = time.time()
        outcomes: dict[str, list[dict[str, Any]]] = {name: [] for name in nodes}
        for i in range(newcomers):
            ip = f"127.{201 + EVICTION_GROUPS + i}.0.2"
            newcomer = await peer(ip, f"newcomer-{i}")
            for name, point in points.items():
                started = time.monotonic()
                try:
                    await newcomer.connect(point)
                    admitted = {"admitted": True}
                except Exception as e:
                    admitted = {"admitted": False, "refusal": str(e)}
                ms = round((time.monotonic() - started) * 1000, 1)
                outcomes[name].append({"ip": ip, **admitted, "ms": ms})
        await deferLater(reactor, 1.0, lambda: None)  # the evicted close; the nodes report their events
        result: dict[str, Any] = {
            "case": "eviction",
            "slots": slots,
            "attacker_groups": EVICTION_GROUPS,
            "crowd": {"identities": len(crowd_ips), "seconds_to_connect_to_both": round(crowd_s, 2)},
            "connections_when_full": slots,
        }
        top_ids = {str(top.peer_id), str(trusted.peer_id)}
        for name, node in nodes.items():
            events = _events(node, t_newcomers)
            evicted = [e for e in events if e["event"] == "peer_evicted"]
            result[name] = {
                "node_config": configs[name],
                "newcomers": outcomes[name],
                "evicted": [{"addr": e["addr"], "netgroup": e["netgroup"]} for e in evicted],
                "protected_evicted": sorted(top_ids & {e["peer_id"] for e in evicted}),
                "top_still_connected": held[name]["top"].is_open,
                "trusted_still_connected": held[name]["trusted"].is_open,
                "node_events": _count(events),
            }
        ours = result["eviction"]
        first = ours["newcomers"][0]
        attacker_groups = {f"127.{201 + g}.0.0/16" for g in range(EVICTION_GROUPS)}
        result["targets"] = {
            "newcomer_from_a_tenth_group_gets_in": _met(first["admitted"], first["admitted"], True),
            "no_trusted_or_top_score_peer_evicted": _met(
                not ours["protected_evicted"] and ours["top_still_connected"] and ours["trusted_still_connected"],
                ours["protected_evicted"],
                [],
            ),
            "evicted_only_from_the_attacker_groups": _met(
                all(e["netgroup"] in attacker_groups for e in ours["evicted"]), len(ours["evicted"]), None
            ),
            "baseline_without_eviction_refuses_the_newcomer": _met(
                not result["baseline"]["newcomers"][0]["admitted"], result["baseline"]["newcomers"][0], None
            ),
        }
        return result
    finally:
        # The children first: they must not outlive this case, whatever
        # stopping the pools of this process does.
        for child in children:
            child.stop()
        for pool in pools:
            await pool.stopService()


# -- issue 14: fair handshake slots, the admin API under slowloris, quiet refusals --

#: The node of each issue-14 case. The attackers and honest clients of these
#: cases come from other 127.x.0.0/16 groups: the node counts each /16 as one
#: network group, loopback included (netgroup_cap_exempts_loopback is off by
#: default).
NODE14_IP = {"stalled_handshakes": "127.0.0.201", "slowloris": "127.0.0.202", "handshake_flood": "127.0.0.203"}


def _loopback_ip(ip: str) -> str:
    """
    Refuse any address outside 127.0.0.0/8 (the issue-14 cases use several
    /16s of it, each its own network group).
    """
    import ipaddress

    if ipaddress.ip_address(ip) not in ipaddress.ip_network("127.0.0.0/8"):
        raise SystemExit(f"refusing address {ip!r}: only 127.0.0.0/8 is allowed")
    return ip


def _group_ips(groups: tuple[int, ...], per_group: int) -> list[str]:
    """
    C{per_group} addresses in each of the /16s 127.C{g}.0.0 for g in C{groups}.
    """
    return [f"127.{g}.0.{i}" for g in groups for i in range(1, per_group + 1)]


def _log_to(path: str) -> None:
    """
    Log as a node run by twistd does at the default C{[log]} settings
    (info, text lines), to the file C{path}.
    """
    from twisted.logger import globalLogBeginner

    from p2pool.config import LogConfig
    from p2pool.daemon.logs import node_log_observer

    out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open until the process ends
    globalLogBeginner.beginLoggingTo(
        [node_log_observer(LogConfig(), out)], discardBuffer=True, redirectStandardIO=False
    )


def _admission_fields(pool: Any, admin: Any) -> dict[str, Any]:
    """
    The node's pending incoming handshakes, its refusals by reason and, with
    an admin API, its open HTTP connections and their refusals.
    """
    fields: dict[str, Any] = {
        "pending_incoming": pool.connect_handler.pending_incoming,
        "refusals": pool.refusals.totals(),
    }
    if admin is not None:
        fields["admin_open"] = admin.open_connections
        fields["admin_refusals"] = admin.refusals.totals()
    return fields


def flooder_main(args: argparse.Namespace) -> None:
    """
    Many connections to the node from several addresses, each reopened when
    it closes (C{--spec}: C{kind}, C{ips}, C{node_ip}, C{port}, C{conns},
    C{reconnect} seconds, C{interval} seconds):

    - C{stall}: TLS with a certificate of its own, then never a Hello;
    - C{garbage}: TLS, then a Hello frame one byte long (a decoding error);
    - C{slowloris}: plain HTTP to the admin API, a request line at once and
      one header line per C{interval}; closed ones are reopened at the next
      interval (as slowloris does).

    Each connection reopens from the next address in turn (C{slowloris}:
    connection I{i} always from address I{i} modulo their number).
    """
    import itertools

    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
    from twisted.internet.interfaces import IHandshakeListener
    from twisted.internet.protocol import Factory, Protocol
    from twisted.internet.task import LoopingCall
    from zope.interface import implementer

    from p2pool.core.identity import Identity
    from p2pool.core.wire import Kind, frame
    from p2pool.transport.tls import IVerifiedProtocol, PeerVerification, TLSContext

    quiet_twisted_logging()
    spec = json.loads(args.spec)
    kind = spec["kind"]
    ips = [_loopback_ip(ip) for ip in spec["ips"]]
    node_ip = _loopback_ip(spec["node_ip"])
    conns = int(spec["conns"])
    raise_nofile(conns + 256)
    creator = None if kind == "slowloris" else TLSContext(Identity.generate(0).private_key).creator
    counts = {"attempts": 0, "connected": 0, "tls": 0, "lost": 0, "failed": 0, "open": 0}
    turn = itertools.count()
    live: dict[int, Any] = {}
    to_reopen: set[int] = set()

    @implementer(IVerifiedProtocol, IHandshakeListener)
    class Attacker(Protocol):
        def __init__(self, slot: int) -> None:
            self.slot = slot
            self.verification = PeerVerification()

        def connectionMade(self) -> None:
            counts["connected"] += 1
            counts["open"] += 1
            live[self.slot] = self
            if kind == "slowloris":
                self.transport.write(f"GET /network/connections HTTP/1.1\r\nHost: {node_ip}\r\n".encode())  # type: ignore[union-attr]

        def handshakeCompleted(self) -> None:
            counts["tls"] += 1
            if kind == "garbage":
                self.transport.write(frame(Kind.HELLO, b"\x00"))  # type: ignore[union-attr]

        def connectionLost(self, reason: Any = None) -> None:
            counts["open"] -= 1
            counts["lost"] += 1
            live.pop(self.slot, None)
            reopen(self.slot)

    class AttackerFactory(Factory):
        noisy = False

        def __init__(self, slot: int) -> None:
            self.slot = slot

        def buildProtocol(self, addr: Any) -> Attacker:
            return Attacker(self.slot)

    def dial(slot: int) -> None:
        ip = ips[slot % len(ips)] if kind == "slowloris" else ips[next(turn) % len(ips)]
        counts["attempts"] += 1
        endpoint: Any = TCP4ClientEndpoint(reactor, node_ip, spec["port"], timeout=10, bindAddress=(ip, 0))
        if creator is not None:
            endpoint = wrapClientTLS(creator, endpoint)

        def failed(failure: Any) -> None:
            counts["failed"] += 1
            name = "failed_" + failure.type.__name__
            if name not in counts:
                log(f"flooder: {kind}: a connection failed: {failure.getErrorMessage()}")
            counts[name] = counts.get(name, 0) + 1
            reopen(slot)

        endpoint.connect(AttackerFactory(slot)).addErrback(failed)

    def reopen(slot: int) -> None:
        if kind == "slowloris":
            to_reopen.add(slot)
        else:
            reactor.callLater(spec.get("reconnect", 0.0), dial, slot)  # type: ignore[attr-defined]

    def tick() -> None:
        for protocol in list(live.values()):
            protocol.transport.write(b"X-Slow: 1\r\n")
        slots = sorted(to_reopen)
        to_reopen.clear()
        for slot in slots:
            dial(slot)

    def report() -> None:
        print(json.dumps({"t": time.time(), **counts}), flush=True)

    def start() -> None:
        for slot in range(conns):
            dial(slot)
        if kind == "slowloris":
            LoopingCall(tick).start(spec["interval"], now=False)
        LoopingCall(report).start(0.5)

    print(json.dumps({"ready": True}), flush=True)
    _start_when_told(start, args.wait_go)
    reactor.run()


async def _start_node14(case: str, tmp: str, overrides: dict[str, Any], log_file: str = "") -> tuple[_Child, Any]:
    """
    Start the node of an issue-14 case; return it and its C{ready} line.
    """
    argv = ["--ip", NODE14_IP[case], "--data-dir", os.path.join(tmp, case), "--overrides", json.dumps(overrides)]
    if log_file:
        argv += ["--log-file", log_file]
    node = _spawn("node", *argv)
    try:
        await _until(lambda: node.first("ready") is not None, 60, f"the node of {case}")
    except BaseException:
        node.stop()
        raise
    return node, node.first("ready")


async def _start_flooders(specs: list[dict[str, Any]]) -> list[_Child]:
    """
    Start one flooder per spec; they attack when told (L{_Child.go}).
    """
    flooders = [_spawn("flooder", "--wait-go", "--spec", json.dumps(spec)) for spec in specs]
    await _until(lambda: all(f.first("ready") is not None for f in flooders), 60, "the flooders")
    return flooders


def _flooder_totals(flooders: list[_Child]) -> dict[str, int]:
    """
    The flooders' counters, summed over their last reports.
    """
    totals: dict[str, int] = {}
    for flooder in flooders:
        last = next((line for line in reversed(flooder.lines) if "attempts" in line), {})
        for key, value in last.items():
            if key != "t":
                totals[key] = totals.get(key, 0) + value
    return totals


def _last_node_line(node: _Child) -> dict[str, Any]:
    return next((line for line in reversed(node.lines) if "rss_kib" in line), {})


def _ms_summary(values: list[float]) -> dict[str, Any]:
    return {
        "p50": _round(_percentile(values, 0.5)),
        "p99": _round(_percentile(values, 0.99)),
        "max": _round(max(values, default=None)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def _sleep(seconds: float) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)  # type: ignore[arg-type]


async def _honest_handshakes(pool: Any, point: Any, seconds: float, pause: float) -> dict[str, Any]:
    """
    Dial C{point} from C{pool} again and again for C{seconds}: each
    connection is closed once established, then C{pause} seconds pass.
    """
    attempts, completed = 0, 0
    errors: dict[str, int] = {}
    took: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        attempts += 1
        started = time.monotonic()
        try:
            conn = await pool.connect(point)
        except Exception as e:
            name = type(e).__name__
            errors[name] = errors.get(name, 0) + 1
        else:
            completed += 1
            took.append((time.monotonic() - started) * 1000)
            await conn.disconnect()
        await _sleep(pause)
    return {
        "attempts": attempts,
        "completed": completed,
        "completed_share": round(completed / attempts, 4) if attempts else None,
        "errors": errors,
        "handshake_ms": _ms_summary(took),
    }


async def stalled_handshakes_case(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """
    Two /16s hold 60 stalled handshakes (TLS, never a Hello, reopened
    50 ms after each close, quick: 0.2 s, from 32 addresses per /16, quick:
    4, taken in turn); an honest peer
    from a third /16 dials the node every 0.5 s (quick: 0.25 s) and closes
    each connection once established.
    """
    from p2pool.core.addressing import Point

    case = "stalled_handshakes"
    quick = args.quick
    baseline_s = 1.0 if quick else 10.0
    attack_s = 5.0 if quick else 60.0 * args.scale
    pause = 0.25 if quick else 0.5
    # Quick: a shorter authentication_timeout, so that stalls time out within the run.
    overrides: dict[str, Any] = {"authentication_timeout": 2.0} if quick else {}
    node, ready = await _start_node14(case, tmp, overrides)
    node_ip = NODE14_IP[case]
    children = [node]
    honest = None
    try:
        honest = _pool("127.143.0.1", os.path.join(tmp, case + "-honest"))
        honest.startService()
        await honest.when_started()
        target = Point(node_ip, ready["port"])
        baseline = await _honest_handshakes(honest, target, baseline_s, pause)
        per_group = 4 if quick else 32
        attacker_ips = _group_ips((141, 142), per_group)
        # One flooder, its addresses taken in turn from one /16 and the other.
        interleaved = [ip for pair in zip(*(_group_ips((g,), per_group) for g in (141, 142))) for ip in pair]
        spec = {
            "kind": "stall",
            "ips": interleaved,
            "node_ip": node_ip,
            "port": ready["port"],
            "conns": 60,
            "reconnect": 0.2 if quick else 0.05,
        }
        flooders = await _start_flooders([spec])
        children += flooders
        t_attack = time.time()
        for flooder in flooders:
            flooder.go()
        slots = 20  # max_incoming_connections, default
        full_after = None
        try:
            await _until(
                lambda: any(s["pending_incoming"] >= slots for s in _series(node, t_attack)), 10, "full pending slots"
            )
            full_after = round(time.time() - t_attack, 2)
        except RuntimeError:
            pass
        attack = await _honest_handshakes(honest, target, attack_s, pause)
        samples = _series(node, t_attack)
        pending = [s["pending_incoming"] for s in samples]
        greylistings = [e for e in _events(node, t_attack) if e["event"] == "greylisted_addr"]
        greylisted = sorted({e["addr"] for e in greylistings})
        last = _last_node_line(node)
        share = attack["completed_share"] or 0.0
        return {
            "case": case,
            "seconds": attack_s,
            "node_config": overrides,
            "attackers": {
                "groups": ["127.141.0.0/16", "127.142.0.0/16"],
                "addresses": len(attacker_ips),
                "connections_kept": 60,
                **_flooder_totals(flooders),
            },
            "pending_slots": {
                "limit": slots,
                "full_after_s": full_after,
                "mean": round(sum(pending) / len(pending), 1) if pending else None,
                "max": max(pending, default=None),
            },
            "baseline": {"honest": baseline},
            "attack": {"honest": attack, "node_cpu_share": _cpu_share(samples)},
            "greylisted": {
                "attacker_addresses": len([a for a in greylisted if a in attacker_ips]),
                "of": len(attacker_ips),
                "last_after_s": round(greylistings[-1]["t"] - t_attack, 1) if greylistings else None,
                "honest": "127.143.0.1" in greylisted,
            },
            "node_refusals": last.get("refusals", {}),
            "targets": {"honest_completes_ge_95pc": _met(share >= 0.95, share, 0.95)},
        }
    finally:
        if honest is not None:
            await honest.stopService()
        for child in children:
            child.stop()


# -- advertise flood (issue 14, item 3) ------------------------------------------------

#: The flood's source: one /16, and the /16s of the points it advertises.
FLOOD_GROUP = "127.66.0.0/16"
FLOODED_OCTETS = range(100, 200)
#: Points in the node's peers file that connected before the flood.
HISTORY_POINTS = 300


def _write_history(path: str, count: int) -> None:
    """
    A peers file of C{count} points, in 75 /16s, that connected an hour ago.
    """
    from p2pool.core.addressing import PeerId
    from p2pool.core.timestamps import format_time

    then = time.time() - 3600
    points = [
        {
            "point": f"127.{20 + i // 4}.0.{i % 4 + 1}:9",
            "known_public": True,
            "last_established_connection": [str(PeerId((i + 1).to_bytes(16, "big"))), format_time(then)],
            "last_disconnection": [str(PeerId((i + 1).to_bytes(16, "big"))), format_time(then + 60)],
        }
        for i in range(count)
    ]
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "w") as f:
        json.dump({"format": 1, "network": "p2pool-mainnet", "points": points}, f)


def _flooded(point: str) -> bool:
    parts = point.split(".")
    return len(parts) == 4 and parts[0] == "127" and int(parts[1]) in FLOODED_OCTETS


def _max_in_window(times: list[float], window: float) -> int:
    ordered, best, first = sorted(times), 0, 0
    for last, t in enumerate(ordered):
        while t - ordered[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


async def _flood_once(args: argparse.Namespace, tmp: str, label: str, index: int, overrides: dict[str, Any]) -> Any:
    """
    One Advertise flood against a fresh node with C{overrides}: what the
    node's table and dials were.
    """
    import random

    from twisted.internet import reactor
    from twisted.internet.defer import DeferredList, ensureDeferred
    from twisted.internet.task import LoopingCall, deferLater

    from p2pool.core.addressing import Point
    from p2pool.core.wire import Advertise, encode

    attack_s = 3.0 if args.quick else 60.0 * args.scale
    node_ip = f"127.0.0.{90 + index}"
    data_dir = os.path.join(tmp, "advertise_flood-" + label)
    _write_history(os.path.join(data_dir, "peers.json"), HISTORY_POINTS)
    settings = {"maintenance_idle_time": 2.0, **overrides}
    node = _spawn("node", "--ip", node_ip, "--data-dir", data_dir, "--overrides", json.dumps(settings))
    attackers: list[Any] = []
    loop = LoopingCall(lambda: None)
    try:
        await _until(lambda: node.first("ready") is not None, 30, "the node")
        ready = node.first("ready")
        assert ready is not None
        for i in range(8):
            pool = _pool(f"127.66.{index}.{i + 1}", os.path.join(tmp, f"advertise_flood-{label}-att{i}"))
            pool.startService()
            attackers.append(pool)

        async def connect(pool: Any) -> Any:
            await pool.when_started()
            return await pool.connect(Point(node_ip, ready["port"]))

        # All eight at once: their start-up is not part of the attack.
        outcomes = await DeferredList(
            [ensureDeferred(connect(pool)) for pool in attackers], fireOnOneErrback=True, consumeErrors=True
        )
        conns = [conn for _, conn in outcomes]
        rng = random.Random(index)
        sent = {"frames": 0}

        def flood() -> None:
            for conn in conns:
                if conn.is_open:
                    points = tuple(
                        Point(
                            f"127.{rng.choice(FLOODED_OCTETS)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                            rng.randrange(1024, 65535),
                        )
                        for _ in range(100)
                    )
                    conn.send_control(encode(Advertise(points)))
                    sent["frames"] += 1

        loop = LoopingCall(flood)
        t_attack = time.time()
        loop.start(0.1)
        await deferLater(reactor, attack_s, lambda: None)
        loop.stop()
        # One more report from the node, taken after the flood.
        t_end = time.time()
        await _until(lambda: any(s["t"] > t_end for s in _series(node, t_attack)), 10, "a report")
        samples = _series(node, t_attack)
        last = [s for s in samples if s["t"] > t_end][0]
        dials = [
            e["t"] for e in _events(node, t_attack) if e["event"] == "outgoing_connection" and _flooded(e["point"])
        ]
        flood_points = last["learnt_groups"].get(FLOOD_GROUP, 0)
        return {
            "seconds": attack_s,
            "node_config": settings,
            "advertise_frames_sent": sent["frames"],
            "known_points": last["known_points"],
            "flood_points_known": flood_points,
            "flood_share_of_known": round(flood_points / max(1, last["known_points"]), 4),
            "flood_share_of_capacity": round(flood_points / 400, 4),
            "connected_before_kept": last["connected_before"],
            "dials_to_flood": len(dials),
            "dials_to_flood_max_in_1s": _max_in_window(dials, 1.0),
            "dials_deferred_by_budget": last["dials_deferred"],
            "rss_mib": _rss_mib(samples),
            "cpu_share": _cpu_share(samples),
        }
    finally:
        if loop.running:
            loop.stop()
        node.stop()
        for pool in attackers:
            await pool.stopService()


async def run_advertise_flood(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """
    The ``advertise_flood`` case: the same flood against a node with its
    address-book bounds lifted (baseline), then with the defaults.
    """
    from p2pool.config import PoolConfig

    defaults = PoolConfig()
    burst, rate = defaults.source_group_dial_burst, defaults.source_group_dial_rate
    lifted = {"max_source_group_share": 1.0, "source_group_dial_rate": 1e9, "source_group_dial_burst": 10**9}
    if args.quick:
        # Both nodes at once, to stay within the quick mode's time.
        from twisted.internet.defer import DeferredList, ensureDeferred

        outcomes = await DeferredList(
            [
                ensureDeferred(_flood_once(args, tmp, "baseline", 0, lifted)),
                ensureDeferred(_flood_once(args, tmp, "defended", 1, {})),
            ],
            fireOnOneErrback=True,
            consumeErrors=True,
        )
        baseline, attack = (result for _, result in outcomes)
    else:
        baseline = await _flood_once(args, tmp, "baseline", 0, lifted)
        attack = await _flood_once(args, tmp, "defended", 1, {})
    seconds = attack["seconds"]
    dials, peak = attack["dials_to_flood"], attack["dials_to_flood_max_in_1s"]
    within = dials <= burst + rate * (seconds + 2)
    targets = {
        "flood_le_12.5pct_of_known_points": _met(
            attack["flood_share_of_known"] <= 0.125, attack["flood_share_of_known"], 0.125
        ),
        # The history, plus the attackers' own 8 points (they connected).
        "connected_points_kept": _met(
            attack["connected_before_kept"] >= HISTORY_POINTS + 8,
            attack["connected_before_kept"],
            HISTORY_POINTS + 8,
        ),
        "dials_within_budget": _met(within, dials, f"{burst} + {rate:g}/s x {seconds:g} s"),
        "dials_per_1s_window_le_burst_plus_rate": _met(peak <= burst + rate, peak, burst + rate),
    }
    return {
        "case": "advertise_flood",
        "seconds": seconds,
        "flood_source": FLOOD_GROUP,
        "baseline": baseline,
        "attack": attack,
        "targets": targets,
    }


async def _http_get(src_ip: str, host: str, port: int, timeout: float) -> int:
    """
    One C{GET /network/connections} on a new connection from C{src_ip};
    the status of the answer.

    @raise Exception: no whole answer within C{timeout} seconds.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol

    class Get(Protocol):
        def __init__(self) -> None:
            self.data = b""
            self.done: Deferred[bytes] = Deferred()

        def connectionMade(self) -> None:
            request = f"GET /network/connections HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
            self.transport.write(request.encode())  # type: ignore[union-attr]

        def dataReceived(self, data: bytes) -> None:
            self.data += data

        def connectionLost(self, reason: Any = None) -> None:
            if not self.done.called:
                self.done.callback(self.data)

    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=max(1, int(timeout)), bindAddress=(src_ip, 0))
    protocol = Get()
    try:
        await connectProtocol(endpoint, protocol).addTimeout(timeout, reactor)  # type: ignore[arg-type]
        data = await protocol.done.addTimeout(timeout, reactor)  # type: ignore[arg-type]
    finally:
        if protocol.transport is not None:
            protocol.transport.abortConnection()  # type: ignore[attr-defined]
    status = data.split(b" ", 2)[1] if data.startswith(b"HTTP/") else b"0"
    return int(status)


async def _fresh_gets(src_ip: str, host: str, port: int, seconds: float, pause: float) -> dict[str, Any]:
    """
    Fresh clients for C{seconds}: one request per new connection, one at a
    time, C{pause} seconds apart; their latencies and failures.
    """
    took: list[float] = []
    failures: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            status = await _http_get(src_ip, host, port, 5.0)
        except Exception as e:
            failures[type(e).__name__] = failures.get(type(e).__name__, 0) + 1
        else:
            if status == 200:
                took.append((time.monotonic() - started) * 1000)
            else:
                failures[f"http_{status}"] = failures.get(f"http_{status}", 0) + 1
        await _sleep(pause)
    return {
        "requests": len(took) + sum(failures.values()),
        "answered": len(took),
        "failures": failures,
        "ms": _ms_summary(took),
    }


def _listen_overflows() -> int | None:
    """
    The kernel's count of connections dropped because a listening socket's
    accept queue was full (C{TcpExt ListenOverflows}: every socket of this
    network namespace, other processes included).
    """
    try:
        with open("/proc/net/netstat") as f:
            rows = [line.split() for line in f if line.startswith("TcpExt:")]
        return int(dict(zip(rows[0], rows[1]))["ListenOverflows"])
    except (OSError, KeyError, IndexError, ValueError):
        return None


async def slowloris_case(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """
    1,000 slowloris connections to the admin API from 4 addresses, one
    header line per connection every 10 s, closed ones reopened every 10 s
    (quick: 100 connections, every 1 s); a fresh client from a fifth
    address sends a request on a new connection every 100 ms.
    """
    case = "slowloris"
    quick = args.quick
    baseline_s = 1.0 if quick else 10.0
    attack_s = 5.0 if quick else 60.0 * args.scale
    conns, interval = (100, 1.0) if quick else (1000, 10.0)
    raise_nofile(4096)
    node, ready = await _start_node14(case, tmp, {})
    node_ip = NODE14_IP[case]
    admin_port = ready["admin_port"]
    fresh_ip = "127.145.0.1"
    children = [node]
    try:
        baseline = await _fresh_gets(fresh_ip, node_ip, admin_port, baseline_s, 0.1)
        attacker_ips = _group_ips((144,), 4)
        spec = {"kind": "slowloris", "ips": attacker_ips, "node_ip": node_ip, "port": admin_port}
        flooders = await _start_flooders([{**spec, "conns": conns, "interval": interval}])
        children += flooders
        t_attack = time.time()
        overflows = _listen_overflows()
        flooders[0].go()
        attack = await _fresh_gets(fresh_ip, node_ip, admin_port, attack_s, 0.1)
        overflows_after = _listen_overflows()
        samples = _series(node, t_attack)
        last = _last_node_line(node)
        worst = attack["ms"]["max"]
        ok = not attack["failures"] and worst is not None and worst <= 1000
        return {
            "case": case,
            "seconds": attack_s,
            "attackers": {
                "addresses": attacker_ips,
                "connections": conns,
                "header_line_every_s": interval,
                **_flooder_totals(flooders),
            },
            "admin_open": {"max": max((s.get("admin_open", 0) for s in samples), default=None)},
            "baseline": {"fresh_client": baseline},
            "attack": {"fresh_client": attack, "node_cpu_share": _cpu_share(samples)},
            "admin_refusals": last.get("admin_refusals", {}),
            "listen_overflows_machine_wide": None
            if overflows is None or overflows_after is None
            else overflows_after - overflows,
            "targets": {"fresh_client_answered_le_1s": _met(ok, worst, 1000)},
        }
    finally:
        for child in children:
            child.stop()


async def handshake_flood_case(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """
    A flood of handshakes that fail: from 32 addresses in 4 /16s, 32
    connections at once (quick: 8), each reopened at once when it closes, each sending
    a one-byte Hello after TLS (a decoding error, which greylists the
    address; later connections from it are refused before TLS). The node
    logs as twistd would at the defaults (info, text) to a file; its growth
    is measured (quick: refusal_log_interval 1 s, so that summaries come
    within the run).
    """
    case = "handshake_flood"
    quick = args.quick
    baseline_s = 2.0 if quick else 10.0
    attack_s = 5.0 if quick else 90.0 * args.scale
    log_file = os.path.join(tmp, case + ".log")
    overrides: dict[str, Any] = {"refusal_log_interval": 1.0} if quick else {}
    node, ready = await _start_node14(case, tmp, overrides, log_file)
    children = [node]
    try:
        start = os.path.getsize(log_file)
        await _sleep(baseline_s)
        base_bytes = os.path.getsize(log_file) - start
        attacker_ips = _group_ips((146, 147, 148, 149), 8)
        spec = {"kind": "garbage", "ips": attacker_ips, "node_ip": NODE14_IP[case], "port": ready["port"]}
        flooders = await _start_flooders([{**spec, "conns": 8 if quick else 32, "reconnect": 0.0}])
        children += flooders
        t_attack = time.time()
        before = os.path.getsize(log_file)
        flooders[0].go()
        await _sleep(attack_s)
        grown = os.path.getsize(log_file) - before
        with open(log_file, "rb") as f:
            f.seek(before)
            lines = f.read(grown).decode("utf-8", "replace").splitlines()
        samples = _series(node, t_attack)
        last = _last_node_line(node)
        totals = _flooder_totals(flooders)
        per_minute = grown / 1024 / (attack_s / 60)
        return {
            "case": case,
            "seconds": attack_s,
            "node_config": overrides,
            "attackers": {"addresses": len(attacker_ips), "groups": 4, **totals},
            "attempts_per_s": round(totals.get("attempts", 0) / attack_s, 1),
            "node_refusals": last.get("refusals", {}),
            "node_cpu_share": _cpu_share(samples),
            "baseline": {"log_bytes": base_bytes, "seconds": baseline_s},
            "attack": {"log_bytes": grown, "log_lines": len(lines), "log_kib_per_min": round(per_minute, 2)},
            "log_sample": lines[:12],
            "targets": {"log_growth_le_100KiB_per_min": _met(per_minute <= 100, round(per_minute, 2), 100)},
        }
    finally:
        for child in children:
            child.stop()


#: The issue-14 cases, each run by its own function.
ISSUE14_CASES = {
    "stalled_handshakes": stalled_handshakes_case,
    "slowloris": slowloris_case,
    "handshake_flood": handshake_flood_case,
}


def _met(ok: bool, value: Any, limit: Any) -> dict[str, Any]:
    return {"met": bool(ok), "value": value, "limit": limit}


def _count(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in events:
        name = e["event"] + (f":{e['reason']}" if e.get("reason") else "")
        counts[name] = counts.get(name, 0) + 1
    return counts


def parent(args: argparse.Namespace) -> None:
    from twisted.internet.defer import DeferredList, ensureDeferred
    from twisted.internet.task import react

    quiet_twisted_logging()
    cases = args.cases.split(",") if args.cases else list(CASES)
    for case in cases:
        if case not in CASES:
            raise SystemExit(f"unknown case {case!r}; the cases are {', '.join(CASES)}")
    started = time.monotonic()

    async def main(reactor: Any) -> None:
        results = []
        with tempfile.TemporaryDirectory(prefix="p2pool-attack-") as tmp:
            if args.quick:
                # A smoke run: every case at once, each on its own addresses.
                log(f"attack: {', '.join(cases)} (quick, concurrently) ...")
                outcomes = await DeferredList(
                    [ensureDeferred(run_case(case, args, tmp)) for case in cases],
                    fireOnOneErrback=True,
                    consumeErrors=True,
                )
                results = [result for _, result in outcomes]
            else:
                for case in cases:
                    log(f"attack: {case} ...")
                    results.append(await run_case(case, args, tmp))
            for result in results:
                log(f"attack: {result['case']}: " + json.dumps(result["targets"]))
        emit(
            {
                "benchmark": "attack",
                "quick": args.quick,
                "wall_seconds": round(time.monotonic() - started, 1),
                "env": env_info(),
                "cases": results,
            }
        )

    react(lambda reactor: ensureDeferred(main(reactor)))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="every case for a few seconds (<= 20 s in all), for CI")
    p.add_argument("--cases", default="", help="comma-separated cases (default: all)")
    p.add_argument("--rate", type=float, default=50.0, help="gossip messages (64 KiB) published per second")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the attack durations (full mode)")
    p.add_argument("--node-ip", default="", help=argparse.SUPPRESS)
    p.add_argument("--wait-go", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--role", default="parent", help=argparse.SUPPRESS)
    p.add_argument("--ip", default="", help=argparse.SUPPRESS)
    p.add_argument("--kind", default="", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--peer-id", default="", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", default="", help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--app", default="gossip", help=argparse.SUPPRESS)
    p.add_argument("--ips", default="", help=argparse.SUPPRESS)

    p.add_argument("--log-file", default="", help=argparse.SUPPRESS)
    p.add_argument("--spec", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "node":
        node_main(args)
    elif args.role == "peer":
        peer_main(args)
    elif args.role == "crowd":
        crowd_main(args)

    elif args.role == "flooder":
        flooder_main(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
