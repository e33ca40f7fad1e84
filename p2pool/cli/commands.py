# -*- test-case-name: tests.test_cli,tests.test_cli_admin -*-
"""
The C{p2pool} command line.

Each command group adds its subparsers in its own C{_add_*_commands}
function and sets a C{handler} default: a callable taking the parsed
arguments and the output and error streams, returning the exit status.
L{main} parses, dispatches and turns user errors into one-line messages.

The admin commands (C{status}, C{connections}, C{points}, C{peers},
C{greylist}, C{bans}, C{ban}, C{unban}, C{trust}, C{untrust}, C{connect},
C{disconnect}, C{log}) talk to a running node's admin API with treq. Their
handlers are coroutines taking an L{AdminClient}; L{main} runs them under
C{task.react}, and L{admin_main} runs them in an already running reactor
(for tests, or programs embedding the CLI).

Exit statuses: 0 success, 1 error (the node's error detail for an HTTP
error), 2 usage error, 3 node unreachable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import difflib
import functools
import json
import os
import re
import socket
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TextIO
from typing import Protocol as TypingProtocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorCore
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from p2pool._version import version_line
from p2pool.core.acl import canonical_entry
from p2pool.core.addressing import AddressError, PeerId, PointSpec
from p2pool.core.identity import (
    Identity,
    IdentityError,
    IdentityFileExists,
    ProofOfWorkProgress,
    expected_attempts,
    load_identity,
    pow_target,
    proof_of_work_bits,
    save_identity,
)
from p2pool.pool.bootstrap_urls import SeedError, load_trust_root, request_url, tls_failure_reason
from p2pool.pool.contracts import IPoolReactor, installed_reactor

__all__ = ["AdminClient", "NodeError", "NodeUnreachable", "admin_main", "build_parser", "main", "parse_arguments"]

PROG = "p2pool"
DEFAULT_API = "http://127.0.0.1:8732"
DEFAULT_DATA_DIR = "p2pool-data"
IDENTITY_FILE_NAME = "identity.json"
DEFAULT_GENERATE_POW = 16.0
DEFAULT_SHOW_POW = 0.0

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

#: Where the admin commands read the bearer token when C{--token} is not given.
TOKEN_ENVIRONMENT = "P2POOL_ADMIN_TOKEN"
#: Seconds an admin request may take (C{connect} adds its own timeout).
REQUEST_TIMEOUT = 30.0

Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]
Clock = Callable[[], float]


class _Parser(argparse.ArgumentParser):
    """
    An argument parser whose error for an unknown option names the
    closest option of the command line (C{--jsn}: did you mean C{--json}?).

    @ivar known_options: the long options of this parser and of every
        parser built with the same set (the subcommands').
    """

    def __init__(self, *args: Any, known_options: set[str] | None = None, **kwargs: Any) -> None:
        self.known_options: set[str] = known_options if known_options is not None else set()
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.known_options.update(s for s in action.option_strings if s.startswith("--"))
        return action

    def subcommands(self, **kwargs: Any) -> _Subcommands:
        """
        C{add_subparsers}, whose parsers share this one's known options.
        """
        # argparse only calls parser_class, so a partial serves.
        parser_class: Any = functools.partial(_Parser, known_options=self.known_options)
        return self.add_subparsers(parser_class=parser_class, **kwargs)

    def error(self, message: str) -> Any:
        unknown = re.match(r"unrecognized arguments: (--[^\s=]+)", message)
        if unknown:
            close = difflib.get_close_matches(unknown.group(1), sorted(self.known_options), n=1, cutoff=0.6)
            if close:
                message += f" (did you mean {close[0]}?)"
        super().error(message)


def _difficulty(text: str) -> float:
    """
    argparse type for a proof-of-work difficulty in bits (0..256).
    """
    try:
        value = float(text)
        pow_target(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of bits between 0 and 256, not {text!r}") from None
    return value


def _format_bits(difficulty: float) -> str:
    return f"{difficulty:g}"


def identity_path(args: argparse.Namespace) -> str:
    """
    The identity file the arguments designate: C{--file}, else
    C{identity.json} in C{--data-dir}.
    """
    if args.file is not None:
        return str(args.file)
    return os.path.join(args.data_dir, IDENTITY_FILE_NAME)


class ProgressReporter:
    """
    Shows proof-of-work progress (L{ProofOfWorkProgress}) on a stream: one
    line rewritten in place (with a carriage return) on a terminal, a new
    line now and then otherwise. Updates are throttled to C{interval}
    seconds (a quarter of a second on a terminal, ten seconds otherwise, by
    default). With the C{difficulty}, each line says how long the search
    is expected to take yet.
    """

    def __init__(
        self,
        stream: TextIO,
        clock: Clock = time.monotonic,
        interval: float | None = None,
        difficulty: float | None = None,
    ) -> None:
        self._stream = stream
        self._tty = _isatty(stream)
        interval = interval if interval is not None else (0.25 if self._tty else 10.0)
        self._progress = ProofOfWorkProgress(difficulty, interval, clock)
        self._width = 0

    def __call__(self, attempts: int) -> None:
        text = self._progress(attempts)
        if text is not None:
            self._show(text)

    def _show(self, text: str) -> None:
        if self._tty:
            padding = " " * max(0, self._width - len(text))
            self._stream.write(f"\r{text}{padding}")
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def finish(self) -> None:
        """
        End the in-place line, if one was shown, so later output starts on
        a fresh line.
        """
        if self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _identity_generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = identity_path(args)
    if os.path.lexists(path):
        raise IdentityFileExists("already exists; refusing to overwrite it", path)
    err.write(
        f"generating an identity with proof of work {_format_bits(args.pow)} "
        f"(about {expected_attempts(args.pow):,} attempts expected)\n"
    )
    reporter = ProgressReporter(err, difficulty=args.pow)
    try:
        identity = Identity.generate(args.pow, progress=reporter)
    finally:
        reporter.finish()
    save_identity(path, identity)
    err.write(f"identity saved to {path}\n")
    out.write(f"{identity.peer_id}\n")
    return EXIT_OK


def _identity_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    path = identity_path(args)
    identity = load_identity(path, args.pow)
    bits = proof_of_work_bits(identity.public_key, identity.proof_of_work_stamp)
    if args.json:
        summary = {
            "peer_id": str(identity.peer_id),
            "public_key": identity.public_key.hex(),
            "proof_of_work_stamp": identity.proof_of_work_stamp.hex(),
            "proof_of_work_bits": bits,
        }
        out.write(json.dumps(summary, indent=2) + "\n")
    else:
        out.write(f"peer id:        {identity.peer_id}\n")
        out.write(f"public key:     {identity.public_key.hex()}\n")
        out.write(f"proof of work:  {bits} bits\n")
    return EXIT_OK


def _add_identity_file_options(parser: argparse.ArgumentParser, default_pow: float, pow_help: str) -> None:
    parser.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help=f"node data directory (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--file",
        default=None,
        metavar="FILE",
        help=f"identity file (default: DIR/{IDENTITY_FILE_NAME})",
    )
    parser.add_argument(
        "--pow",
        type=_difficulty,
        default=default_pow,
        metavar="BITS",
        help=f"{pow_help} (default: {_format_bits(default_pow)})",
    )


def _config_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Print the configuration C{twistd -n p2pool} would run with, given the
    same options, as TOML.
    """
    from twisted.python import usage

    import p2pool.daemon.tap as tap

    options = tap.Options()
    try:
        options.parseOptions(list(args.node_options))
    except usage.UsageError as e:
        raise UsageError(str(e)) from None
    out.write(tap.effective_config(options))
    return EXIT_OK


def _add_config_commands(commands: _Subcommands) -> None:
    config = commands.add_parser("config", help="show the configuration a node runs with")
    actions = config.subcommands(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show",
        help="print the effective configuration as TOML that --config accepts",
        description="Print the configuration that 'twistd -n p2pool' given the same options "
        "(--config FILE and any flag) would run with: the built-in defaults, then the file, then the "
        "flags, as TOML that --config accepts back.",
        usage="p2pool config show [--config FILE] [NODE OPTIONS]",
    )
    show.set_defaults(handler=_config_show, takes_node_options=True)


class _Subcommands(TypingProtocol):
    """
    What C{ArgumentParser.add_subparsers()} returns, as the command
    builders below use it.
    """

    def add_parser(self, name: str, **kwargs: Any) -> _Parser:
        """
        A parser for the subcommand C{name}.
        """


def _add_identity_commands(commands: _Subcommands) -> None:
    identity = commands.add_parser("identity", help="generate or inspect the node identity")
    actions = identity.subcommands(dest="action", metavar="ACTION", required=True)

    generate = actions.add_parser("generate", help="create a new identity file (never overwrites)")
    _add_identity_file_options(generate, DEFAULT_GENERATE_POW, "proof-of-work difficulty in bits")
    generate.set_defaults(handler=_identity_generate)

    show = actions.add_parser("show", help="check an identity file and print its public part")
    _add_identity_file_options(show, DEFAULT_SHOW_POW, "proof of work the file must reach")
    show.add_argument("--json", action="store_true", help="print a JSON object (without the secret key)")
    show.set_defaults(handler=_identity_show)


# -- admin commands ----------------------------------------------------------


class UsageError(Exception):
    """
    The command line is wrong in a way argparse cannot see (exit 2).
    """


class NodeUnreachable(Exception):
    """
    The node's admin API could not be reached, or the connection to it was
    lost (exit 3).
    """


class NodeError(Exception):
    """
    The node answered with an HTTP error (exit 1).

    @ivar status: the HTTP status.
    @ivar error: the node's error code (C{not_found}, ...).
    @ivar detail: the node's explanation.
    """

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{detail} ({status} {error})")
        self.status = status
        self.error = error
        self.detail = detail


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def check_api_url(url: str) -> str:
    """
    The admin API base URL, without a trailing slash.

    @raise UsageError: not an http or https URL.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--api: expected a URL like {DEFAULT_API}, got {url!r}")
    return url.rstrip("/")


class AdminClient:
    """
    Calls a node's admin API through a treq client (the C{treq} module, a
    C{treq.client.HTTPClient} or a C{StubTreq}).
    """

    def __init__(self, api: str, token: str, http: Any) -> None:
        self.api = check_api_url(api)
        self._headers = {b"Accept": [b"application/json"]}
        if token:
            self._headers[b"Authorization"] = [b"Bearer " + token.encode("utf-8")]
        self._http = http

    def url(self, *segments: str) -> str:
        return self.api + "/" + "/".join(_quote(s) for s in segments)

    async def _send(
        self, method: str, segments: Sequence[str], params: dict[str, str] | None, body: Any, timeout: float | None
    ) -> Any:
        url = self.url(*segments)
        try:
            return await self._http.request(
                method, request_url(url), headers=self._headers, params=params, json=body, timeout=timeout
            )
        except CancelledError:
            raise
        except Exception as e:
            reason = tls_failure_reason(Failure(e)) or _reason(e)
            raise NodeUnreachable(f"cannot reach the node's admin API at {self.api}: {reason}") from None

    async def _content(self, response: Any) -> bytes:
        try:
            return bytes(await response.content())
        except CancelledError:
            raise
        except Exception as e:
            raise NodeUnreachable(f"lost the connection to {self.api}: {_reason(e)}") from None

    async def call(
        self,
        method: str,
        *segments: str,
        params: dict[str, str] | None = None,
        body: Any = None,
        timeout: float | None = REQUEST_TIMEOUT,
    ) -> Any:
        """
        Send a request and return its decoded JSON reply.

        @raise NodeUnreachable: no connection, or it was lost.
        @raise NodeError: an HTTP error status.
        """
        response = await self._send(method, segments, params, body, timeout)
        data = await self._content(response)
        if response.code >= 400:
            raise self._error(response, data, segments)
        try:
            return json.loads(data.decode("utf-8")) if data.strip() else None
        except ValueError:
            raise NodeError(response.code, "bad_reply", f"the reply of {self.url(*segments)} is not JSON") from None

    def _error(self, response: Any, data: bytes, segments: Sequence[str]) -> NodeError:
        """
        The error an HTTP error reply stands for: the node's own
        C{{"error", "detail"}}, or the status line for other servers.
        """
        try:
            value = json.loads(data.decode("utf-8"))
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("detail"), str):
            return NodeError(response.code, str(value.get("error", "error")), value["detail"])
        phrase = response.phrase.decode("ascii", "replace")
        return NodeError(response.code, "http_error", f"{phrase} from {self.url(*segments)}")

    async def stream(
        self, on_line: Callable[[bytes], object], *segments: str, params: dict[str, str] | None = None
    ) -> None:
        """
        Send a GET whose reply is JSON lines, calling C{on_line} with each
        line as it arrives, until the reply ends.
        """
        response = await self._send("GET", segments, params, None, None)
        if response.code >= 400:
            raise self._error(response, await self._content(response), segments)
        receiver = _LineReceiver(on_line)
        response.deliverBody(receiver)
        try:
            await receiver.finished
        except CancelledError:
            raise
        except BrokenPipeError:
            raise
        except Exception as e:
            raise NodeUnreachable(f"lost the connection to {self.api}: {_reason(e)}") from None


class _LineReceiver(Protocol):
    """
    Receives a streamed reply body and calls C{on_line} with each complete
    line. C{finished} fires when the body ends; cancelling it closes the
    connection.
    """

    def __init__(self, on_line: Callable[[bytes], object]) -> None:
        self._on_line = on_line
        self._pending = bytearray()
        self.finished: Deferred[None] = Deferred(lambda _: self._abort())

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self._pending.extend(data)
        while not self.finished.called:
            end = self._pending.find(b"\n")
            if end < 0:
                return
            line = bytes(self._pending[:end])
            del self._pending[: end + 1]
            if not line.strip():
                continue
            try:
                self._on_line(line)
            except Exception as e:
                self._abort()
                self.finished.errback(e)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(None)
        else:
            self.finished.errback(reason)


def _reason(error: BaseException) -> str:
    """
    A one-line reason for a network failure (treq wraps some in lists of
    failures).
    """
    reasons = getattr(error, "reasons", None)
    if reasons:
        error = reasons[0].value
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    name = type(error).__name__
    return f"{name}: {text}" if text and name not in text else (text or name)


# -- output ----------------------------------------------------------------


def _bytes(n: int) -> str:
    """
    A byte count for people: C{512 B}, C{1.5 KiB}, ... C{GiB}.
    """
    if n < 1024:
        return f"{n} B"
    value, unit = float(n), "B"
    for unit in ("KiB", "MiB", "GiB"):  # noqa: B007 (the unit reached is the answer)
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"


def _when(text: str | None) -> str:
    """
    An RFC 3339 time from the API, shortened to the second.
    """
    if not text:
        return "-"
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(out: TextIO, headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> None:
    rows = [list(row) for row in rows]
    if not rows:
        out.write(empty + "\n")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in [list(headers)] + rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")


def _json_out(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, indent=2) + "\n")


def _count_states(pairs: Sequence[Any], state_of: Callable[[Any], str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, info in pairs:
        state = state_of(info)
        counts[state] = counts.get(state, 0) + 1
    return counts


def _states_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


# -- targets -----------------------------------------------------------------


def _resolve(host: str, port: int) -> str:
    """
    The address of a host name (the first that getaddrinfo gives).

    @raise NodeError: the name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise NodeError(0, "resolve", f"cannot resolve {host!r}: {e.strerror or e}") from None
    address = str(infos[0][4][0])
    return f"[{address}]" if ":" in address else address


def _target(text: str) -> tuple[str, str, str | None]:
    """
    A command-line target: C{("peers", peer_id, None)}, C{("bans", address
    or CIDR range, None)} or C{("points", point, expected_peer_id)}; a host
    name is resolved.

    @raise UsageError: none of these.
    """
    try:
        return "peers", str(PeerId.parse(text)), None
    except AddressError:
        pass
    try:
        return "bans", canonical_entry(text), None
    except AddressError:
        pass
    try:
        spec = PointSpec.parse(text)
    except AddressError as e:
        raise UsageError(f"{text!r} is neither a peer id nor a point (nor an address or CIDR range): {e}") from None
    point = spec.point
    key = str(point) if point is not None else f"{_resolve(spec.host, spec.port)}:{spec.port}"
    return "points", key, str(spec.expected_peer_id) if spec.expected_peer_id else None


# -- handlers ----------------------------------------------------------------

AdminHandler = Callable[[argparse.Namespace, AdminClient, TextIO], Awaitable[int]]


async def _status(args: argparse.Namespace, client: AdminClient, out: TextIO) -> int:
    peer_id = await client.call("GET", "network", "self")
    stat = await client.call("GET", "network", "stat")
    connections = await client.call("GET", "network", "connections")
    points = await client.call("GET", "network", "points")
    peers = await client.call("GET", "network", "peers")
    ips = await client.call("GET", "network", "greylist", "ips")
    greylisted_peers = await client.call("GET", "network", "greylist", "peers")
    incoming = sum(1 for c in connections if c.get("incoming"))
    point_states = _count_states(points, lambda info: info["state"]["event_kind"])
    peer_states = _count_states(peers, lambda info: info["state"])
    if args.json:
        _json_out(
            out,
            {
                "peer_id": peer_id,
                "stat": stat,
                "connections": {
                    "total": len(connections),
                    "incoming": incoming,
                    "outgoing": len(connections) - incoming,
                },
                "points": point_states,
                "peers": peer_states,
                "greylist": {"ips": len(ips["ips"]), "peers": len(greylisted_peers)},
            },
        )
        return EXIT_OK
    out.write(f"peer id:      {peer_id}\n")
    out.write(f"admin API:    {client.api}\n")
    out.write(f"connections:  {len(connections)} ({incoming} incoming, {len(connections) - incoming} outgoing)\n")
    out.write(f"known points: {len(points)} ({_states_text(point_states)})\n")
    out.write(f"known peers:  {len(peers)} ({_states_text(peer_states)})\n")
    out.write(f"greylisted:   {len(ips['ips'])} addresses, {len(greylisted_peers)} peers\n")
    out.write(
        f"traffic:      sent {_bytes(stat['total_sent'])} ({_bytes(stat['current_outflow'])}/s), "
        f"received {_bytes(stat['total_recv'])} ({_bytes(stat['current_inflow'])}/s)\n"
    )
    return EXIT_OK


async def _listing(
    args: argparse.Namespace,
    client: AdminClient,
    out: TextIO,
    route: str,
    headers: list[str],
    row: Callable[[Any], list[str]],
    empty: str,
) -> int:
    """
    Print the list at C{/network/<route>}: as JSON with C{--json}, else as
    a table of C{row(item)} for each item.
    """
    items = await client.call("GET", "network", route)
    if args.json:
        _json_out(out, items)
    else:
        _table(out, headers, (row(item) for item in items), empty)
    return EXIT_OK


def _last_seen(info: dict[str, Any]) -> str:
    return _when(info["last_seen"][1]) if info.get("last_seen") else "-"


def _connection_row(c: dict[str, Any]) -> list[str]:
    return [
        c["peer_id"],
        c["point"] or c["id_point"]["addr"],
        "incoming" if c["incoming"] else "outgoing",
        "yes" if c["private"] else "no",
        _bytes(c["stat"]["total_sent"]),
        _bytes(c["stat"]["total_recv"]),
        _when(c.get("established_at")),
    ]


def _point_row(pair: list[Any]) -> list[str]:
    point, info = pair
    return [
        point,
        info["state"]["event_kind"],
        "yes" if info["trusted"] else "no",
        info.get("p2p_peer_id") or info.get("expected_peer_id") or "-",
        _last_seen(info),
        _when(info.get("greylisted_until")),
    ]


def _reachable_at(info: dict[str, Any]) -> str:
    at = info.get("reachable_at")
    if not at:
        return "-"
    addr = f"[{at['addr']}]" if ":" in at["addr"] else at["addr"]
    return f"{addr}:{at['port']}" if "port" in at else addr


def _peer_row(pair: list[Any]) -> list[str]:
    peer_id, info = pair
    return [
        peer_id,
        info["state"],
        "yes" if info["trusted"] else "no",
        f"{info['score']:g}" if isinstance(info.get("score"), (int, float)) else "-",
        _reachable_at(info),
        _last_seen(info),
    ]


async def _connections(args: argparse.Namespace, client: AdminClient, out: TextIO) -> int:
    headers = ["PEER ID", "POINT", "DIRECTION", "PRIVATE", "SENT", "RECEIVED", "SINCE"]
    return await _listing(args, client, out, "connections", headers, _connection_row, "no connections")


async def _points(args: argparse.Namespace, client: AdminClient, out: TextIO) -> int:
    headers = ["POINT", "STATE", "TRUSTED", "PEER ID", "LAST SEEN", "BACK-OFF UNTIL"]
    return await _listing(args, client, out, "points", headers, _point_row, "no known points")


async def _peers(args: argparse.Namespace, client: AdminClient, out: TextIO) -> int:
    headers = ["PEER ID", "STATE", "TRUSTED", "SCORE", "REACHABLE AT", "LAST SEEN"]
    return await _listing(args, client, out, "peers", headers, _peer_row, "no known peers")


async def _greylist(args: argparse.Namespace, client: AdminClient, out: TextIO) -> int:
    ips = await client.call("GET", "network", "greylist", "ips")
    peers = await client.call("GET", "network", "greylist", "peers")
    if args.json:
        _json_out(out, {"ips": ips["ips"], "not_reliable_since": ips["not_reliable_since"], "peers": peers})
        return EXIT_OK
    out.write(f"greylisted addresses: {len(ips['ips'])}\n")
    for ip in ips["ips"]:
        out.write(f"  {ip}\n")
    if ips.get("not_reliable_since"):
        out.write(f"  (the list misses some since {_when(ips['not_reliable_since'])})\n")
    out.write(f"greylisted peers: {len(peers)}\n")
    for peer_id in peers:
        out.write(f"  {peer_id}\n")
    return EXIT_OK


#: What each ACL command does, as C{(acl, past tense)}; C{unban} and
#: C{untrust} are refined from the target's current state (see L{_acl}).
_ACL_COMMANDS = {
    "ban": ("ban", "banned"),
    "unban": ("open", "unbanned"),
    "trust": ("trust", "trusted"),
    "untrust": ("open", "untrusted"),
}


async def _acl(args: argparse.Namespace, client: AdminClient, out: TextIO) -> int:
    """
    C{ban}, C{unban}, C{trust}, C{untrust} with Tezos's patch semantics:
    ban = untrust + ban; trust = unban + trust; unban of a trusted target
    keeps it trusted (patch C{trust}); untrust of a target that is not
    trusted changes nothing, else unbans it too (patch C{open}).
    """
    kind, key, expected = _target(args.target)
    if kind == "bans":
        return await _ban_addr(args, client, out, key)
    what = "peer" if kind == "peers" else "point"
    acl, done = _ACL_COMMANDS[args.command]
    was_banned = True
    if args.command == "unban":
        bans = await client.call("GET", "network", "bans")
        was_banned = key in bans["peers"] if kind == "peers" else PointSpec.parse(key).host in bans["ips"]
    if args.command in ("unban", "untrust"):
        try:
            current = await client.call("GET", "network", kind, key)
        except NodeError as e:
            if e.status != 404:
                raise
            current = None
        trusted = bool(current and current.get("trusted"))
        if args.command == "unban" and trusted:
            acl = "trust"
        if args.command == "untrust" and not trusted:
            if args.json:
                # A target the node does not know is untrusted all the same.
                _json_out(out, current if current is not None else {"trusted": False, "known": False})
            else:
                out.write(f"{what} {key} is not trusted\n")
            return EXIT_OK
    body: dict[str, Any] = {"acl": acl}
    if expected is not None:
        body["peer_id"] = expected
    info = await client.call("PATCH", "network", kind, key, body=body)
    if args.json:
        _json_out(out, info)
    elif was_banned:
        out.write(f"{done} {what} {key}\n")
    else:
        # Greylisting, if any, is lifted all the same.
        out.write(f"{what} {key} was not banned\n")
    return EXIT_OK


async def _ban_addr(args: argparse.Namespace, client: AdminClient, out: TextIO, entry: str) -> int:
    """
    C{ban} or C{unban} of an address or CIDR range (C{/network/bans/ips}).
    """
    if args.command == "ban":
        result = await client.call("PUT", "network", "bans", "ips", entry)
        closed = result["disconnected"]
        text = f"banned {entry}" + (f" ({closed} connection{'s' if closed != 1 else ''} closed)" if closed else "")
    elif args.command == "unban":
        result = await client.call("DELETE", "network", "bans", "ips", entry)
        text = f"unbanned {entry}" if result["was_banned"] else f"{entry} was not banned"
    else:
        raise UsageError(
            f"{args.command} takes a point (host:port) or a peer id; an address or range can only be banned"
        )
    if args.json:
        _json_out(out, result)
    else:
        out.write(text + "\n")
    return EXIT_OK


def _ban_kind(entry: str) -> str:
    return "range" if "/" in entry else "address"


async def _bans(args: argparse.Namespace, client: AdminClient, out: TextIO) -> int:
    bans = await client.call("GET", "network", "bans")
    if args.json:
        _json_out(out, bans)
        return EXIT_OK
    rows = [[_ban_kind(ip), ip] for ip in bans["ips"]] + [["peer", peer] for peer in bans["peers"]]
    _table(out, ["KIND", "BANNED"], rows, "no bans")
    return EXIT_OK


async def _connect(args: argparse.Namespace, client: AdminClient, out: TextIO) -> int:
    kind, key, _ = _target(args.point)
    if kind != "points":
        raise UsageError(f"connect takes a point (host:port), not {args.point!r}")
    params = {"timeout": f"{args.timeout:g}"} if args.timeout is not None else None
    wait = (args.timeout or 60.0) + REQUEST_TIMEOUT
    conn = await client.call("PUT", "network", "points", key, params=params, timeout=wait)
    if args.json:
        _json_out(out, conn)
    else:
        out.write(f"connected to {conn['peer_id']} at {conn['point'] or key}\n")
    return EXIT_OK


async def _disconnect(args: argparse.Namespace, client: AdminClient, out: TextIO) -> int:
    try:
        peer_id = str(PeerId.parse(args.peer_id))
    except AddressError as e:
        raise UsageError(str(e)) from None
    await client.call("DELETE", "network", "connections", peer_id, params={"wait": "true"})
    if args.json:
        _json_out(out, {"disconnected": peer_id})
    else:
        out.write(f"disconnected {peer_id}\n")
    return EXIT_OK


def _event_text(line: bytes) -> str:
    """
    One event line of C{/network/log} for people: time, event, fields.
    """
    try:
        record = json.loads(line.decode("utf-8"))
    except ValueError:
        return line.decode("utf-8", "replace")
    if not isinstance(record, dict):
        return line.decode("utf-8", "replace")
    when = record.pop("time", None)
    name = record.pop("event", "?")
    fields = " ".join(f"{key}={value}" for key, value in record.items())
    stamp = _when(when) if isinstance(when, str) else "-"
    return f"{stamp} {name} {fields}".rstrip()


async def _log(args: argparse.Namespace, client: AdminClient, out: TextIO) -> int:
    def show(line: bytes) -> None:
        out.write((line.decode("utf-8", "replace") if args.json else _event_text(line)) + "\n")
        out.flush()

    params = {"recent": "true", "follow": "true" if args.follow else "false"}
    await client.stream(show, "network", "log", params=params)
    return EXIT_OK


def _add_admin_commands(commands: _Subcommands) -> None:
    common = _Parser(add_help=False)
    # SUPPRESS: a --json given before the command (see build_parser) stays.
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts instead of a table"
    )

    def add(name: str, handler: AdminHandler, help: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[common], help=help)
        parser.set_defaults(admin_handler=handler)
        return parser

    add("status", _status, "summary of the node: peer id, connections, points, peers, traffic")
    add("connections", _connections, "list the running connections")
    add("points", _points, "list the known points")
    add("peers", _peers, "list the known peers")
    add("greylist", _greylist, "list the greylisted addresses and peers")
    add("bans", _bans, "list the banned addresses, CIDR ranges and peer ids")
    helps = {
        "ban": "ban a point's address, an address or CIDR range, or a peer id (and disconnect them)",
        "unban": "lift a ban or greylisting",
        "trust": "trust a point (kept connected) or a peer id",
        "untrust": "stop trusting a point or peer id",
    }
    for name, text in helps.items():
        add(name, _acl, text).add_argument(
            "target",
            metavar="POINT_OR_PEER_ID",
            help="host:port (optionally #peer_id), a peer id"
            + (", or an address or CIDR range (192.0.2.0/24)" if name in ("ban", "unban") else ""),
        )
    connect = add("connect", _connect, "connect to a point now, ignoring its back-off")
    connect.add_argument("point", metavar="POINT", help="host:port")
    connect.add_argument("--timeout", type=_seconds, default=None, metavar="S", help="give up after S seconds")
    disconnect = add("disconnect", _disconnect, "close the connection to a peer")
    disconnect.add_argument("peer_id", metavar="PEER_ID")
    log = add("log", _log, "print the node's recent events (JSON lines with --json)")
    log.add_argument("--follow", "-f", action="store_true", help="keep printing events as they happen")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 600, not {text!r}")
    return value


def admin_http_client(ca_file: str | None = None, reactor: IPoolReactor | None = None) -> Any:
    """
    A treq client for the admin API that does not keep connections. For
    https:// URLs the server certificate is checked against the system
    trust store, or the PEM bundle C{ca_file} (C{--ca-file}), and its host
    name verified (C{service_identity}, through Twisted's
    C{optionsForClientTLS}).

    @raise UsageError: C{ca_file} cannot be read or holds no certificate.
    """
    from treq.client import HTTPClient
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

    if reactor is None:
        reactor = installed_reactor()
    try:
        trust_root = load_trust_root(ca_file) if ca_file is not None else None
    except SeedError as e:
        raise UsageError("--ca-file: " + str(e).replace("seed_ca_file ", "", 1)) from None
    pool = HTTPConnectionPool(reactor, persistent=False)
    return HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust_root), pool=pool))


async def run_admin(args: argparse.Namespace, http: Any, out: TextIO, err: TextIO) -> int:
    """
    Run a parsed admin command with the treq client C{http} (C{None}: one
    from L{admin_http_client} honouring C{--ca-file}); errors become one
    line on C{err} and an exit status.
    """
    try:
        if http is None:
            http = admin_http_client(getattr(args, "ca_file", None))
        client = AdminClient(args.api, args.token, http)
        handler: AdminHandler = args.admin_handler
        return await handler(args, client, out)
    except UsageError as e:
        err.write(f"{PROG}: error: {e}\n")
        return EXIT_USAGE
    except NodeUnreachable as e:
        err.write(f"{PROG}: error: {e}\n")
        return EXIT_UNREACHABLE
    except NodeError as e:
        err.write(f"{PROG}: error: {e.detail}" + (f" ({e.status} {e.error})" if e.status else "") + "\n")
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK
    except CancelledError:
        raise
    except Exception as e:
        # A reply without the fields this version expects (another node
        # version, a proxy's page): one line, not a traceback.
        err.write(f"{PROG}: error: unexpected reply from the node ({type(e).__name__}: {e})\n")
        return EXIT_ERROR


async def admin_main(argv: list[str], http: Any, out: TextIO, err: TextIO) -> int:
    """
    Parse and run an admin command line in a running reactor, with the
    treq client C{http}; the exit status, as L{main} would return it.
    """
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parse_arguments(argv)
    except SystemExit as e:
        return _exit_status(e.code)
    if getattr(args, "admin_handler", None) is None:
        err.write(f"{PROG}: error: {args.command} is not an admin command\n")
        return EXIT_USAGE
    return await run_admin(args, http, out, err)


def _react_admin(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Run an admin command under C{task.react}; Ctrl-C cancels it (exit 130).
    """
    from twisted.internet import task

    status = [EXIT_ERROR]

    async def run(reactor: IReactorCore) -> None:
        d = Deferred.fromCoroutine(run_admin(args, None, out, err))
        reactor.addSystemEventTrigger("before", "shutdown", d.cancel)
        try:
            status[0] = await d
        except CancelledError:
            err.write(f"{PROG}: interrupted\n")
            status[0] = EXIT_INTERRUPTED

    try:
        task.react(run)
    except SystemExit:
        pass
    return status[0]


def build_parser() -> argparse.ArgumentParser:
    """
    The argument parser for every C{p2pool} command.
    """
    parser = _Parser(prog=PROG, description="Manage a p2pool node.")
    parser.add_argument("--version", action="version", version=version_line(), help="print the version and exit")
    parser.add_argument(
        "--api",
        default=DEFAULT_API,
        metavar="URL",
        help=f"the node's admin API (default: {DEFAULT_API})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENVIRONMENT, ""),
        metavar="T",
        help=f"the admin API's bearer token (default: ${TOKEN_ENVIRONMENT}, else none)",
    )
    parser.add_argument(
        "--ca-file",
        default=None,
        metavar="PEM",
        help="CA certificates (PEM) that verify an https:// --api server instead of the system trust store",
    )
    parser.add_argument("--json", action="store_true", help="admin commands: print JSON for scripts")
    commands = parser.subcommands(dest="command", metavar="COMMAND", required=True)
    _add_identity_commands(commands)
    _add_config_commands(commands)
    _add_admin_commands(commands)
    return parser


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """
    Parse a C{p2pool} command line. The options that follow C{config show}
    are the node's (C{twistd -n p2pool}'s), kept as C{node_options}.

    @raise SystemExit: a usage error (status 2), after printing it; or
        C{--help}/C{--version} (status 0).
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "takes_node_options", False):
        args.node_options = extra
    elif extra:
        parser.error("unrecognized arguments: " + " ".join(extra))
    return args


def _exit_status(code: object) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    """
    Run the C{p2pool} command line with C{argv} (default: C{sys.argv[1:]})
    and return the exit status. Output goes to C{sys.stdout} and
    C{sys.stderr} as they are when called.
    """
    out, err = sys.stdout, sys.stderr
    try:
        args = parse_arguments(argv)
    except SystemExit as e:
        return _exit_status(e.code)
    if getattr(args, "admin_handler", None) is not None:
        try:
            return _react_admin(args, out, err)
        except BrokenPipeError:
            return _quiet_stdout()
    handler: Handler = args.handler
    try:
        return handler(args, out, err)
    except IdentityError as e:
        err.write(f"{PROG}: error: {e}\n")
        return EXIT_ERROR
    except UsageError as e:
        err.write(f"{PROG}: error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED


def _quiet_stdout() -> int:
    """
    After the reader of our output went away (C{p2pool log -f | head}):
    send what is left to /dev/null, so that exiting does not complain.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
