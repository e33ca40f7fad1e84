"""
Start-up with a large peers file: a real node (C{twistd -n p2pool}) is
started on a data directory holding a peers file, and the time from the
spawn to its C{listening} log line is measured, with the node's peak RSS
(C{VmHWM}) at that moment. The baseline is the same node started on the same
data directory without a peers file, in the same run.

    PYTHONPATH=. /work/venv/bin/python bench/startup.py [--repeat 3] [--source DIR]
    PYTHONPATH=. /work/venv/bin/python bench/startup.py --quick   # small files, once

Cases:

  - C{known_100k}: a file written by a pool that knows 100k peers and 100k
    points (the file of C{bench/persistence.py} at 100k, 93 MiB), loaded by
    a node whose tables hold them (C{--max-known-points 200000,100000
    --max-known-peer-ids 200000,100000}). Target (issue 16 item 4): listening
    within 2 s.
  - C{oversized_200mb}: a valid 200 MB file of points, and a node with the
    default configuration. Target (issue 14 item 6): moved aside or trimmed
    within 5 s and 256 MiB peak.

For C{known}, the node is kept until it logs that the file's records are
in (C{loaded_s}, and the peak RSS then; C{peak_rss_listening_mib} at
listening), while a thread runs TLS handshakes with it one after another
(C{handshakes_while_loading}: how many, median and longest).

C{--source DIR} runs the nodes from another copy of the code (for example
the previous commit, unpacked with C{git archive}), to compare old and new
back to back; the files are written by this copy. Such a node is taken to
load its records before it listens (the start before issue 16), so its
C{loaded_s} is its C{listening_s}. Each figure is the median
of C{--repeat} runs. Prints progress on stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import selectors
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from persistence import ForeignLoad, make_pool, snapshot_pool_sync
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from p2pool.core.identity import save_identity
from p2pool.pool.persistence import write_snapshot
from tests.helpers import identity
from tests.processes import node_argv

NETWORK = "bench"
IP = "127.0.0.61"
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LISTENING = re.compile(r"listening point=(\S+)")
# The line a node logs once its peers file's records are in (a node that
# loads them before it listens logs none: see --source).
_LOADED = re.compile(r"Peers file \S+ loaded: ")


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found")


class HandshakeProbe:
    """
    TLS handshakes with a node, one after another, each timed from the
    TCP connect until the node has answered (the client's side of the TLS
    handshake completes, or the node refuses or closes the connection:
    either way its reactor turned); run in a thread while the node loads
    its peers file. C{failures} counts attempts left unanswered for 30 s.
    """

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._stop = threading.Event()
        self.seconds: list[float] = []
        self.failures = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                with socket.create_connection(self._address, timeout=30) as raw:
                    with context.wrap_socket(raw) as tls:
                        tls.do_handshake()
            except TimeoutError:
                self.failures += 1
                continue
            except OSError:
                # The node answered, refusing (this client has no identity
                # it accepts, and repeated failures greylist its address):
                # its reactor turned all the same.
                pass
            self.seconds.append(time.perf_counter() - started)
            self._stop.wait(0.05)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        times = sorted(self.seconds)
        return {
            "handshakes": len(times),
            "failures": self.failures,
            "median_ms": round(1000 * statistics.median(times), 1) if times else None,
            "max_ms": round(1000 * times[-1], 1) if times else None,
        }


def start_node(
    source: str, data_dir: str, args: list[str], timeout: float, until_loaded: bool = False
) -> dict[str, Any]:
    """
    Start a node on C{data_dir}, wait for its C{listening} line (and, with
    C{until_loaded}, for its line saying the peers file is loaded, TLS
    handshakes with it running meanwhile), kill it (SIGKILL: no save at
    shutdown, the file stays as it was); the seconds to listening (and to
    loaded), its peak RSS then, and its log lines about the peers file.
    """
    argv = node_argv(f"{IP}:0", data_dir, NETWORK, "--maintenance-idle-time", "false", *args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2POOL_")}
    env["PYTHONPATH"] = source
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=data_dir)
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    buffer = b""
    lines: list[str] = []
    elapsed: float | None = None
    loaded: float | None = None
    peak = peak_listening = None
    probe: HandshakeProbe | None = None
    probed: dict[str, Any] | None = None
    try:
        while (elapsed is None or (until_loaded and loaded is None)) and time.perf_counter() - started < timeout:
            if not selector.select(0.5):
                if process.poll() is not None:
                    break
                continue
            chunk = process.stdout.read()
            if not chunk:
                if process.poll() is not None:
                    break
                continue
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                line = raw.decode("utf-8", "replace")
                lines.append(line)
                listening = _LISTENING.search(line)
                if elapsed is None and listening:
                    elapsed = time.perf_counter() - started
                    peak = peak_listening = _peak_rss_mib(process.pid)
                    if until_loaded:
                        host, port = listening.group(1).rsplit(":", 1)
                        probe = HandshakeProbe(host, int(port))
                if elapsed is not None and loaded is None and _LOADED.search(line):
                    loaded = time.perf_counter() - started
                    peak = _peak_rss_mib(process.pid)
    finally:
        if probe is not None:
            probed = probe.stop()
        exit_status = process.poll()
        if exit_status is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
        selector.close()
        process.stdout.close()
    if elapsed is None or (until_loaded and loaded is None):
        what = f"exited ({exit_status})" if exit_status is not None else f"did not listen and load within {timeout} s"
        raise RuntimeError(f"the node {what}; it said:\n" + "\n".join(lines[-20:]))
    return {
        "listening_s": elapsed,
        "loaded_s": loaded if until_loaded else elapsed,
        "peak_rss_listening_mib": peak_listening,
        "peak_rss_mib": peak,
        "handshakes_while_loading": probed,
        "peers_file_lines": [line.split(" ", 2)[-1] for line in lines if "Peers file" in line or "peers.json" in line],
    }


def write_known_file(size: int, data_dir: str) -> int:
    """
    The peers file of a pool knowing C{size} peers and C{size} points.
    """
    pool = make_pool(size, MemoryReactorClock(), data_dir)
    pool.events.emit = lambda *a, **k: None  # type: ignore[method-assign]
    return write_snapshot(os.path.join(data_dir, "peers.json"), snapshot_pool_sync(pool, Clock()))


def write_oversized_file(size_bytes: int, path: str) -> int:
    """
    A valid peers file of about C{size_bytes} bytes, all points (different
    addresses, each once failed).
    """
    with open(path, "w") as out:
        out.write('{"format": 1, "network": "%s", "saved_at": "2024-05-01T00:00:00.000Z",\n"peers": [],\n' % NETWORK)
        out.write('"points": [\n')
        written = 0
        i = 0
        while written < size_bytes:
            batch = ",\n".join(
                '{"point": "10.%d.%d.%d:%d", "trusted": false, "known_public": true, '
                '"last_failed_connection": "2024-04-30T12:00:00.%03dZ"}'
                % (j >> 16 & 255, j >> 8 & 255, j & 255, 1024 + (j >> 24), j % 1000)
                for j in range(i, i + 10000)
            )
            i += 10000
            if written:
                out.write(",\n")
            out.write(batch)
            written += len(batch)
        out.write('\n],\n"bans": {"ips": [], "peers": []}}\n')
        return out.tell()


def _restore(data_dir: str, name: str) -> None:
    """
    Put back a peers file the node moved aside, and remove what else it
    left, so that every run starts from the same directory.
    """
    for entry in os.listdir(data_dir):
        if entry.startswith("peers.json.") and entry != name:
            path = os.path.join(data_dir, entry)
            if ".too-large-" in entry or ".corrupt-" in entry:
                os.replace(path, os.path.join(data_dir, "peers.json"))
            else:
                os.unlink(path)


def run_case(
    source: str, data_dir: str, args: list[str], repeat: int, timeout: float, until_loaded: bool = False
) -> dict[str, Any]:
    runs = []
    for _ in range(repeat):
        _restore(data_dir, "peers.json")
        with ForeignLoad() as load:
            run = start_node(source, data_dir, args, timeout, until_loaded)
        run["foreign_cpu_share"] = load.share
        runs.append(run)
    _restore(data_dir, "peers.json")
    keys = ("listening_s", "loaded_s", "peak_rss_listening_mib", "peak_rss_mib")
    result: dict[str, Any] = {key: round(statistics.median(r[key] for r in runs), 3) for key in keys}
    result["runs_loaded_s"] = [round(r["loaded_s"], 3) for r in runs]
    result["handshakes_while_loading"] = [r["handshakes_while_loading"] for r in runs]
    result["foreign_cpu_share"] = round(statistics.median(r["foreign_cpu_share"] for r in runs), 3)
    result["runs_listening_s"] = [round(r["listening_s"], 3) for r in runs]
    result["peers_file_lines"] = runs[-1]["peers_file_lines"][:4]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=None, help="runs per case, medians reported (default 3)")
    parser.add_argument("--quick", action="store_true", help="1k peers and points, a 2 MB file, once")
    parser.add_argument("--source", default=SOURCE_ROOT, help="the code the nodes run (default: this copy)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a node may take to listen")
    parser.add_argument(
        "--cases", default="known,oversized", help="which cases to run: known, oversized (default both)"
    )
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    known = 1000 if args.quick else 100_000
    oversized = 2_000_000 if args.quick else 200_000_000
    source = os.path.abspath(args.source)
    root = tempfile.mkdtemp(prefix="p2pool-bench-startup-")
    cases: dict[str, Any] = {}
    try:
        wanted = set(args.cases.split(","))
        if "known" in wanted:
            _known_case(cases, root, source, known, repeat, args.timeout)
        if "oversized" in wanted:
            _oversized_case(cases, root, source, oversized, repeat, args.timeout)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        json.dumps(
            {
                "cases": cases,
                "settings": {"repeat": repeat, "quick": args.quick, "source": source},
                "targets": {
                    "known_100k_listening_s": "<= 2 (beyond the empty start: listening_beyond_empty_s)",
                    "oversized_200mb_listening_s": "<= 5",
                    "oversized_200mb_peak_rss_mib": "<= 256",
                },
                "env": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "load_average": [round(v, 2) for v in os.getloadavg()],
                },
            }
        )
    )


def _known_case(cases: dict[str, Any], root: str, source: str, known: int, repeat: int, timeout: float) -> None:
    """
    The node with tables for C{known} peers and points, started without a
    peers file, then with one holding that many.
    """
    # Room for all of them: a table at its max would be trimmed at once.
    limits = ["--max-known-points", f"{2 * known},{known}", "--max-known-peer-ids", f"{2 * known},{known}"]
    empty = os.path.join(root, "empty")
    os.makedirs(empty)
    save_identity(os.path.join(empty, "identity.json"), identity(0))
    print(f"startup: empty data directory, {repeat} run(s)", file=sys.stderr)
    cases["empty"] = run_case(source, empty, limits, repeat, timeout)
    full = os.path.join(root, "known")
    os.makedirs(full)
    save_identity(os.path.join(full, "identity.json"), identity(0))
    size = write_known_file(known, full)
    print(f"startup: {known} known peers and points ({size / 2**20:.1f} MiB)", file=sys.stderr)
    cases["known"] = {"peers_and_points": known, "file_mib": round(size / 2**20, 1)}
    # A node of this copy logs when its records are in; one of another
    # copy (--source, the old start) has loaded them before it listens.
    cases["known"].update(run_case(source, full, limits, repeat, timeout, until_loaded=source == SOURCE_ROOT))
    shutil.rmtree(full)
    cases["known"]["listening_beyond_empty_s"] = round(cases["known"]["listening_s"] - cases["empty"]["listening_s"], 3)


def _oversized_case(cases: dict[str, Any], root: str, source: str, oversized: int, repeat: int, timeout: float) -> None:
    """
    The node with the default configuration, started with a valid peers
    file of about C{oversized} bytes, then without it.
    """
    big = os.path.join(root, "oversized")
    os.makedirs(big)
    save_identity(os.path.join(big, "identity.json"), identity(0))
    size = write_oversized_file(oversized, os.path.join(big, "peers.json"))
    print(f"startup: a {size / 1e6:.0f} MB peers file, default configuration", file=sys.stderr)
    cases["oversized"] = {"file_mb": round(size / 1e6, 1)}
    cases["oversized"].update(run_case(source, big, [], repeat, timeout))
    os.unlink(os.path.join(big, "peers.json"))
    print("startup: the empty start with the default configuration", file=sys.stderr)
    cases["empty_defaults"] = run_case(source, big, [], repeat, timeout)
    cases["oversized"]["listening_beyond_empty_s"] = round(
        cases["oversized"]["listening_s"] - cases["empty_defaults"]["listening_s"], 3
    )
    cases["oversized"]["peak_rss_beyond_empty_mib"] = round(
        cases["oversized"]["peak_rss_mib"] - cases["empty_defaults"]["peak_rss_mib"], 1
    )


if __name__ == "__main__":
    main()
