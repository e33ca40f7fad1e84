"""The py-libp2p side of ``bench/vs_libp2p.py``: two py-libp2p hosts in one
trio process, on loopback, measured the way ``bench/transport.py`` measures
p2pool.

Run it with the python of an environment that has py-libp2p
(``pip install libp2p``); ``bench/vs_libp2p.py`` finds or makes one and runs
this script there.  It needs nothing from p2pool, and nothing from this
directory but ``_common.check_loopback`` (standard library only).

Cases (each bounded by --max-seconds, and the whole run by --hard-limit):

  connect        the dialer host connects to the listener --connects times,
                 disconnecting in between: TCP + multistream-select +
                 security handshake + muxer, ms per connection.  This is
                 py-libp2p's default dialer, whose dial waits out a 250 ms
                 happy-eyeballs delay; it is reported, not compared.
  connect_mcpp1  the same with a dialer built with
                 ConnectionConfig(max_connections_per_peer=1), whose dial
                 returns as soon as one connection is up (the figure
                 compared with p2pool's connect latency).
  stream         one stream; up to --mib MiB in --write-size writes, then the
                 write side is closed; the listener counts the bytes until EOF
                 and answers with the count (8 bytes).  MiB/s from the first
                 write to the answer.
  msgs           one stream of 4-byte-length-prefixed --msg-size messages,
                 written as prebuilt blobs of about 64 KiB and ended by an
                 empty message; the listener parses every message and answers
                 with its count and its own clock (JSON line).  Messages per
                 second at the listener.

--security: noise (py-libp2p's first choice) or tls (its TLS 1.3
transport).  Muxer: py-libp2p's default (yamux).

Prints progress on stderr and one JSON object on stdout; exits with status 1
when a case failed (the case has an "error" in the JSON), or the whole run
did (an "error" at the top).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import struct
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import check_loopback, log

SINK = "/p2pool-bench/sink/1.0.0"
MESSAGES = "/p2pool-bench/messages/1.0.0"
COUNT = struct.Struct(">Q")
LENGTH = struct.Struct(">I")
READ_SIZE = 1 << 20


def new_host(security: str, max_connections_per_peer: int | None = None) -> Any:
    """A py-libp2p host with an Ed25519 identity and the chosen security transport."""
    from libp2p import new_host as make
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.network.config import ConnectionConfig

    key_pair = create_new_key_pair()
    if security == "noise":
        from libp2p.crypto.x25519 import create_new_key_pair as create_x25519
        from libp2p.security.noise.transport import PROTOCOL_ID, Transport

        sec_opt = {PROTOCOL_ID: Transport(key_pair, noise_privkey=create_x25519().private_key)}
    else:
        from libp2p.security.tls.transport import PROTOCOL_ID, TLSTransport

        sec_opt = {PROTOCOL_ID: TLSTransport(key_pair)}
    config = (
        None
        if max_connections_per_peer is None
        else ConnectionConfig(max_connections_per_peer=max_connections_per_peer)
    )
    return make(key_pair=key_pair, sec_opt=sec_opt, connection_config=config)


async def read_until_eof(stream: Any) -> bytes | None:
    """One read; None at the end of the stream (py-libp2p raises or returns b"")."""
    try:
        data = await stream.read(READ_SIZE)
    except Exception:  # noqa: BLE001 (StreamEOF and its relatives)
        return None
    return data or None


async def sink_handler(stream: Any) -> None:
    """Count bytes until EOF, answer with the count."""
    total = 0
    while (data := await read_until_eof(stream)) is not None:
        total += len(data)
    await stream.write(COUNT.pack(total))
    await stream.close()


async def messages_handler(stream: Any) -> None:
    """Parse length-prefixed messages until the empty one; answer with the count and time."""
    pending = b""
    count = 0
    first = None
    done = False
    while not done and (data := await read_until_eof(stream)) is not None:
        if first is None:
            first = time.perf_counter()
        data = pending + data if pending else data
        pos, end = 0, len(data)
        while end - pos >= LENGTH.size:
            stop = pos + LENGTH.size + LENGTH.unpack_from(data, pos)[0]
            if stop > end:
                break
            if stop == pos + LENGTH.size:
                done = True
                break
            count += 1
            pos = stop
        pending = data[pos:]
    last = time.perf_counter()
    await stream.write(json.dumps({"count": count, "seconds": last - (first or last)}).encode() + b"\n")
    await stream.close()


async def time_connects(dialer: Any, target: Any, count: int, max_seconds: float) -> dict[str, Any]:
    """Sequential connect + disconnect, at most C{count} times or C{max_seconds}."""
    import trio

    times: list[float] = []
    started = time.perf_counter()
    while len(times) < count and time.perf_counter() - started < max_seconds:
        t0 = time.perf_counter()
        with trio.fail_after(10):
            await dialer.connect(target)
        times.append(time.perf_counter() - t0)
        with trio.fail_after(10):
            await dialer.disconnect(target.peer_id)
        await trio.sleep(0.01)
    result: dict[str, Any] = {"count": len(times)}
    if times:
        result.update(
            ms_median=statistics.median(times) * 1e3,
            ms_mean=statistics.fmean(times) * 1e3,
            ms_min=min(times) * 1e3,
            first_ms=times[0] * 1e3,
        )
    return result


async def stream_case(dialer: Any, target: Any, args: argparse.Namespace) -> dict[str, Any]:
    import trio

    chunk = os.urandom(args.write_size)
    limit = int(args.mib * (1 << 20))
    with trio.fail_after(args.max_seconds + 30):
        stream = await dialer.new_stream(target.peer_id, [SINK])
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        sent = 0
        while sent < limit and time.perf_counter() - t0 < args.max_seconds:
            await stream.write(chunk)
            sent += len(chunk)
        await stream.close_write()
        answer = b""
        while len(answer) < COUNT.size:
            data = await read_until_eof(stream)
            if data is None:
                break
            answer += data
        seconds = time.perf_counter() - t0
    if len(answer) < COUNT.size:
        return {"error": f"the listener closed the stream without the byte count (sent {sent} bytes)"}
    (received,) = COUNT.unpack_from(answer)
    result = {
        "bytes": received,
        "seconds": seconds,
        "MiB_per_s": received / (1 << 20) / seconds,
        "process_cpu_s": time.process_time() - cpu0,
        "write_size": args.write_size,
    }
    if received != sent:
        result["error"] = f"sent {sent} bytes, the listener counted {received}"
    return result


async def messages_case(dialer: Any, target: Any, args: argparse.Namespace) -> dict[str, Any]:
    import trio

    message = LENGTH.pack(args.msg_size) + os.urandom(args.msg_size)
    per_blob = max(1, 65536 // len(message))
    blob = message * per_blob
    with trio.fail_after(args.max_seconds + 30):
        stream = await dialer.new_stream(target.peer_id, [MESSAGES])
        t0 = time.perf_counter()
        sent = 0
        while sent < args.msg_count and time.perf_counter() - t0 < args.max_seconds:
            await stream.write(blob)
            sent += per_blob
        await stream.write(LENGTH.pack(0))
        line = b""
        while not line.endswith(b"\n"):
            data = await read_until_eof(stream)
            if data is None:
                break
            line += data
    if not line.endswith(b"\n"):
        return {"error": f"the listener closed the stream without its count (sent {sent} messages)"}
    answer = json.loads(line)
    result = {
        "messages": answer["count"],
        "receiver_seconds": answer["seconds"],
        "msgs_per_s": answer["count"] / answer["seconds"] if answer["seconds"] else None,
        "msg_size": args.msg_size,
    }
    if answer["count"] != sent:
        result["error"] = f"sent {sent} messages, the listener counted {answer['count']}"
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import multiaddr
    import trio
    from libp2p.peer.peerinfo import info_from_p2p_addr

    cases: dict[str, Any] = {}
    listener = new_host(args.security)
    dialer = new_host(args.security)
    listen = [multiaddr.Multiaddr(f"/ip4/{args.host}/tcp/0")]
    async with listener.run(listen_addrs=listen), dialer.run(listen_addrs=listen):
        listener.set_stream_handler(SINK, sink_handler)
        listener.set_stream_handler(MESSAGES, messages_handler)
        target = info_from_p2p_addr(next(a for a in listener.get_addrs() if args.host in str(a)))

        cases["connect"] = await time_connects(dialer, target, args.connects, args.max_seconds)
        cases["connect"]["note"] = "py-libp2p's default dialer (waits its 250 ms happy-eyeballs delay)"
        log(
            f"[libp2p] connect x{cases['connect']['count']}: median {cases['connect'].get('ms_median', float('nan')):.2f} ms"
        )

        single = new_host(args.security, max_connections_per_peer=1)
        async with single.run(listen_addrs=listen):
            cases["connect_mcpp1"] = await time_connects(single, target, args.connects, args.max_seconds)
        cases["connect_mcpp1"]["note"] = "a dialer with ConnectionConfig(max_connections_per_peer=1)"
        log(
            f"[libp2p] connect (mcpp=1) x{cases['connect_mcpp1']['count']}: median {cases['connect_mcpp1'].get('ms_median', float('nan')):.2f} ms"
        )

        with trio.fail_after(10):
            await dialer.connect(target)
        for name, case in (("stream", stream_case), ("msgs", messages_case)):
            try:
                cases[name] = await case(dialer, target, args)
            except Exception as e:  # noqa: BLE001 (reported in the JSON)
                cases[name] = {"error": repr(e)[:1000]}
        log(f"[libp2p] stream: {cases['stream'].get('MiB_per_s', float('nan')):.1f} MiB/s")
        log(f"[libp2p] msgs: {cases['msgs'].get('msgs_per_s') or float('nan'):.0f} msg/s")
        await dialer.disconnect(target.peer_id)
    return cases


async def bounded(args: argparse.Namespace) -> dict[str, Any]:
    import trio

    with trio.fail_after(args.hard_limit):
        return await run(args)


def versions() -> dict[str, str]:
    import importlib.metadata

    found = {}
    for name in ("libp2p", "trio", "cryptography", "noiseprotocol"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="loopback address (127.0.0.x only; default %(default)s)")
    p.add_argument("--security", choices=["noise", "tls"], default="noise", help="(default %(default)s)")
    p.add_argument(
        "--connects", type=int, default=30, help="sequential connections timed per dialer (default %(default)s)"
    )
    p.add_argument("--mib", type=float, default=256, help="stream case cap in MiB (default %(default)s)")
    p.add_argument(
        "--write-size",
        type=int,
        default=65000,
        help="stream write size; 65000 was the fastest the limits study found (default %(default)s)",
    )
    p.add_argument("--msg-size", type=int, default=100, help="payload bytes per small message (default %(default)s)")
    p.add_argument("--msg-count", type=int, default=1_000_000, help="small-message cap (default %(default)s)")
    p.add_argument("--max-seconds", type=float, default=4.0, help="time cap of each case (default %(default)s)")
    p.add_argument("--hard-limit", type=float, default=50.0, help="time cap of the whole run (default %(default)s)")
    p.add_argument("--verbose", action="store_true", help="keep py-libp2p's own log output")
    args = p.parse_args()
    check_loopback(args.host)
    if args.msg_size < 1 or args.write_size < 1:
        p.error("--msg-size and --write-size must be at least 1")
    if not args.verbose:
        # py-libp2p logs the identify streams it loses when a connection is
        # closed right after it opened, which is what the connect cases do.
        logging.disable(logging.CRITICAL)
    import trio

    out: dict[str, Any] = {"bench": "libp2p_driver", "security": args.security}
    started = time.perf_counter()
    try:
        out["cases"] = trio.run(bounded, args)
        status = 1 if any("error" in case for case in out["cases"].values()) else 0
    except BaseException as e:  # noqa: BLE001 (reported in the JSON: why it did not run)
        out["error"] = repr(e)[:2000]
        status = 1
    out["wall_s"] = time.perf_counter() - started
    out["env"] = {"nproc": os.cpu_count(), "python": platform.python_version(), **versions()}
    print(json.dumps(out), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
