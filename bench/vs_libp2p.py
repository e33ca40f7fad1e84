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
  libp2p   bench/_libp2p_driver.py, with a python that has py-libp2p
           (`pip install libp2p`; two hosts in one trio process, Noise + yamux)
             stream  one stream, 65000-byte writes, MiB/s
             msgs    100-byte length-prefixed messages/s at the receiver
             connect dialer with ConnectionConfig(max_connections_per_peer=1),
                     median ms

The two are run alternately --repeat times (default 3; p2pool first in odd
repeats, libp2p first in even ones) and medians are compared.
Targets: p2pool >= 3x libp2p stream throughput, >= 1.5x its 100-byte message
rate, connect latency <= libp2p's.

The python that runs py-libp2p, first found of:
  1. --libp2p-python PATH;
  2. this python, if it can import libp2p;
  3. the python of --libp2p-venv (default: libp2p-venv in the temporary
     directory), if it can import libp2p;
  4. that venv, made now (`python3 -m venv VENV && VENV/bin/pip install
     libp2p`), except with --quick or --no-install.
When there is none (or the install fails), py-libp2p is skipped, saying why
on stderr and in the JSON ("skipped": {"libp2p": why}), and the script exits
with status 0: a full run then measures nothing (p2pool alone compares with
nothing), a --quick run still runs the p2pool side.

--quick is a smoke run: one repeat, p2pool's side with transport.py --quick,
py-libp2p's with 0.6 s caps and 5 connects; about 15 s.

Prints progress on stderr and one JSON object on stdout.  Every subprocess
has a timeout; a default run takes about 1.5 minutes.  Exits with status 1
when a side that ran failed.

Run from the repository root:  PYTHONPATH=. .venv/bin/python bench/vs_libp2p.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _common import check_loopback, env_info, log, summary  # noqa: E402 (bench/ joins sys.path above)

DRIVER = os.path.join(HERE, "_libp2p_driver.py")
DEFAULT_VENV = os.path.join(tempfile.gettempdir(), "libp2p-venv")
IMPORT_CHECK = "import libp2p, trio, multiaddr"

# name: (p2pool figure, libp2p figure, how the ratio is formed, target)
TARGETS = {
    "stream": (">=", 3.0),  # p2pool MiB/s / libp2p MiB/s
    "msgs_100b": (">=", 1.5),  # p2pool msg/s / libp2p msg/s
    "connect": ("<=", 1.0),  # p2pool ms / libp2p ms ("no worse")
}


class NoLibp2p(Exception):
    """No python that can run py-libp2p; the message says why."""


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _imports_libp2p(py: str) -> str | None:
    """None if C{py} can import py-libp2p, else why not."""
    try:
        check = subprocess.run([py, "-c", IMPORT_CHECK], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return f"{py} did not run: {e}"
    return None if check.returncode == 0 else f"{py} cannot import libp2p ({_tail(check.stderr, 1)})"


def find_libp2p_python(args) -> str:
    """
    A python that can import py-libp2p (see the module's docstring for the
    order); raises L{NoLibp2p} saying why there is none.
    """
    if args.libp2p_python:
        why = _imports_libp2p(args.libp2p_python)
        if why:
            raise NoLibp2p(why)
        return args.libp2p_python
    if _imports_libp2p(sys.executable) is None:
        return sys.executable
    venv = args.libp2p_venv
    py = os.path.join(venv, "bin", "python")
    if os.path.exists(py):
        why = _imports_libp2p(py)
        if why is None:
            return py
    else:
        why = f"{venv} does not exist"
    if args.quick or args.no_install:
        raise NoLibp2p(
            f"py-libp2p is not importable here ({why}) and {'--quick' if args.quick else '--no-install'} "
            f"does not install it; run `python3 -m venv {venv} && {py} -m pip install libp2p`"
        )
    steps = ([] if os.path.exists(py) else [["python3", "-m", "venv", venv]]) + [[py, "-m", "pip", "install", "libp2p"]]
    for cmd in steps:
        log(f"[vs_libp2p] {' '.join(cmd)}")
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            raise NoLibp2p(f"`{' '.join(cmd)}` did not run: {e}") from None
        if r.returncode != 0:
            raise NoLibp2p(f"`{' '.join(cmd)}` failed (status {r.returncode}): {_tail(r.stdout + r.stderr)}")
    why = _imports_libp2p(py)
    if why:
        raise NoLibp2p(f"libp2p was installed but does not import: {why}")
    return py


def last_json_line(text: str):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON object on stdout")


def run_p2pool(args) -> dict:
    cmd = [
        sys.executable,
        os.path.join(HERE, "transport.py"),
        "--cases",
        "a,b,c",
        "--impls",
        "p2pool",
        "--repeat",
        "1",
        "--host",
        args.host,
    ] + (["--quick"] if args.quick else [])
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
        "msgs_cpu_us_per_msg": (
            c["small_messages_100b"]["p2pool"].get("detail_medians", {}).get("sender_cpu_us_per_msg") or 0
        )
        + (c["small_messages_100b"]["p2pool"].get("detail_medians", {}).get("receiver_cpu_us_per_msg") or 0),
        "connects_per_s_sequential": conn["median"],
        "connects_per_s_50_in_flight": c["connect_50_in_flight"]["p2pool"]["median"],
        "wall_s": time.perf_counter() - t0,
        "discarded_noisy_runs": d.get("discarded_noisy_runs"),
    }
    log(
        f"[vs_libp2p] p2pool: stream {res['stream_MiB_s']:.0f} MiB/s, 100 B {res['msgs_100b_per_s'] / 1e6:.3f} M msg/s, "
        f"connect p50 {res['connect_ms_p50']:.2f} ms [{res['wall_s']:.1f}s]"
    )
    return res


def run_libp2p(args, py) -> dict:
    cmd = [
        py,
        DRIVER,
        "--host",
        args.host,
        "--security",
        args.security,
        "--mib",
        str(args.libp2p_mib),
        "--msg-count",
        str(args.libp2p_msg_count),
        "--write-size",
        "65000",
        "--msg-size",
        "100",
        "--connects",
        str(args.libp2p_connects),
        "--max-seconds",
        str(args.libp2p_seconds),
        "--hard-limit",
        "80",
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
    try:
        d = last_json_line(r.stdout)
    except ValueError:
        raise RuntimeError(
            f"_libp2p_driver.py printed no JSON (rc {r.returncode}): {r.stderr.strip()[-1500:]}"
        ) from None
    if "error" in d:
        raise RuntimeError(f"_libp2p_driver.py: {d['error']}")
    c = d["cases"]
    errors = {k: v["error"] for k, v in c.items() if "error" in v}
    if errors:
        raise RuntimeError(f"_libp2p_driver.py case errors: {errors}")
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
    log(
        f"[vs_libp2p] libp2p: stream {res['stream_MiB_s']:.0f} MiB/s, 100 B {res['msgs_100b_per_s'] / 1e6:.3f} M msg/s, "
        f"connect (mcpp=1) median {res['connect_ms_median']:.2f} ms [{res['wall_s']:.1f}s]"
    )
    return res


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="a smoke run: one repeat, small caps, py-libp2p only if already installed"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="alternating runs of each side; medians compared (default 3; --quick 1)",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address (127.0.0.x only; default %(default)s)")
    p.add_argument(
        "--libp2p-python", default=None, metavar="PATH", help="python with py-libp2p installed (default: see above)"
    )
    p.add_argument(
        "--libp2p-venv",
        default=DEFAULT_VENV,
        help="venv used, and made if missing, when this python has no py-libp2p (default %(default)s)",
    )
    p.add_argument(
        "--no-install", action="store_true", help="never make the venv or install py-libp2p; skip it when missing"
    )
    p.add_argument(
        "--security",
        choices=["noise", "tls"],
        default="noise",
        help="py-libp2p security transport (default %(default)s)",
    )
    p.add_argument("--libp2p-mib", type=float, default=None, help="stream cap in MiB (default 1024; --quick 64)")
    p.add_argument(
        "--libp2p-msg-count", type=int, default=None, help="100 B message cap (default 5,000,000; --quick 100,000)"
    )
    p.add_argument(
        "--libp2p-connects", type=int, default=None, help="sequential connects timed (default 30; --quick 5)"
    )
    p.add_argument(
        "--libp2p-seconds", type=float, default=None, help="time cap of each py-libp2p case (default 4; --quick 0.6)"
    )
    p.add_argument(
        "--timeout", type=float, default=180, help="timeout of each subprocess in seconds (default %(default)s)"
    )
    args = p.parse_args()
    check_loopback(args.host)
    if args.libp2p_python and not os.path.exists(args.libp2p_python):
        p.error(f"--libp2p-python {args.libp2p_python!r} does not exist")
    defaults = {
        "repeat": (3, 1),
        "libp2p_mib": (1024, 64),
        "libp2p_msg_count": (5_000_000, 100_000),
        "libp2p_connects": (30, 5),
        "libp2p_seconds": (4.0, 0.6),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def compare(runs) -> dict:
    """The figures of both sides, their ratios and whether the targets are met."""

    def s(side, key):
        return summary([r[key] for r in runs[side]])

    figures = {
        "stream": {
            "unit": "MiB/s",
            "p2pool": s("p2pool", "stream_MiB_s"),
            "libp2p": s("libp2p", "stream_MiB_s"),
            "p2pool_what": "64 KiB Connection.send messages, two processes",
            "libp2p_what": "one yamux stream, 65000-byte writes, two hosts in one process",
        },
        "msgs_100b": {
            "unit": "msg/s",
            "p2pool": s("p2pool", "msgs_100b_per_s"),
            "libp2p": s("libp2p", "msgs_100b_per_s"),
            "p2pool_what": "one Connection.send per 100 B message, two processes",
            "libp2p_what": "prebuilt ~64 KiB blobs of length-prefixed 100 B messages, one stream, one process",
        },
        "connect": {
            "unit": "ms",
            "p2pool": s("p2pool", "connect_ms_p50"),
            "libp2p": s("libp2p", "connect_ms_median"),
            "p2pool_what": "sequential TCP+TLS1.3+Hello+Ack until Pool.connect() fires, p50",
            "libp2p_what": "sequential TCP+multistream+Noise+yamux, max_connections_per_peer=1, median",
        },
    }
    ratios, met, per_repeat = {}, {}, {}
    keys = {
        "stream": ("stream_MiB_s", "stream_MiB_s"),
        "msgs_100b": ("msgs_100b_per_s", "msgs_100b_per_s"),
        "connect": ("connect_ms_p50", "connect_ms_median"),
    }
    for side in ("p2pool", "libp2p"):
        for r in runs[side]:
            mib = r["stream_MiB_s"] * r["stream_seconds"] if r.get("stream_seconds") else None
            r["stream_cpu_ms_per_MiB"] = (1e3 * r["stream_cpu_s"] / mib) if (mib and r.get("stream_cpu_s")) else None
    # informational (no target): CPU of both ends per MiB moved; the libp2p
    # figure is its one process, which holds both ends
    figures["stream_cpu_per_MiB"] = {
        "unit": "CPU ms/MiB",
        "p2pool": s("p2pool", "stream_cpu_ms_per_MiB"),
        "libp2p": s("libp2p", "stream_cpu_ms_per_MiB"),
    }
    figures["msgs_100b_cpu_per_msg"] = {
        "unit": "CPU us/msg",
        "p2pool": s("p2pool", "msgs_cpu_us_per_msg"),
        "libp2p": None,
        "libp2p_what": "not reported by _libp2p_driver.py",
    }
    for name, (op, target) in TARGETS.items():
        a, b = figures[name]["p2pool"]["median"], figures[name]["libp2p"]["median"]
        ratios[name] = a / b if (a is not None and b) else None
        met[name] = None if ratios[name] is None else (ratios[name] >= target if op == ">=" else ratios[name] <= target)
        ka, kb = keys[name]
        per_repeat[name] = [x[ka] / y[kb] for x, y in zip(runs["p2pool"], runs["libp2p"]) if y[kb]]
    metrics = [
        {"name": f"vs_libp2p/{name}/{side}", "unit": f["unit"], "value": f[side]["median"]}
        for name, f in figures.items()
        for side in ("p2pool", "libp2p")
        if f.get(side) and f[side]["median"] is not None
    ]
    return {
        "figures": figures,
        "ratios": ratios,
        "ratio_meaning": {
            "stream": "p2pool MiB/s / libp2p MiB/s",
            "msgs_100b": "p2pool msg/s / libp2p msg/s",
            "connect": "p2pool ms / libp2p ms (lower is better)",
        },
        "ratios_per_repeat": per_repeat,
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
        "met": met,
        "metrics": metrics,
    }


def main():
    args = parse_args()
    t_start = time.perf_counter()
    skipped = {}
    try:
        py = find_libp2p_python(args)
    except NoLibp2p as e:
        py = None
        skipped["libp2p"] = str(e)
        log(f"[vs_libp2p] skipping py-libp2p: {e}")
        if not args.quick:
            skipped["p2pool"] = "not run: there is no py-libp2p to compare it with (--quick runs it anyway)"
    sides = [side for side in ("p2pool", "libp2p") if side not in skipped]
    runs = {"p2pool": [], "libp2p": []}
    for i in range(args.repeat if sides else 0):
        order = [side for side in (("p2pool", "libp2p") if i % 2 == 0 else ("libp2p", "p2pool")) if side in sides]
        log(f"[vs_libp2p] repeat {i + 1}/{args.repeat}: {' then '.join(order)}")
        for side in order:
            runs[side].append(run_p2pool(args) if side == "p2pool" else run_libp2p(args, py))
    out = {"bench": "vs_libp2p", "quick": args.quick, "skipped": skipped}
    if sides:
        out.update(compare(runs))
        out["runs"] = runs
    out["settings"] = {
        "repeat": args.repeat,
        "host": args.host,
        "libp2p_python": py,
        "security": args.security,
        "libp2p_mib": args.libp2p_mib,
        "libp2p_msg_count": args.libp2p_msg_count,
        "libp2p_connects": args.libp2p_connects,
        "libp2p_seconds": args.libp2p_seconds,
    }
    out["env"] = env_info()
    out["wall_s"] = time.perf_counter() - t_start
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f"vs_libp2p: {e}", file=sys.stderr)
        sys.exit(1)
