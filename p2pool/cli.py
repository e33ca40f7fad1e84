# -*- test-case-name: tests.test_cli -*-
"""
The C{p2pool} command line.

Each command group adds its subparsers in its own C{_add_*_commands}
function and sets a C{handler} default: a callable taking the parsed
arguments and the output and error streams, returning the exit status.
L{main} parses, dispatches and turns user errors into one-line messages.

Exit statuses: 0 success, 1 error, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Optional, TextIO

from p2pool.identity import (
    Identity,
    IdentityError,
    IdentityFileExists,
    load_identity,
    pow_target,
    proof_of_work_bits,
    save_identity,
)

__all__ = ["main", "build_parser"]

PROG = "p2pool"
DEFAULT_API = "http://127.0.0.1:8732"
DEFAULT_DATA_DIR = "p2pool-data"
IDENTITY_FILE_NAME = "identity.json"
DEFAULT_GENERATE_POW = 16.0
DEFAULT_SHOW_POW = 0.0

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]
Clock = Callable[[], float]


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


def _expected_attempts(difficulty: float) -> int:
    return max(1, (1 << 256) // (pow_target(difficulty) + 1))


class ProgressReporter:
    """
    Shows proof-of-work progress on a stream: one line rewritten in place
    (with a carriage return) on a terminal, a new line now and then
    otherwise. Updates are throttled to C{interval} seconds (a quarter of a
    second on a terminal, ten seconds otherwise, by default).
    """

    def __init__(self, stream: TextIO, clock: Clock = time.monotonic, interval: Optional[float] = None) -> None:
        self._stream = stream
        self._clock = clock
        self._tty = _isatty(stream)
        self._interval = interval if interval is not None else (0.25 if self._tty else 10.0)
        self._started = clock()
        self._last_shown = self._started
        self._width = 0

    def __call__(self, attempts: int) -> None:
        now = self._clock()
        if now - self._last_shown < self._interval:
            return
        self._last_shown = now
        elapsed = now - self._started
        rate = attempts / elapsed if elapsed > 0 else 0.0
        self._show(f"proof of work: {attempts:,} attempts, {rate:,.0f} hashes/s")

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
        f"(about {_expected_attempts(args.pow):,} attempts expected)\n"
    )
    reporter = ProgressReporter(err)
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


def _add_identity_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    identity = commands.add_parser("identity", help="generate or inspect the node identity")
    actions = identity.add_subparsers(dest="action", metavar="ACTION", required=True)

    generate = actions.add_parser("generate", help="create a new identity file (never overwrites)")
    _add_identity_file_options(generate, DEFAULT_GENERATE_POW, "proof-of-work difficulty in bits")
    generate.set_defaults(handler=_identity_generate)

    show = actions.add_parser("show", help="check an identity file and print its public part")
    _add_identity_file_options(show, DEFAULT_SHOW_POW, "proof of work the file must reach")
    show.add_argument("--json", action="store_true", help="print a JSON object (without the secret key)")
    show.set_defaults(handler=_identity_show)


def build_parser() -> argparse.ArgumentParser:
    """
    The argument parser for every C{p2pool} command.
    """
    parser = argparse.ArgumentParser(prog=PROG, description="Manage a p2pool node.")
    parser.add_argument(
        "--api",
        default=DEFAULT_API,
        metavar="URL",
        help=f"the node's admin API (default: {DEFAULT_API})",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_identity_commands(commands)
    return parser


def _exit_status(code: object) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    return EXIT_USAGE


def main(argv: Optional[list[str]] = None) -> int:
    """
    Run the C{p2pool} command line with C{argv} (default: C{sys.argv[1:]})
    and return the exit status. Output goes to C{sys.stdout} and
    C{sys.stderr} as they are when called.
    """
    out, err = sys.stdout, sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return _exit_status(e.code)
    handler: Handler = args.handler
    try:
        return handler(args, out, err)
    except IdentityError as e:
        err.write(f"{PROG}: error: {e}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
