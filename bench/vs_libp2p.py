#!/usr/bin/env python3
"""p2pool against py-libp2p on loopback, in one run (issue #7 item 7).

Both sides are measured by existing scripts, run as subprocesses; this script
only drives them, parses their JSON and computes the ratios:

  p2pool   bench/transport.py --cases a,b,c --impls p2pool --repeat 1
           (this repository's venv; each side in its own process)
             stream  64 KiB application messages, MiB/s    (stream_64k)
             msgs    100-byte messages/s at the receiver   (small_messages_100b)
             connect TCP + TLS + Hello + Ack until Pool.connect() fires,
                     sequential, p50 ms                    (connect_sequential)
  libp2p   /work/shared/bench-limits/libp2p_peer.py, with the python of a
           separate venv that has `pip install libp2p` (two hosts in one trio
           process, Noise + yamux)
             stream  one stream, 65000-byte writes, MiB/s
             msgs    100-byte length-prefixed messages/s at the receiver
             connect dialer with ConnectionConfig(max_connections_per_peer=1),
                     median ms

The two are run alternately --repeat times (default 3; p2pool first in odd
repeats, libp2p first in even ones) and medians are compared.
Targets: p2pool >= 3x libp2p stream throughput, >= 1.5x its 100-byte message
rate, connect latency <= libp2p's.

The libp2p venv: --libp2p-python PATH uses an existing interpreter; by default
/tmp/libp2p-venv is created if missing (`python3 -m venv /tmp/libp2p-venv &&
/tmp/libp2p-venv/bin/pip install libp2p`).  If that fails the script exits
with status 1 and the pip error.

Prints progress on stderr and one JSON object on stdout.  Every subprocess
has a timeout; a default run takes about 1.5 minutes.

Run from the repository root:  PYTHONPATH=. .venv/bin/python bench/vs_libp2p.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _common import check_loopback, env_info, log, summary

DEFAULT_PEER = "/work/shared/bench-limits/libp2p_peer.py"
DEFAULT_VENV = "/tmp/libp2p-venv"

# name: (p2pool figure, libp2p figure, how the ratio is formed, target)
TARGETS = {
    "stream": (">=", 3.0),  # p2pool MiB/s / libp2p MiB/s
    "msgs_100b": (">=", 1.5),  # p2pool msg/s / libp2p msg/s
    "connect": ("<=", 1.0),  # p2pool ms / libp2p ms ("no worse")
}


def ensure_libp2p_python(args) -> str:
    """Return a python that can import libp2p, creating the default venv if needed."""
    if args.libp2p_python:
        py = args.libp2p_python
        if not os.path.exists(py):
            raise SystemExit(f"vs_libp2p: --libp2p-python {py!r} does not exist")
    else:
        venv = args.libp2p_venv
        py = os.path.join(venv, "bin", "python")
        if not os.path.exists(py):
            log(f"[vs_libp2p] creating {venv}: python3 -m venv {venv}")
            r = subprocess.run(["python3", "-m", "venv", venv], capture_output=True, text=True, timeout=300, check=False)
            if r.returncode != 0:
                raise SystemExit(f"vs_libp2p: `python3 -m venv {venv}` failed (rc {r.returncode}):\n{r.stderr.strip()}")
    check = subprocess.run([py, "-c", "import libp2p, trio, multiaddr"], capture_output=True, text=True, timeout=120, check=False)
    if check.returncode != 0:
        if args.libp2p_python:
            raise SystemExit(f"vs_libp2p: {py} cannot import libp2p:\n{check.stderr.strip()[-2000:]}")
        log(f"[vs_libp2p] installing py-libp2p: {py} -m pip install libp2p")
        r = subprocess.run([py, "-m", "pip", "install", "libp2p"], capture_output=True, text=True, timeout=900, check=False)
        if r.returncode != 0:
            tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-25:])
            raise SystemExit(f"vs_libp2p: `{py} -m pip install libp2p` failed (rc {r.returncode}); py-libp2p cannot be measured:\n{tail}")
        check = subprocess.run([py, "-c", "import libp2p, trio, multiaddr"], capture_output=True, text=True, timeout=120, check=False)
        if check.returncode != 0:
            raise SystemExit(f"vs_libp2p: libp2p installed but does not import:\n{check.stderr.strip()[-2000:]}")
    return py


def last_json_line(text: str):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON object on stdout")


def run_p2pool(args) -> dict:
    cmd = [sys.executable, os.path.join(HERE, "transport.py"), "--cases", "a,b,c", "--impls", "p2pool",
           "--repeat", "1", "--host", args.host]
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env, cwd=ROOT, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"transport.py failed (rc {r.returncode}): {r.stderr.strip()[-1500:]}")
    d = last_json_line(r.stdout)
    c = d["cases"]
    conn = c["connect_sequential"]["p2pool"]
    res = {
        "stream_MiB_s": c["stream_64k"]["p2pool"]["median"],
        "msgs_100b_per_s": c["small_messages_100b"]["p2pool"]["median"],
        "connect_ms_p50": conn.get("detail_medians", {}).get("latency_ms_p50"),
        "connect_ms_p99": conn.get("detail_medians", {}).get("latency_ms_p99"),
        "stream_cpu_s": (c["stream_64k"]["p2pool"].get("detail_medians", {}).get("sender_cpu_s") or 0)
        + (c["stream_64k"]["p2pool"].get("detail_medians", {}).get("receiver_cpu_s") or 0),
        "stream_seconds": c["stream_64k"]["p2pool"].get("detail_medians", {}).get("seconds"),
        "msgs_cpu_us_per_msg": (c["small_messages_100b"]["p2pool"].get("detail_medians", {}).get("sender_cpu_us_per_msg") or 0)
        + (c["small_messages_100b"]["p2pool"].get("detail_medians", {}).get("receiver_cpu_us_per_msg") or 0),
        "connects_per_s_sequential": conn["median"],
        "connects_per_s_50_in_flight": c["connect_50_in_flight"]["p2pool"]["median"],
        "wall_s": time.perf_counter() - t0,
        "discarded_noisy_runs": d.get("discarded_noisy_runs"),
    }
    log(f"[vs_libp2p] p2pool: stream {res['stream_MiB_s']:.0f} MiB/s, 100 B {res['msgs_100b_per_s'] / 1e6:.3f} M msg/s, "
        f"connect p50 {res['connect_ms_p50']:.2f} ms [{res['wall_s']:.1f}s]")
    return res


def run_libp2p(args, py) -> dict:
    cmd = [py, args.libp2p_peer, "--host", args.host, "--security", args.security,
           "--mib", str(args.libp2p_mib), "--msg-count", str(args.libp2p_msg_count),
           "--write-size", "65000", "--msg-size", "100", "--connects", str(args.libp2p_connects),
           "--max-seconds", "4", "--hard-limit", "80"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
    try:
        d = last_json_line(r.stdout)
    except ValueError:
        raise RuntimeError(f"libp2p_peer.py printed no JSON (rc {r.returncode}): {r.stderr.strip()[-1500:]}")
    if "error" in d:
        raise RuntimeError(f"libp2p_peer.py: {d['error']}")
    c = d["cases"]
    errors = {k: v["error"] for k, v in c.items() if "error" in v}
    if errors:
        raise RuntimeError(f"libp2p_peer.py case errors: {errors}")
    res = {
        "stream_MiB_s": c["stream"]["MiB_per_s"],
        "stream_bytes": c["stream"]["bytes"],
        "stream_seconds": c["stream"]["seconds"],
        "stream_cpu_s": c["stream"].get("process_cpu_s"),
        "msgs_100b_per_s": c["msgs"]["msgs_per_s"],
        "msgs_count": c["msgs"]["messages"],
        "connect_ms_median": c["connect_mcpp1"].get("ms_median"),
        "connect_ms_min": c["connect_mcpp1"].get("ms_min"),
        "connect_count": c["connect_mcpp1"].get("count"),
        "connect_default_dialer_ms_median": c["connect"].get("ms_median"),
        "wall_s": time.perf_counter() - t0,
        "env": d.get("env"),
    }
    log(f"[vs_libp2p] libp2p: stream {res['stream_MiB_s']:.0f} MiB/s, 100 B {res['msgs_100b_per_s'] / 1e6:.3f} M msg/s, "
        f"connect (mcpp=1) median {res['connect_ms_median']:.2f} ms [{res['wall_s']:.1f}s]")
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="alternating runs of each side; medians compared (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address (127.0.0.x only; default %(default)s)")
    p.add_argument("--libp2p-python", default=None, metavar="PATH", help="python of a venv with libp2p installed (default: create/use --libp2p-venv)")
    p.add_argument("--libp2p-venv", default=DEFAULT_VENV, help="venv created when --libp2p-python is not given (default %(default)s)")
    p.add_argument("--libp2p-peer", default=DEFAULT_PEER, help="py-libp2p driver script (default %(default)s)")
    p.add_argument("--security", choices=["noise", "tls"], default="noise", help="py-libp2p security transport (default %(default)s)")
    p.add_argument("--libp2p-mib", type=float, default=1024, help="stream cap in MiB (4 s cap too; default %(default)s)")
    p.add_argument("--libp2p-msg-count", type=int, default=5_000_000, help="100 B message cap (4 s cap too; default %(default)s)")
    p.add_argument("--libp2p-connects", type=int, default=30, help="sequential connects timed (default %(default)s)")
    p.add_argument("--timeout", type=float, default=180, help="timeout of each subprocess in seconds (default %(default)s)")
    args = p.parse_args()
    check_loopback(args.host)
    if not os.path.exists(args.libp2p_peer):
        raise SystemExit(f"vs_libp2p: {args.libp2p_peer} not found")

    t_start = time.perf_counter()
    py = ensure_libp2p_python(args)
    runs = {"p2pool": [], "libp2p": []}
    for i in range(args.repeat):
        order = ("p2pool", "libp2p") if i % 2 == 0 else ("libp2p", "p2pool")
        log(f"[vs_libp2p] repeat {i + 1}/{args.repeat}: {' then '.join(order)}")
        for side in order:
            runs[side].append(run_p2pool(args) if side == "p2pool" else run_libp2p(args, py))

    def s(side, key):
        return summary([r[key] for r in runs[side]])

    figures = {
        "stream": {"unit": "MiB/s", "p2pool": s("p2pool", "stream_MiB_s"), "libp2p": s("libp2p", "stream_MiB_s"),
                   "p2pool_what": "64 KiB Connection.send messages, two processes",
                   "libp2p_what": "one yamux stream, 65000-byte writes, two hosts in one process"},
        "msgs_100b": {"unit": "msg/s", "p2pool": s("p2pool", "msgs_100b_per_s"), "libp2p": s("libp2p", "msgs_100b_per_s"),
                      "p2pool_what": "one Connection.send per 100 B message, two processes",
                      "libp2p_what": "prebuilt ~64 KiB blobs of length-prefixed 100 B messages, one stream, one process"},
        "connect": {"unit": "ms", "p2pool": s("p2pool", "connect_ms_p50"), "libp2p": s("libp2p", "connect_ms_median"),
                    "p2pool_what": "sequential TCP+TLS1.3+Hello+Ack until Pool.connect() fires, p50",
                    "libp2p_what": "sequential TCP+multistream+Noise+yamux, max_connections_per_peer=1, median"},
    }
    ratios, met, per_repeat = {}, {}, {}
    keys = {"stream": ("stream_MiB_s", "stream_MiB_s"), "msgs_100b": ("msgs_100b_per_s", "msgs_100b_per_s"),
            "connect": ("connect_ms_p50", "connect_ms_median")}
    for side in ("p2pool", "libp2p"):
        for r in runs[side]:
            mib = r["stream_MiB_s"] * r["stream_seconds"] if r.get("stream_seconds") else None
            r["stream_cpu_ms_per_MiB"] = (1e3 * r["stream_cpu_s"] / mib) if (mib and r.get("stream_cpu_s")) else None
    # informational (no target): CPU of both ends per MiB moved; the libp2p
    # figure is its one process, which holds both ends
    figures["stream_cpu_per_MiB"] = {"unit": "CPU ms/MiB", "p2pool": s("p2pool", "stream_cpu_ms_per_MiB"),
                                     "libp2p": s("libp2p", "stream_cpu_ms_per_MiB")}
    figures["msgs_100b_cpu_per_msg"] = {"unit": "CPU us/msg", "p2pool": s("p2pool", "msgs_cpu_us_per_msg"),
                                        "libp2p": None, "libp2p_what": "not reported by libp2p_peer.py"}
    for name, (op, target) in TARGETS.items():
        a, b = figures[name]["p2pool"]["median"], figures[name]["libp2p"]["median"]
        ratios[name] = a / b if (a is not None and b) else None
        met[name] = None if ratios[name] is None else (ratios[name] >= target if op == ">=" else ratios[name] <= target)
        ka, kb = keys[name]
        per_repeat[name] = [x[ka] / y[kb] for x, y in zip(runs["p2pool"], runs["libp2p"]) if y[kb]]
    out = {
        "bench": "vs_libp2p",
        "figures": figures,
        "ratios": ratios,
        "ratio_meaning": {"stream": "p2pool MiB/s / libp2p MiB/s", "msgs_100b": "p2pool msg/s / libp2p msg/s",
                          "connect": "p2pool ms / libp2p ms (lower is better)"},
        "ratios_per_repeat": per_repeat,
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
        "met": met,
        "runs": runs,
        "settings": {"repeat": args.repeat, "host": args.host, "libp2p_python": py, "security": args.security,
                     "libp2p_mib": args.libp2p_mib, "libp2p_msg_count": args.libp2p_msg_count,
                     "libp2p_connects": args.libp2p_connects},
        "env": env_info(),
        "wall_s": time.perf_counter() - t_start,
    }
    out["metrics"] = [
        {"name": f"vs_libp2p/{name}/{side}", "unit": f["unit"], "value": f[side]["median"]}
        for name, f in figures.items()
        for side in ("p2pool", "libp2p")
        if f.get(side)
    ]
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f"vs_libp2p: {e}", file=sys.stderr)
        sys.exit(1)
