"""Helpers shared by the p2pool benchmarks (``bench/*.py``).

Adapted from the machine-limits scripts (``bench/limits`` of the limits
study, see ``BENCHMARKS.md``): loopback check, self-signed certificates,
Twisted ``CertificateOptions`` for the raw-TLS baselines, RSS, RLIMIT_NOFILE,
versions, and the plumbing that drives a child process from inside a running
reactor (``reactor.spawnProcess``; the child answers one JSON line per
command on stdout).

Nothing here imports Twisted at module import time, so ``--help`` works
without the reactor.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time

# ---------------------------------------------------------------------------
# generic helpers


def check_loopback(host: str, network: str = "127.0.0.0/8") -> str:
    """
    Refuse any address outside C{network}, which must lie inside loopback
    127.0.0.0/8 (the benches use 127.0.0.x, and 127.x.0.0/16 where distinct
    network groups are needed).
    """
    addr = ipaddress.ip_address(host)
    allowed = ipaddress.ip_network(network)
    if not allowed.subnet_of(ipaddress.ip_network("127.0.0.0/8")):
        raise ValueError(f"{network} is not inside loopback 127.0.0.0/8")
    if not (isinstance(addr, ipaddress.IPv4Address) and addr in allowed):
        raise SystemExit(f"refusing address {host!r}: only {network} is allowed")
    return host


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def emit(result: dict) -> None:
    """Print one JSON line on stdout."""
    print(json.dumps(result, sort_keys=False), flush=True)


def cpu_seconds() -> float:
    """User+system CPU seconds of this process."""
    return time.process_time()


def vmrss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS not found")


def raise_nofile(wanted: int) -> dict:
    """Raise the soft RLIMIT_NOFILE to at least ``wanted`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return {"soft_before": before, "soft": soft, "hard": hard}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summary(values) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def env_info() -> dict:
    """Versions and machine facts that matter when comparing runs."""
    info = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "impl": platform.python_implementation(),
        "kernel": platform.release(),
        "machine": platform.machine(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_kib"] = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        import twisted

        info["twisted"] = twisted.__version__
    except Exception:
        pass
    try:
        import OpenSSL
        from OpenSSL import SSL

        info["pyopenssl"] = OpenSSL.__version__
        info["openssl"] = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    except Exception:
        pass
    try:
        import cryptography

        info["cryptography"] = cryptography.__version__
    except Exception:
        pass
    try:
        from twisted.internet import reactor

        info["reactor"] = type(reactor).__name__
    except Exception:
        pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    info["rlimit_nofile"] = [soft, hard]
    return info


def quiet_twisted_logging() -> None:
    """
    Start Twisted logging with only warnings and errors going to stderr.

    Without this the global log publisher keeps the first 65536 events in
    memory (it waits for someone to begin logging), which would both cost
    CPU differently for each side and show up as RSS per connection.
    Every process of the benchmark, p2pool or raw baseline, does the same.
    """
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    observer = FilteringLogObserver(
        textFileLogObserver(sys.stderr),
        [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)],
    )
    globalLogBeginner.beginLoggingTo([observer], discardBuffer=True, redirectStandardIO=False)


# ---------------------------------------------------------------------------
# certificates for the raw TLS baselines


def make_self_signed(name: str, key_type: str = "ed25519"):
    """(key_pem, cert_pem) of a self-signed certificate; 'ed25519' or 'p256'."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.x509.oid import NameOID

    if key_type == "p256":
        key = ec.generate_private_key(ec.SECP256R1())
        algo = hashes.SHA256()
    elif key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        algo = None
    else:
        raise ValueError(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, algo)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


class CertDir:
    """A temporary directory with a 'server' and a 'client' self-signed pair,
    shared with child processes by path."""

    def __init__(self, key_type: str = "ed25519", path: str | None = None):
        self.owned = path is None
        self.path = path or tempfile.mkdtemp(prefix="p2pool-bench-certs-")
        if self.owned:
            for name in ("server", "client"):
                k, c = make_self_signed(f"{name}.bench.invalid", key_type)
                with open(os.path.join(self.path, f"{name}.key"), "wb") as f:
                    f.write(k)
                with open(os.path.join(self.path, f"{name}.crt"), "wb") as f:
                    f.write(c)

    def read(self, name: str, ext: str) -> bytes:
        with open(os.path.join(self.path, f"{name}.{ext}"), "rb") as f:
            return f.read()

    def cleanup(self) -> None:
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)


def tls_options(certdir: CertDir, me: str, peer: str):
    """
    Twisted CertificateOptions for the raw baseline: TLS 1.3 only, mutual
    authentication (own self-signed certificate; the only trust root is the
    peer's certificate; a peer certificate is required).  Twisted's defaults
    disable session caching and tickets, so every handshake is a full one,
    as in p2pool.
    """
    from OpenSSL import crypto
    from twisted.internet import ssl

    key = crypto.load_privatekey(crypto.FILETYPE_PEM, certdir.read(me, "key"))
    cert = crypto.load_certificate(crypto.FILETYPE_PEM, certdir.read(me, "crt"))
    peer_cert = ssl.Certificate.loadPEM(certdir.read(peer, "crt"))
    return ssl.CertificateOptions(
        privateKey=key,
        certificate=cert,
        trustRoot=ssl.trustRootFromCertificates([peer_cert]),
        raiseMinimumTo=ssl.TLSVersion.TLSv1_3,
    )


def negotiated(transport) -> dict:
    """TLS version and cipher of a finished TLS connection (best effort)."""
    try:
        conn = transport.getHandle()
        return {"tls_version": conn.get_protocol_version_name(), "cipher": conn.get_cipher_name()}
    except Exception:
        return {}


# ---------------------------------------------------------------------------
# child processes, driven from inside the reactor


def child_stdin_commands(reactor, handle) -> None:
    """In a child: call handle(words) for each line that arrives on stdin.

    Answers go out with emit() on stdout; the StandardIO transport's own
    output side is pointed at /dev/null.  EOF on stdin stops the reactor.
    """
    from twisted.internet import stdio
    from twisted.protocols.basic import LineReceiver

    class Commands(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line):
            words = line.decode().split()
            if words:
                handle(words)

        def connectionLost(self, reason):
            if reactor.running:
                reactor.stop()

    stdio.StandardIO(Commands(), stdin=0, stdout=os.open(os.devnull, os.O_WRONLY))


def _child_protocol_class():
    from collections import deque

    from twisted.internet import defer
    from twisted.internet.protocol import ProcessProtocol

    class Child(ProcessProtocol):
        """
        A child process started with reactor.spawnProcess: write command
        lines to its stdin, get each JSON line it prints as a Deferred.
        Its stderr is shared with ours (progress and errors).
        """

        def __init__(self, reactor, name):
            self.reactor = reactor
            self.name = name
            self.buf = b""
            self.lines = deque()
            self.waiters = deque()
            self.ended = defer.Deferred()
            self.exited = False

        def outReceived(self, data):
            self.buf += data
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                line = line.strip()
                if not line.startswith(b"{"):
                    continue
                obj = json.loads(line)
                if self.waiters:
                    self.waiters.popleft().callback(obj)
                else:
                    self.lines.append(obj)

        def processEnded(self, reason):
            self.exited = True
            waiters, self.waiters = self.waiters, deque()
            for d in waiters:
                if not d.called:
                    d.errback(RuntimeError(f"child {self.name} exited without answering"))
            self.ended.callback(None)

        def next(self, timeout=30.0):
            """The next JSON line of the child (Deferred), bounded by timeout."""
            if self.lines:
                return defer.succeed(self.lines.popleft())
            if self.exited:
                return defer.fail(RuntimeError(f"child {self.name} has exited"))
            d = defer.Deferred()
            self.waiters.append(d)

            def expired(failure):
                if d in self.waiters:
                    self.waiters.remove(d)
                return failure

            d.addTimeout(timeout, self.reactor)
            d.addErrback(expired)
            return d

        def ask(self, command, timeout=30.0):
            self.transport.write((command + "\n").encode())
            return self.next(timeout)

        def quit(self, timeout=10.0):
            """Ask the child to exit; kill it (by its pid) if it does not."""
            if self.exited:
                return defer.succeed(None)
            try:
                self.transport.write(b"quit\n")
                self.transport.closeStdin()
            except Exception:
                pass
            d = defer.Deferred()
            self.ended.addBoth(lambda _: d.called or d.callback(None))

            def kill():
                if not self.exited:
                    log(f"[bench] child {self.name} did not exit, killing it")
                    try:
                        self.transport.signalProcess("KILL")
                    except Exception:
                        pass

            call = self.reactor.callLater(timeout, kill)
            d.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
            return d

    return Child


def spawn_child(reactor, script: str, args: list[str], name: str, prefix: list[str] | None = None):
    """
    Start ``python script args`` as a child (same interpreter, same
    environment); returns the Child protocol.  Wait for its first line with
    ``child.next()``.  ``prefix`` runs it through a command
    (``["ip", "netns", "exec", "ns1"]``).
    """
    Child = _child_protocol_class()
    child = Child(reactor, name)
    argv = [*(prefix or []), sys.executable, script, *args]
    reactor.spawnProcess(
        child,
        argv[0],
        argv,
        env=dict(os.environ),
        childFDs={0: "w", 1: "r", 2: 2},
    )
    return child
