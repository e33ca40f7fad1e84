#!/usr/bin/env python3
"""Transport benchmark: p2pool against raw Twisted TLS, in one run, on loopback.

Each measurement runs the receiving/serving side in a child process
(reactor.spawnProcess, driven by JSON lines on stdin/stdout) and the
sending/dialing side in this process, so each side has its own core.  The
raw-TLS baseline of every measurement runs in the same run, with the same
topology, alternating with the p2pool run (raw first in the 1st, 3rd, ...
repeat, p2pool first in the others).  Raw TLS = Twisted listenSSL/connectSSL, TLS 1.3 only,
mutual authentication, self-signed certificates (Ed25519 like p2pool by
default, --key p256 possible), each side trusting only the other's certificate.

Cases (--cases, letters or names):
  a  stream_64k           64 KiB application messages, one p2pool connection:
                          MiB/s from the first send to the receiver's reply
                          (sent when it gets the end marker), vs a raw TLS
                          stream written in 64 KiB writes (1 MiB segments with
                          an 8-byte header, discarded by the receiver).
                          Both senders run under a push producer.
  b  small_messages_100b  100-byte application messages delivered to the
                          receiving application per second (first message to
                          end marker, at the receiver), vs the "bytes"
                          length-prefixed parser of the limits study over the
                          same TLS.  The p2pool sender calls Connection.send
                          once per message, ~64 KiB worth of messages per
                          batch, under a push producer; the raw sender writes
                          prebuilt 64 KiB blobs of whole messages.
  c  connect              connection set-ups per second, sequential and 50 in
                          flight.  p2pool: Pool.connect() until it fires with
                          a Connection (TCP + TLS + Hello + Ack), then
                          Connection.disconnect() until it has closed; the
                          dialer rotates over 100 client Pools (distinct
                          identities and points, 127.0.0.2-101) so the server
                          never sees the same peer twice at once.  Raw: connect
                          + TLS handshake + one byte the server writes once it
                          has verified the client + close.
  d  memory               RSS growth per idle established connection of the
                          server process at K connections (default 200 and
                          1000, cumulative), at most 50 set-ups in flight;
                          p2pool clients are one Pool per connection.

Ratios are p2pool median / raw median over --repeat runs (default 3); the
targets are in the JSON ("targets", "met").  The machine's other load is
measured during every run (CPU of other processes from /proc/stat, minus our
own and our children's); a run disturbed by more than --noise-threshold of
the machine is repeated once (--retries), and --wait-quiet SECONDS waits for
a quiet machine before each run.  --profile DIR writes cProfile stats of
every process.

Prints progress on stderr and one JSON object on stdout.  Every loop is
bounded in count and time (a whole default run takes about 1.5-2 minutes);
only 127.0.0.x addresses are used.

Run from the repository root:  PYTHONPATH=. .venv/bin/python bench/transport.py
Smoke run:                     PYTHONPATH=. .venv/bin/python bench/transport.py --quick
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import struct
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
if ROOT not in sys.path:
    sys.path.append(ROOT)  # p2pool itself; PYTHONPATH, if set, comes first

from _common import (  # noqa: E402
    CertDir,
    check_loopback,
    cpu_seconds,
    emit,
    env_info,
    log,
    median,
    negotiated,
    quiet_twisted_logging,
    raise_nofile,
    spawn_child,
    summary,
    tls_options,
    vmrss_kib,
)

SEG = 1 << 20
HDR8 = struct.Struct(">Q")
U32 = struct.Struct(">I")
MIB = float(1 << 20)
STREAM_WRITE = 65536
SMALL_SIZE = 100
BATCH_BYTES = 65536
CONNECT_POOLS = 100  # client Pools the p2pool dialer rotates over in case c
CONCURRENCY = 50

CASE_LETTERS = {"a": "stream", "b": "small", "c": "connect", "d": "memory"}

TARGETS = {
    "stream_64k": (">=", 0.8),
    "small_messages_100b": (">=", 0.5),
    "connect_sequential": (">=", 0.8),  # issue 16 (0.7 before)
    "connect_50_in_flight": (">=", 0.8),
    "rss_per_connection_k200": ("<=", 1.5),
    "rss_per_connection_k1000": ("<=", 1.5),
}


def defer_inline(f):
    """inlineCallbacks, imported lazily (Twisted is not imported at module load)."""

    def wrapper(*args, **kwargs):
        from twisted.internet import defer

        return defer.inlineCallbacks(f)(*args, **kwargs)

    wrapper.__name__ = f.__name__
    wrapper.__doc__ = f.__doc__
    return wrapper


# ---------------------------------------------------------------------------
# p2pool helpers (both processes)


def cpu_snapshot() -> tuple:
    """
    (wall, CPU of this process and its reaped children, machine-wide
    user+nice+system CPU, machine-wide steal), all in seconds.
    """
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    busy = steal = 0.0
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        busy = (fields[0] + fields[1] + fields[2]) / hz
        steal = (fields[7] if len(fields) > 7 else 0) / hz
    except (OSError, ValueError, IndexError):
        pass
    return time.perf_counter(), own, busy, steal


def foreign_load(before: tuple, after: tuple) -> dict:
    """
    CPU used by processes other than the benchmark's own during a run, as
    a share of the machine (all cores); and the hypervisor steal.
    """
    wall = after[0] - before[0]
    cores = os.cpu_count() or 1
    foreign = max(0.0, (after[2] - before[2]) - (after[1] - before[1]))
    return {
        "own_cpu_s": after[1] - before[1],
        "foreign_cpu_s": foreign,
        "foreign_share": foreign / (wall * cores) if wall > 0 else 0.0,
        "steal_share": (after[3] - before[3]) / (wall * cores) if wall > 0 else 0.0,
    }


def profiled(fn, path, *args):
    """Run fn(*args), under cProfile writing to path when path is set."""
    if not path:
        return fn(*args)
    import cProfile

    prof = cProfile.Profile()
    try:
        return prof.runcall(fn, *args)
    finally:
        prof.dump_stats(path)


def client_ip(i: int) -> str:
    """127.0.0.2 ... 127.0.0.251: where client Pool number i listens and dials from."""
    return f"127.0.0.{2 + i % 250}"


def pool_config(ip: str, client: bool):
    """
    The configuration of a benchmark Pool: defaults, except no proof of
    work, slots high enough for every case, no maintenance, and for the
    client-side Pools (the harness that dials, up to 1020 in one process) a
    1 KiB IP greylist instead of the default 2048 KiB one, whose 4 MiB
    counting Bloom filter is allocated and zeroed by every Pool (about 10 ms
    and 4 MiB of RSS each).  The greylist is not consulted while dialing, so
    this changes no per-connection work; the server Pool keeps the default.

    Every client is on 127.0.0.x, one network group, so the per-netgroup
    cap on incoming connections (an eclipse defence) is lifted for
    loopback.  Settings the PoolConfig of this checkout does not have are
    left out.
    """
    import attrs

    from p2pool.config import PoolConfig
    from p2pool.core.addressing import Point

    wanted = {
        "listen": Point(ip, 0),
        "expected_proof_of_work": 0,
        "max_connections": 20000,
        "max_incoming_connections": 20000,
        "maintenance_idle_time": None,
        "netgroup_cap_exempts_loopback": True,
        "max_incoming_connections_per_netgroup": 20000,
        # Identities are passed in; each pool keeps its own peers file.
        "data_dir": _BENCH_DIR,
        "peers_file": os.path.join(_BENCH_DIR, f"peers-{ip}-{next(_POOL_NUMBERS)}.json"),
    }
    if client:
        wanted["ip_greylist_size_in_kilobytes"] = 1
    known = attrs.fields_dict(PoolConfig)
    return PoolConfig(**{k: v for k, v in wanted.items() if k in known})


_BENCH_DIR = tempfile.mkdtemp(prefix="p2pool-bench-")
_POOL_NUMBERS = itertools.count()


def new_pool(reactor, ip: str, app=None, client: bool = True):
    """
    A benchmark Pool. Its events are told what this process's log records
    (warnings and errors: see quiet_twisted_logging), as a node's log setup
    tells its pool, where the checkout has that declaration.
    """
    from twisted.logger import LogLevel

    from p2pool.core.identity import Identity
    from p2pool.pool.service import Pool

    pool = Pool(pool_config(ip, client), app, identity=Identity.generate(0), reactor=reactor)
    if hasattr(pool.events, "log_level"):
        pool.events.log_level = LogLevel.warn
    return pool


def p2pool_tls_info(conn) -> dict:
    """Negotiated TLS parameters of a p2pool connection (read only, informational)."""
    try:
        return negotiated(conn._protocol.transport)
    except Exception:
        return {}


# ---------------------------------------------------------------------------
# receiving / serving side (child process)


def make_raw_server_protocols():
    from twisted.internet.interfaces import IHandshakeListener
    from twisted.internet.protocol import Protocol
    from zope.interface import implementer

    class Sink(Protocol):
        """Discard a segmented stream; on the end segment reply with the byte count."""

        def __init__(self, on_done):
            self.rem = 0
            self.hdr = b""
            self.total = 0
            self.calls = 0
            self.on_done = on_done
            self.cpu0 = None

        def dataReceived(self, data):
            if self.cpu0 is None:
                self.cpu0 = cpu_seconds()
            self.calls += 1
            n = len(data)
            rem = self.rem
            if n <= rem:
                self.rem = rem - n
                self.total += n
                return
            pos = 0
            while pos < n:
                if self.rem:
                    take = min(self.rem, n - pos)
                    self.rem -= take
                    self.total += take
                    pos += take
                    continue
                piece = data[pos : pos + 8 - len(self.hdr)]
                self.hdr += piece
                pos += len(piece)
                if len(self.hdr) < 8:
                    return
                (length,) = HDR8.unpack(self.hdr)
                self.hdr = b""
                if length == 0:
                    self.transport.write(HDR8.pack(self.total))
                    self.on_done(
                        {"bytes": self.total, "calls": self.calls, "receiver_cpu_s": cpu_seconds() - self.cpu0}
                    )
                    return
                self.rem = length

    class BytesParser(Protocol):
        """
        The "bytes" parser of the limits study (framed_messages.py): 4-byte
        big-endian length + payload, slices the incoming bytes directly, a
        bytearray keeps only the partial tail.  Counts messages; an empty
        one is the end marker.
        """

        def __init__(self, on_done):
            self._buf = bytearray()
            self.count = 0
            self.t0 = None
            self.on_done = on_done

        def connectionMade(self):
            self._first_real = self.dataReceived
            self.dataReceived = self._first_data

        def _first_data(self, data):
            self.t0 = time.perf_counter()
            self.cpu0 = cpu_seconds()
            del self.dataReceived
            self._first_real(data)

        def messageReceived(self, msg):
            if msg:
                self.count += 1
            else:
                secs = time.perf_counter() - self.t0
                self.on_done(
                    {
                        "messages": self.count,
                        "seconds": secs,
                        "msgs_per_s": self.count / secs,
                        "receiver_cpu_s": cpu_seconds() - self.cpu0,
                    }
                )

        def dataReceived(self, data):
            if self._buf:
                self._buf += data
                data = bytes(self._buf)
                self._buf.clear()
            n = len(data)
            pos = 0
            unpack_from = U32.unpack_from
            deliver = self.messageReceived
            while n - pos >= 4:
                end = pos + 4 + unpack_from(data, pos)[0]
                if end > n:
                    break
                deliver(data[pos + 4 : end])
                pos = end
            if pos < n:
                self._buf += memoryview(data)[pos:]

    @implementer(IHandshakeListener)
    class Greeter(Protocol):
        """Writes one byte once the TLS handshake (client verified) is done."""

        live = None

        def handshakeCompleted(self):
            self.transport.write(b"!")
            self.live.add(self)

        def connectionLost(self, reason):
            self.live.discard(self)

    return Sink, BytesParser, Greeter


def make_p2pool_apps():
    from p2pool.interfaces import BasePoolApplication

    class StreamApp(BasePoolApplication):
        """Counts message bytes; on the empty end marker replies with the count."""

        def __init__(self, on_done):
            self.bytes = 0
            self.count = 0
            self.cpu0 = None
            self.on_done = on_done

        def message_received(self, conn, data):
            if data:
                if self.cpu0 is None:
                    self.cpu0 = cpu_seconds()
                self.bytes += len(data)
                self.count += 1
            else:
                conn.send(HDR8.pack(self.bytes))
                self.on_done(
                    {"bytes": self.bytes, "messages": self.count, "receiver_cpu_s": cpu_seconds() - (self.cpu0 or 0.0)}
                )

    class CountingApp(BasePoolApplication):
        """Counts messages exactly like the baseline parser's callback."""

        def __init__(self, on_done):
            self.count = 0
            self.t0 = None
            self.on_done = on_done

        def connection_made(self, conn):
            self.message_received = self._first_message

        def _first_message(self, conn, data):
            self.t0 = time.perf_counter()
            self.cpu0 = cpu_seconds()
            del self.message_received
            self.message_received(conn, data)

        def message_received(self, conn, data):
            if data:
                self.count += 1
            else:
                secs = time.perf_counter() - self.t0
                self.on_done(
                    {
                        "messages": self.count,
                        "seconds": secs,
                        "msgs_per_s": self.count / secs,
                        "receiver_cpu_s": cpu_seconds() - self.cpu0,
                    }
                )

    return StreamApp, CountingApp


def server_child(args):
    quiet_twisted_logging()
    nofile = raise_nofile(args.need_fds)
    from _common import child_stdin_commands
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory

    host, mode, impl = args.host, args.mode, args.impl
    state = {"cpu0": cpu_seconds()}

    def on_done(res):
        emit({"done": True, **res})

    count_live = None
    if impl == "raw":
        Sink, BytesParser, Greeter = make_raw_server_protocols()
        live = set()
        Greeter.live = live
        count_live = lambda: len(live)  # noqa: E731
        proto = {"stream": lambda: Sink(on_done), "small": lambda: BytesParser(on_done)}.get(mode, Greeter)
        f = Factory()
        f.noisy = False
        f.buildProtocol = lambda addr: proto()
        opts = tls_options(CertDir(path=args.certdir), "server", "client")
        port = reactor.listenSSL(0, f, opts, interface=host, backlog=1024)
        ready = lambda: emit({"port": port.getHost().port, "rss_kib": vmrss_kib(), "nofile": nofile})  # noqa: E731
        reactor.callWhenRunning(ready)
    else:
        StreamApp, CountingApp = make_p2pool_apps()
        app = {"stream": lambda: StreamApp(on_done), "small": lambda: CountingApp(on_done)}.get(mode, lambda: None)()
        pool = new_pool(reactor, host, app, client=False)
        count_live = pool.active_connections

        def start():
            pool.startService()

            def started(_):
                emit(
                    {
                        "port": pool.listening_port.getHost().port,
                        "rss_kib": vmrss_kib(),
                        "nofile": nofile,
                        "peer_id": str(pool.peer_id),
                    }
                )

            def failed(f):
                emit({"error": f"p2pool server did not start: {f.getErrorMessage()}"})
                reactor.stop()

            pool.when_started().addCallbacks(started, failed)

        reactor.callWhenRunning(start)

    def handle(words):
        cmd = words[0]
        if cmd == "mark":
            state["cpu0"] = cpu_seconds()
            emit({"ok": True})
        elif cmd == "stats":
            emit({"cpu_s": cpu_seconds() - state["cpu0"], "conns": count_live()})
        elif cmd == "rss":
            want = int(words[1])
            deadline = time.monotonic() + 30

            def check():
                if count_live() == want or time.monotonic() > deadline:
                    gc.collect()
                    emit({"rss_kib": vmrss_kib(), "conns": count_live()})
                else:
                    reactor.callLater(0.01, check)

            check()
        elif cmd == "quit":
            reactor.stop()

    child_stdin_commands(reactor, handle)
    reactor.callLater(args.lifetime, reactor.stop)  # hard bound
    reactor.run()


# ---------------------------------------------------------------------------
# sending / dialing side (this process)


def make_senders():
    from twisted.internet.interfaces import IHandshakeListener, IPushProducer
    from twisted.internet.protocol import Protocol
    from zope.interface import implementer

    @implementer(IPushProducer, IHandshakeListener)
    class RawStreamSource(Protocol):
        """Segments of 1 MiB in 64 KiB writes under a push producer; waits for the reply."""

        def __init__(self, total, max_seconds, done):
            self.total = total
            self.chunk = os.urandom(STREAM_WRITE)
            self.per_seg = SEG // STREAM_WRITE
            self.max_seconds = max_seconds
            self.done = done
            self.sent = 0
            self.seg_left = 0
            self.paused = True
            self.finished = False
            self.reply = b""
            self.result = None
            self.info = {}

        def handshakeCompleted(self):
            self.info = negotiated(self.transport)
            self.t0 = time.perf_counter()
            self.cpu0 = cpu_seconds()
            self.deadline = self.t0 + self.max_seconds
            self.transport.registerProducer(self, True)
            self.resumeProducing()

        def pauseProducing(self):
            self.paused = True

        def stopProducing(self):
            self.paused = self.finished = True

        def resumeProducing(self):
            if self.finished:
                return
            self.paused = False
            write = self.transport.write
            chunk = self.chunk
            while not self.paused:
                if self.seg_left == 0:
                    if self.sent >= self.total or time.perf_counter() >= self.deadline:
                        self.finished = True
                        write(HDR8.pack(0))
                        self.transport.unregisterProducer()
                        return
                    write(HDR8.pack(SEG))
                    self.seg_left = self.per_seg
                write(chunk)
                self.seg_left -= 1
                self.sent += STREAM_WRITE

        def dataReceived(self, data):
            self.reply += data
            if len(self.reply) >= 8 and self.result is None:
                t1 = time.perf_counter()
                (got,) = HDR8.unpack(self.reply[:8])
                self.result = {
                    "bytes": got,
                    "seconds": t1 - self.t0,
                    "sender_cpu_s": cpu_seconds() - self.cpu0,
                    **self.info,
                }
                if got != self.sent:
                    self.result["error"] = f"receiver got {got} bytes, sender sent {self.sent}"
                self.transport.loseConnection()

        def connectionLost(self, reason):
            if not self.done.called:
                if self.result is not None:
                    self.done.callback(self.result)
                else:
                    self.done.errback(reason)

    @implementer(IPushProducer, IHandshakeListener)
    class RawBlobSender(Protocol):
        """Prebuilt ~64 KiB blobs of whole 4-byte-length-prefixed messages (framed_messages.py)."""

        def __init__(self, size, max_messages, max_seconds, done):
            msg = U32.pack(size) + os.urandom(size)
            self.per_blob = max(1, BATCH_BYTES // len(msg))
            self.blob = msg * self.per_blob
            self.max_messages = max_messages
            self.max_seconds = max_seconds
            self.done = done
            self.sent = 0
            self.paused = True
            self.finished = False
            self.info = {}

        def handshakeCompleted(self):
            self.info = negotiated(self.transport)
            self.cpu0 = cpu_seconds()
            self.deadline = time.perf_counter() + self.max_seconds
            self.transport.registerProducer(self, True)
            self.resumeProducing()

        def pauseProducing(self):
            self.paused = True

        def stopProducing(self):
            self.paused = self.finished = True

        def resumeProducing(self):
            if self.finished:
                return
            self.paused = False
            write = self.transport.write
            blob = self.blob
            while not self.paused:
                if self.sent >= self.max_messages or time.perf_counter() >= self.deadline:
                    self.finished = True
                    write(U32.pack(0))
                    self.transport.unregisterProducer()
                    if not self.done.called:
                        self.done.callback({"sent": self.sent, "sender_cpu_s": cpu_seconds() - self.cpu0, **self.info})
                    return
                write(blob)
                self.sent += self.per_blob

    @implementer(IPushProducer)
    class MessageProducer:
        """
        Sends a prebuilt batch of application messages with one
        Connection.send() call per message while the connection is not
        paused (Connection.register_producer), then an empty end marker.
        """

        def __init__(self, conn, batch, max_messages, max_seconds, on_finished):
            self.conn = conn
            self.batch = batch
            #: Bytes of the batch's first n messages, at index n - 1.
            self.batch_bytes = list(itertools.accumulate(len(m) for m in batch))
            self.max_messages = max_messages
            self.max_seconds = max_seconds
            self.on_finished = on_finished
            self.sent = 0
            self.sent_bytes = 0
            self.paused = True
            self.finished = False

        def start(self):
            self.t0 = time.perf_counter()
            self.cpu0 = cpu_seconds()
            self.deadline = self.t0 + self.max_seconds
            self.conn.register_producer(self)
            self.resumeProducing()

        def pauseProducing(self):
            self.paused = True

        def stopProducing(self):
            self.paused = self.finished = True

        def resumeProducing(self):
            if self.finished:
                return
            self.paused = False
            send = self.conn.send
            batch = self.batch
            while not self.paused:
                if self.sent >= self.max_messages or time.perf_counter() >= self.deadline:
                    self.finished = True
                    send(b"")
                    self.conn.unregister_producer()
                    self.on_finished(self)
                    return
                # One Connection.send per message. The send queue pauses this
                # producer synchronously, inside send, at its high-water mark:
                # the batch stops there (a full queue would refuse the next
                # message), and the next resume starts a batch again. The
                # loop costs the bench what the old batch loop did (issue 12
                # compares the library, not this loop).
                n = 0
                for n, m in enumerate(batch, 1):  # noqa: B007 (n counts what was sent)
                    send(m)
                    if self.paused:
                        break
                self.sent += n
                self.sent_bytes += self.batch_bytes[n - 1] if n else 0

    class RawClient(Protocol):
        """Dialer of the raw connect and memory cases: waits for the server's byte."""

        def __init__(self, t0, up, done, close):
            self.t0 = t0
            self.up = up  # Deferred: fires with the latency when the byte arrives
            self.done = done  # Deferred or None: fires on connectionLost
            self.close = close
            self.ok = False

        def dataReceived(self, data):
            if not self.ok:
                self.ok = True
                self.up.callback(time.perf_counter() - self.t0)
                if self.close:
                    self.transport.loseConnection()

        def connectionLost(self, reason):
            if not self.ok and not self.up.called:
                self.up.errback(reason)
            if self.done is not None and not self.done.called:
                self.done.callback(None)

    return RawStreamSource, RawBlobSender, MessageProducer, RawClient


class Loop:
    """
    Run ``one()`` (returns a Deferred firing with a latency in seconds)
    with at most ``concurrency`` in flight, until ``max_count`` were started
    or ``max_seconds`` passed (or too many failed).  ``run()`` fires with a
    summary dict.
    """

    def __init__(self, reactor, one, concurrency, max_count, max_seconds, max_failures=20):
        self.reactor = reactor
        self.one = one
        self.concurrency = concurrency
        self.max_count = max_count
        self.max_seconds = max_seconds
        self.max_failures = max_failures
        self.started = self.completed = self.failed = self.inflight = 0
        self.latencies = []
        self.errors = []

    def run(self):
        from twisted.internet import defer

        self.d = defer.Deferred()
        self.t0 = time.perf_counter()
        self.cpu0 = cpu_seconds()
        self.deadline = self.t0 + self.max_seconds
        for _ in range(self.concurrency):
            self._start_one()
        if self.inflight == 0 and not self.d.called:
            self._finish()
        return self.d

    def _start_one(self):
        if self.started >= self.max_count or time.perf_counter() >= self.deadline or self.failed > self.max_failures:
            return
        self.started += 1
        self.inflight += 1
        try:
            d = self.one()
        except Exception as e:  # pragma: no cover - reported in the result
            from twisted.internet import defer

            d = defer.fail(e)
        d.addCallbacks(self._ok, self._failed)

    def _ok(self, latency):
        self.inflight -= 1
        self.completed += 1
        if latency is not None:
            self.latencies.append(latency)
        self._next()

    def _failed(self, failure):
        self.inflight -= 1
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(f"{failure.type.__name__}: {failure.getErrorMessage()}")
        self._next()

    def _next(self):
        self._start_one()
        if self.inflight == 0 and not self.d.called:
            self._finish()

    def _finish(self):
        secs = time.perf_counter() - self.t0
        lat = sorted(self.latencies)
        res = {
            "completed": self.completed,
            "failed": self.failed,
            "seconds": secs,
            "conns_per_s": self.completed / secs if secs else 0.0,
            "dialer_cpu_s": cpu_seconds() - self.cpu0,
            "latency_ms_p50": lat[len(lat) // 2] * 1e3 if lat else None,
            "latency_ms_p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3 if lat else None,
        }
        if self.errors:
            res["errors"] = self.errors
        self.d.callback(res)


class Bench:
    def __init__(self, reactor, args, certdir):
        self.reactor = reactor
        self.args = args
        self.certdir = certdir
        self.host = args.host
        (self.RawStreamSource, self.RawBlobSender, self.MessageProducer, self.RawClient) = make_senders()
        self.client_opts = tls_options(certdir, "client", "server")

    # -- plumbing ----------------------------------------------------------

    def spawn_server(self, impl, mode, need_fds=256):
        from twisted.internet import defer

        args = [
            "--_role",
            "server",
            "--_impl",
            impl,
            "--_mode",
            mode,
            "--host",
            self.host,
            "--_certdir",
            self.certdir.path,
            "--_need-fds",
            str(need_fds),
            "--_lifetime",
            str(int(self.args.child_lifetime)),
        ]
        if self.args.profile:
            args += ["--_profile", os.path.join(self.args.profile, f"server-{impl}-{mode}-{time.monotonic_ns()}.prof")]
        child = spawn_child(self.reactor, __file__, args, f"{impl}-{mode}")

        @defer.inlineCallbacks
        def first():
            line = yield child.next(30)
            if "error" in line:
                raise RuntimeError(line["error"])
            return line

        return child, first()

    @defer_inline
    def wait_quiet(self, max_wait, threshold):
        """Wait (at most max_wait seconds) until other processes use less than threshold of the machine."""
        deadline = time.perf_counter() + max_wait
        while True:
            before = cpu_snapshot()
            yield self.sleep(0.5)
            share = foreign_load(before, cpu_snapshot())["foreign_share"]
            if share <= threshold:
                return share
            if time.perf_counter() >= deadline:
                log(f"[transport] other processes still use {100 * share:.0f}% of the machine; going on")
                return share
            log(f"[transport] waiting: other processes use {100 * share:.0f}% of the machine")
            yield self.sleep(1.0)

    def sleep(self, seconds):
        from twisted.internet import task

        return task.deferLater(self.reactor, seconds, lambda: None)

    def start_pools(self, pools):
        from twisted.internet import defer

        for p in pools:
            p.startService()
        return defer.gatherResults([p.when_started() for p in pools], consumeErrors=True)

    def stop_pools(self, pools, timeout=20):
        from twisted.internet import defer

        d = defer.DeferredList([defer.maybeDeferred(p.stopService) for p in pools], consumeErrors=True)
        d.addTimeout(timeout, self.reactor)
        d.addErrback(lambda f: log(f"[bench] stopping client pools: {f.getErrorMessage()}"))
        return d

    def with_timeout(self, d, seconds, what):
        def timed_out(f):
            from twisted.internet import defer

            if f.check(defer.TimeoutError, defer.CancelledError):
                raise TimeoutError(f"{what} did not finish within {seconds:.0f} s")
            return f

        d.addTimeout(seconds, self.reactor)
        return d.addErrback(timed_out)

    # -- a: 64 KiB stream ----------------------------------------------------

    def stream(self, impl):
        from twisted.internet import defer

        a = self.args
        total = int(a.stream_mib) * SEG

        @defer.inlineCallbacks
        def run():
            child, ready = self.spawn_server(impl, "stream")
            try:
                port = (yield ready)["port"]
                if impl == "raw":
                    from twisted.internet.protocol import ClientFactory

                    done = defer.Deferred()
                    cf = ClientFactory()
                    cf.noisy = False
                    cf.buildProtocol = lambda addr: self.RawStreamSource(total, a.max_seconds, done)
                    cf.clientConnectionFailed = lambda c, reason: done.errback(reason)
                    self.reactor.connectSSL(self.host, port, cf, self.client_opts)
                    res = yield self.with_timeout(done, a.max_seconds + 30, "raw stream")
                else:
                    res = yield self._p2pool_stream(port, total)
                srv = yield child.next(15)
                res["receiver_cpu_s"] = srv["receiver_cpu_s"]
                res["receiver_calls"] = srv.get("calls")
                if srv.get("bytes") != res["bytes"]:
                    res["error"] = f"receiver counted {srv.get('bytes')} bytes, reply said {res['bytes']}"
                res["MiB_per_s"] = res["bytes"] / MIB / res["seconds"]
                return res
            finally:
                yield child.quit()

        return run()

    @defer_inline
    def _p2pool_stream(self, port, total):
        from twisted.internet import defer

        from p2pool.core.addressing import Point
        from p2pool.interfaces import BasePoolApplication

        a = self.args
        reply = defer.Deferred()

        class App(BasePoolApplication):
            def message_received(self, conn, data):
                if not reply.called:
                    reply.callback((time.perf_counter(), HDR8.unpack(data)[0]))

        pool = new_pool(self.reactor, client_ip(0), App())
        try:
            yield self.start_pools([pool])
            conn = yield pool.connect(Point(self.host, port))
            info = p2pool_tls_info(conn)
            finished = defer.Deferred()
            chunk = os.urandom(STREAM_WRITE)
            prod = self.MessageProducer(conn, [chunk], total // STREAM_WRITE, a.max_seconds, finished.callback)
            prod.start()
            yield finished
            t1, got = yield self.with_timeout(reply, a.max_seconds + 30, "p2pool stream")
            res = {
                "bytes": got,
                "seconds": t1 - prod.t0,
                "sender_cpu_s": cpu_seconds() - prod.cpu0,
                "messages": prod.sent,
                **info,
            }
            if got != prod.sent_bytes:
                res["error"] = f"receiver got {got} bytes, sender sent {prod.sent_bytes}"
            yield conn.disconnect()
            return res
        finally:
            yield self.stop_pools([pool])

    # -- b: 100-byte messages ------------------------------------------------

    def small(self, impl):
        from twisted.internet import defer

        a = self.args

        @defer.inlineCallbacks
        def run():
            child, ready = self.spawn_server(impl, "small")
            try:
                port = (yield ready)["port"]
                if impl == "raw":
                    from twisted.internet.protocol import ClientFactory

                    done = defer.Deferred()
                    protos = []
                    cf = ClientFactory()
                    cf.noisy = False
                    cf.buildProtocol = lambda addr: (
                        protos.append(self.RawBlobSender(SMALL_SIZE, a.small_max, a.max_seconds_small, done))
                        or protos[-1]
                    )
                    cf.clientConnectionFailed = lambda c, reason: done.errback(reason)
                    self.reactor.connectSSL(self.host, port, cf, self.client_opts)
                    snd = yield self.with_timeout(done, a.max_seconds_small + 30, "raw small messages")
                    srv = yield child.next(a.max_seconds_small + 30)
                    protos[0].transport.loseConnection()
                else:
                    snd, srv = yield self._p2pool_small(port, child)
                res = {k: v for k, v in srv.items() if k != "done"}
                res.update(snd)
                if srv["messages"] != snd["sent"]:
                    res["error"] = f"sent {snd['sent']} received {srv['messages']}"
                if res.get("messages"):
                    res["receiver_cpu_us_per_msg"] = res["receiver_cpu_s"] / res["messages"] * 1e6
                    res["sender_cpu_us_per_msg"] = res["sender_cpu_s"] / res["messages"] * 1e6
                return res
            finally:
                yield child.quit()

        return run()

    @defer_inline
    def _p2pool_small(self, port, child):
        from twisted.internet import defer

        from p2pool.core.addressing import Point

        a = self.args
        pool = new_pool(self.reactor, client_ip(0))
        try:
            yield self.start_pools([pool])
            conn = yield pool.connect(Point(self.host, port))
            info = p2pool_tls_info(conn)
            msg = os.urandom(SMALL_SIZE)
            per_batch = max(1, BATCH_BYTES // (SMALL_SIZE + 5))
            finished = defer.Deferred()
            prod = self.MessageProducer(conn, [msg] * per_batch, a.small_max, a.max_seconds_small, finished.callback)
            prod.start()
            yield finished
            snd = {"sent": prod.sent, "sender_cpu_s": cpu_seconds() - prod.cpu0, **info}
            srv = yield child.next(a.max_seconds_small + 30)
            yield conn.disconnect()
            return snd, srv
        finally:
            yield self.stop_pools([pool])

    # -- c: connection set-up -------------------------------------------------

    def connect(self, impl):
        """Both the sequential and the 50-in-flight figures, one server child."""
        from twisted.internet import defer

        a = self.args

        @defer.inlineCallbacks
        def run():
            child, ready = self.spawn_server(impl, "connect", need_fds=1024)
            pools = []
            out = {}
            try:
                port = (yield ready)["port"]
                if impl == "raw":
                    one = self._raw_connect_one(port)
                else:
                    pools = [new_pool(self.reactor, client_ip(i)) for i in range(CONNECT_POOLS)]
                    yield self.start_pools(pools)
                    one = self._p2pool_connect_one(port, pools)
                    # warm-up: every client Pool connects once, so each timed
                    # connection is from a peer the server already knows
                    warm = yield self.with_timeout(
                        Loop(self.reactor, one, CONCURRENCY, CONNECT_POOLS, 30).run(), 40, "p2pool warm-up"
                    )
                    if warm["failed"]:
                        raise RuntimeError(f"warm-up connections failed: {warm.get('errors')}")
                for label, conc in (("sequential", 1), ("50_in_flight", CONCURRENCY)):
                    warm = yield Loop(self.reactor, one, min(conc, a.warmup), a.warmup, 10).run()
                    if warm["failed"]:
                        raise RuntimeError(f"warm-up connections failed: {warm.get('errors')}")
                    yield child.ask("mark")
                    res = yield self.with_timeout(
                        Loop(self.reactor, one, conc, a.connect_max, a.max_seconds_connect).run(),
                        a.max_seconds_connect + 30,
                        f"{impl} connect",
                    )
                    srv = yield child.ask("stats")
                    res["server_cpu_s"] = srv["cpu_s"]
                    res["concurrency"] = conc
                    if res["completed"]:
                        res["dialer_cpu_us_per_conn"] = res["dialer_cpu_s"] / res["completed"] * 1e6
                        res["server_cpu_us_per_conn"] = res["server_cpu_s"] / res["completed"] * 1e6
                    out[label] = res
                    if res["failed"]:
                        out["error"] = f"{res['failed']} connection set-ups failed: {res.get('errors')}"
                        break
                return out
            finally:
                if pools:
                    yield self.stop_pools(pools)
                yield child.quit()

        return run()

    def _raw_connect_one(self, port):
        from twisted.internet import defer
        from twisted.internet.protocol import ClientFactory

        def one():
            up = defer.Deferred()
            closed = defer.Deferred()
            t0 = time.perf_counter()
            f = ClientFactory()
            f.noisy = False
            f.buildProtocol = lambda addr: self.RawClient(t0, up, closed, True)
            f.clientConnectionFailed = lambda c, reason: up.called or up.errback(reason)
            self.reactor.connectSSL(self.host, port, f, self.client_opts)
            # latency at the server's byte; the cycle ends when the client has closed
            up.addCallback(lambda lat: closed.addCallback(lambda _: lat))
            return up

        return one

    def _p2pool_connect_one(self, port, pools):
        from collections import deque

        from p2pool.core.addressing import Point

        idle = deque(pools)
        point = Point(self.host, port)

        def one():
            pool = idle.popleft()
            t0 = time.perf_counter()
            d = pool.connect(point)

            def up(conn):
                lat = time.perf_counter() - t0
                return conn.disconnect().addCallback(lambda _: lat)

            def back(r):
                idle.append(pool)
                return r

            return d.addCallback(up).addBoth(back)

        return one

    # -- d: memory per connection --------------------------------------------

    def memory(self, impl):
        from twisted.internet import defer

        a = self.args
        counts = sorted(a.counts)
        need = max(counts) + a.warmup + 200

        @defer.inlineCallbacks
        def run():
            child, ready = self.spawn_server(impl, "memory", need_fds=need)
            pools = []
            held = []  # raw client protocols / p2pool connections kept open
            res = {"steps": {}}
            try:
                first = yield ready
                port = first["port"]
                res["nofile"] = first["nofile"]
                if impl == "raw":
                    one_open = self._raw_open_one(port, held)
                else:
                    t = time.perf_counter()
                    pools = [new_pool(self.reactor, client_ip(i)) for i in range(a.warmup + max(counts))]
                    yield self.start_pools(pools)
                    res["client_pools_setup_s"] = time.perf_counter() - t
                    one_open = self._p2pool_open_one(port, pools, held)
                # warm-up: open and close a few connections before the baseline
                warm = yield Loop(self.reactor, one_open, min(a.warmup, CONCURRENCY), a.warmup, 20).run()
                if warm["failed"]:
                    raise RuntimeError(f"warm-up connections failed: {warm.get('errors')}")
                yield self._close_held(impl, held)
                base = (yield child.ask("rss 0", 40))["rss_kib"]
                res["server_rss_baseline_kib"] = base
                opened = 0
                t0 = time.perf_counter()
                for k in counts:
                    lp = yield Loop(self.reactor, one_open, CONCURRENCY, k - opened, 60, max_failures=50).run()
                    opened += lp["completed"]
                    s = yield child.ask(f"rss {k}", 40)
                    res["steps"][str(k)] = {
                        "server_rss_kib": s["rss_kib"],
                        "server_conns": s["conns"],
                        "client_failed": lp["failed"],
                        "kib_per_conn": (s["rss_kib"] - base) / k,
                    }
                    if s["conns"] != k:
                        res["error"] = f"server has {s['conns']} connections, expected {k}: {lp.get('errors')}"
                        break
                res["open_seconds_total"] = time.perf_counter() - t0
                return res
            finally:
                yield self._close_held(impl, held)
                if pools:
                    yield self.stop_pools(pools, timeout=60)
                yield child.quit()

        return run()

    def _raw_open_one(self, port, held):
        from twisted.internet import defer
        from twisted.internet.protocol import ClientFactory

        def one():
            up = defer.Deferred()
            t0 = time.perf_counter()
            f = ClientFactory()
            f.noisy = False

            def build(addr):
                p = self.RawClient(t0, up, None, False)
                held.append(p)
                return p

            f.buildProtocol = build
            f.clientConnectionFailed = lambda c, reason: up.called or up.errback(reason)
            self.reactor.connectSSL(self.host, port, f, self.client_opts)
            return up

        return one

    def _p2pool_open_one(self, port, pools, held):
        from p2pool.core.addressing import Point

        it = iter(pools)
        point = Point(self.host, port)

        def one():
            pool = next(it)
            t0 = time.perf_counter()

            def up(conn):
                held.append(conn)
                return time.perf_counter() - t0

            return pool.connect(point).addCallback(up)

        return one

    def _close_held(self, impl, held):
        from twisted.internet import defer

        items, held[:] = list(held), []
        if impl == "raw":
            waits = []
            for p in items:
                if p.transport is not None and p.transport.connected:
                    d = defer.Deferred()
                    orig = p.connectionLost

                    def lost(reason, orig=orig, d=d):
                        orig(reason)
                        d.called or d.callback(None)

                    p.connectionLost = lost
                    p.transport.loseConnection()
                    waits.append(d)
        else:
            waits = [c.disconnect() for c in items]
        d = defer.DeferredList(waits, consumeErrors=True)
        d.addTimeout(30, self.reactor)
        d.addErrback(lambda f: log(f"[bench] closing connections: {f.getErrorMessage()}"))
        # let the server notice the closes before the next step measures it
        return d.addCallback(lambda _: self.sleep(0.2))


# ---------------------------------------------------------------------------
# orchestration


def metric_values(case, res):
    """(metric name -> value) of one run of one case for one implementation."""
    if "error" in res and case not in ("memory", "connect"):
        return {}
    if case == "stream":
        return {"stream_64k": res["MiB_per_s"]}
    if case == "small":
        return {"small_messages_100b": res["msgs_per_s"]}
    if case == "connect":
        out = {}
        for label in ("sequential", "50_in_flight"):
            r = res.get(label, {})
            if r.get("completed") and not r.get("failed"):
                out[f"connect_{label}"] = r["conns_per_s"]
        return out
    if case == "memory":
        return {
            f"rss_per_connection_k{k}": v["kib_per_conn"]
            for k, v in res.get("steps", {}).items()
            if v["server_conns"] == int(k)
        }
    raise ValueError(case)


UNITS = {
    "stream_64k": "MiB/s",
    "small_messages_100b": "msg/s",
    "connect_sequential": "conn/s",
    "connect_50_in_flight": "conn/s",
}


def describe(case, impl, res):
    if "error" in res:
        return f"ERROR {res['error']}"
    if case == "stream":
        return f"{res['MiB_per_s']:.0f} MiB/s (sender cpu {res['sender_cpu_s']:.2f}s, receiver cpu {res['receiver_cpu_s']:.2f}s, {res['seconds']:.2f}s)"
    if case == "small":
        return (
            f"{res['msgs_per_s'] / 1e6:.3f} M msg/s (receiver cpu {res['receiver_cpu_s']:.2f}s / {res['seconds']:.2f}s, "
            f"sender cpu {res['sender_cpu_s']:.2f}s)"
        )
    if case == "connect":
        return ", ".join(
            f"{k}: {v['conns_per_s']:.0f} conn/s (p50 {v['latency_ms_p50'] or float('nan'):.2f} ms, failed {v['failed']})"
            for k, v in res.items()
            if k in ("sequential", "50_in_flight")
        )
    if case == "memory":
        return ", ".join(f"K={k}: {v['kib_per_conn']:.1f} KiB/conn" for k, v in res["steps"].items())
    return ""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--host", default="127.0.0.1", help="loopback address of the servers (127.0.0.x only; default %(default)s)"
    )
    p.add_argument(
        "--cases", default="a,b,c,d", help="comma list of a,b,c,d (or stream,small,connect,memory); default %(default)s"
    )
    p.add_argument(
        "--repeat", type=int, default=None, help="runs of every case; medians are reported (default 3; --quick 1)"
    )
    p.add_argument("--quick", action="store_true", help="smaller caps, one run, no retries: a smoke run of every case")
    p.add_argument(
        "--key",
        choices=["ed25519", "p256"],
        default="ed25519",
        help="certificate key of the raw TLS baseline (default %(default)s, as p2pool)",
    )
    p.add_argument(
        "--counts", default=None, help="connection counts K of case d, cumulative (default 200,1000; --quick 20,100)"
    )
    p.add_argument(
        "--noise-threshold",
        type=float,
        default=0.15,
        help="share of the machine's CPU used by other processes above which a run is repeated (default %(default)s)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each run, wait up to this long for other processes to drop below --noise-threshold (default: do not wait)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=None,
        help="repetitions of a run disturbed by other processes (default 1; --quick 0)",
    )
    p.add_argument(
        "--retry-budget",
        type=float,
        default=150,
        help="no more retries once the run is this many seconds old (default %(default)s)",
    )
    p.add_argument("--impls", default="raw,p2pool", help="which sides to run (default %(default)s; for profiling)")
    p.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="write cProfile stats of every process to DIR (slows everything down)",
    )
    p.add_argument("--_role", help=argparse.SUPPRESS)
    p.add_argument("--_profile", dest="profile_file", help=argparse.SUPPRESS)
    p.add_argument("--_impl", dest="impl", help=argparse.SUPPRESS)
    p.add_argument("--_mode", dest="mode", help=argparse.SUPPRESS)
    p.add_argument("--_certdir", dest="certdir", help=argparse.SUPPRESS)
    p.add_argument("--_need-fds", dest="need_fds", type=int, default=256, help=argparse.SUPPRESS)
    p.add_argument("--_lifetime", dest="lifetime", type=float, default=120, help=argparse.SUPPRESS)
    args = p.parse_args()
    check_loopback(args.host)

    if args._role == "server":
        return profiled(server_child, args.profile_file, args)

    if args.quick:
        caps = dict(
            max_seconds=0.6,
            stream_mib=256,
            max_seconds_small=0.6,
            small_max=500_000,
            max_seconds_connect=0.6,
            connect_max=2000,
            warmup=10,
            counts="20,100",
        )
    else:
        caps = dict(
            max_seconds=3.0,
            stream_mib=2048,
            max_seconds_small=2.0,
            small_max=5_000_000,
            max_seconds_connect=3.0,
            connect_max=20000,
            warmup=20,
            counts="200,1000",
        )
    for k, v in caps.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    args.counts = [int(x) for x in args.counts.split(",") if x]
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.retries is None:
        args.retries = 0 if args.quick else 1
    args.child_lifetime = 120
    impls = [x for x in args.impls.split(",") if x in ("raw", "p2pool")]
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    cases = []
    for c in (x.strip() for x in args.cases.split(",") if x.strip()):
        name = CASE_LETTERS.get(c, c)
        if name not in CASE_LETTERS.values():
            p.error(f"unknown case {c!r}")
        cases.append(name)

    quiet_twisted_logging()
    raise_nofile(2 * (max(args.counts) + caps["warmup"]) + 2 * CONNECT_POOLS + 512)
    from twisted.internet import defer, reactor

    certdir = CertDir(args.key)
    bench = Bench(reactor, args, certdir)
    runs = {c: {"raw": [], "p2pool": []} for c in cases}
    t_start = time.perf_counter()
    failures = []
    discarded = []

    @defer.inlineCallbacks
    def run_all():
        try:
            for rep in range(args.repeat):
                order = ("raw", "p2pool") if rep % 2 == 0 else ("p2pool", "raw")
                order = [i for i in order if i in impls]
                for case in cases:
                    for impl in order:
                        for attempt in range(args.retries + 1):
                            if args.wait_quiet:
                                yield bench.wait_quiet(args.wait_quiet, args.noise_threshold)
                            before = cpu_snapshot()
                            try:
                                res = yield getattr(bench, case)(impl)
                            except Exception as e:
                                res = {"error": f"{type(e).__name__}: {e}"}
                            res["load"] = foreign_load(before, cpu_snapshot())
                            res["wall_s"] = time.perf_counter() - before[0]
                            noisy = res["load"]["foreign_share"] > args.noise_threshold
                            log(
                                f"[transport] run {rep + 1}/{args.repeat} {case:7s} {impl:6s} {describe(case, impl, res)} "
                                f"[{res['wall_s']:.1f}s, other processes {100 * res['load']['foreign_share']:.0f}% of the machine]"
                            )
                            if (
                                not noisy
                                or "error" in res
                                or attempt == args.retries
                                or time.perf_counter() - t_start > args.retry_budget
                            ):
                                break
                            log(
                                f"[transport] other processes used {100 * res['load']['foreign_share']:.0f}% of the machine: running it again"
                            )
                            discarded.append({"case": case, "impl": impl, "repeat": rep, **res})
                        if "error" in res:
                            failures.append(f"{case}/{impl}/{rep}")
                        runs[case][impl].append(res)
        finally:
            reactor.stop()

    reactor.callWhenRunning(run_all)
    reactor.callLater(900, reactor.stop)  # hard bound on the whole run
    profiled(reactor.run, os.path.join(args.profile, "main.prof") if args.profile else None)
    certdir.cleanup()

    out = build_output(args, cases, runs)
    out["wall_seconds"] = time.perf_counter() - t_start
    out["discarded_noisy_runs"] = discarded
    if failures:
        out["failures"] = failures
    emit(out)
    return 1 if failures else 0


DETAILS = {
    "stream": {"stream_64k": ("sender_cpu_s", "receiver_cpu_s", "seconds")},
    "small": {"small_messages_100b": ("sender_cpu_us_per_msg", "receiver_cpu_us_per_msg")},
}


def details_of(case, res):
    """(metric name -> {detail: value}) of one run: CPU costs and latencies behind the figure."""
    if "error" in res:
        return {}
    if case == "connect":
        keys = ("dialer_cpu_us_per_conn", "server_cpu_us_per_conn", "latency_ms_p50", "latency_ms_p99")
        return {
            f"connect_{label}": {k: res[label].get(k) for k in keys}
            for label in ("sequential", "50_in_flight")
            if label in res
        }
    if case == "memory":
        return {}
    return {name: {k: res.get(k) for k in keys} for name, keys in DETAILS[case].items()}


def build_output(args, cases, runs):
    cases_out = {}
    ratios = {}
    per_repeat = {}
    for case in cases:
        values = {"raw": {}, "p2pool": {}}
        for impl in ("raw", "p2pool"):
            for res in runs[case][impl]:
                for name, v in metric_values(case, res).items():
                    values[impl].setdefault(name, []).append(v)
        details = {"raw": {}, "p2pool": {}}
        for impl in ("raw", "p2pool"):
            for res in runs[case][impl]:
                for name, d in details_of(case, res).items():
                    for k, v in d.items():
                        details[impl].setdefault(name, {}).setdefault(k, []).append(v)
        for name in sorted(set(values["raw"]) | set(values["p2pool"])):
            raw, pp = values["raw"].get(name, []), values["p2pool"].get(name, [])
            unit = UNITS.get(name, "KiB/conn")
            cases_out[name] = {
                "unit": unit,
                "raw_tls": summary(raw),
                "p2pool": summary(pp),
            }
            for impl, key in (("raw", "raw_tls"), ("p2pool", "p2pool")):
                if name in details[impl]:
                    cases_out[name][key]["detail_medians"] = {k: median(v) for k, v in details[impl][name].items()}
            mr, mp = median(raw), median(pp)
            ratios[name] = (mp / mr) if (mr and mp is not None) else None
            per_repeat[name] = [b / a for a, b in zip(raw, pp) if a]
        cases_out.setdefault("_runs", {})[case] = runs[case]
    out = {
        "bench": "transport",
        "cases": cases_out,
        "ratios": {k: ratios.get(k) for k in TARGETS} | {k: v for k, v in ratios.items() if k not in TARGETS},
        "ratios_per_repeat": per_repeat,
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
        "met": {
            k: (None if ratios.get(k) is None else (ratios[k] >= v if op == ">=" else ratios[k] <= v))
            for k, (op, v) in TARGETS.items()
        },
        "settings": {
            "repeat": args.repeat,
            "quick": args.quick,
            "raw_key": args.key,
            "host": args.host,
            "counts": args.counts,
            "stream_mib_cap": args.stream_mib,
            "stream_seconds_cap": args.max_seconds,
            "small_messages_cap": args.small_max,
            "small_seconds_cap": args.max_seconds_small,
            "connect_cap": args.connect_max,
            "connect_seconds_cap": args.max_seconds_connect,
            "connect_client_pools": CONNECT_POOLS,
            "concurrency": CONCURRENCY,
        },
        "env": env_info(),
    }
    out["metrics"] = [
        {"name": f"transport/{name}/{impl}", "unit": c["unit"], "value": c[key]["median"]}
        for name, c in cases_out.items()
        if not name.startswith("_")
        for impl, key in (("raw_tls", "raw_tls"), ("p2pool", "p2pool"))
    ]
    return out


if __name__ == "__main__":
    sys.exit(main())
