# -*- test-case-name: tests.test_config -*-
"""
Node configuration: L{PoolConfig}, its TOML form, validation and the
open-file budget.

Every configurable value is described once, in L{CONFIG_KEYS}: its TOML
table and key, its value kind (which parses and checks it) and a one-line
meaning. The attrs classes below take their converters from that table, so a
L{PoolConfig} built by hand is checked exactly like one read from a file, and
the command line (L{p2pool.daemon.tap}) derives its flags from the same table.

The TOML document has the tables C{[p2p]}, C{[p2p.reconnection]},
C{[admin]} and C{[log]}. Values that may be absent (C{advertised_port},
C{identity_file}, C{max_known_points}, C{maintenance_idle_time}, C{[admin]
listen}, ...) are written C{false} in TOML and are C{None} in Python.
"""

from __future__ import annotations

import abc
import difflib
import functools
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, cast

import attrs

from p2pool.core.addressing import AddressError, Point, PointSpec
from p2pool.core.wire import FRAME_HEADER

try:
    import resource as _resource
except ImportError:  # pragma: no cover (not a Unix system)
    _resource = None  # type: ignore[assignment]

__all__ = [
    "AUTO",
    "AdminConfig",
    "COMMAND_LINE",
    "CONFIG_KEYS",
    "ConfigError",
    "ConfigKey",
    "FILE_DESCRIPTOR_HEADROOM",
    "PEERS_FILE_BASE_ALLOWANCE",
    "PEER_RECORD_ALLOWANCE",
    "POINT_RECORD_ALLOWANCE",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LogConfig",
    "PoolConfig",
    "ReconnectionConfig",
    "check_file_budget",
    "config_from_mapping",
    "config_to_toml",
    "file_descriptors_needed",
    "load_config",
    "raise_file_limit",
]

#: File descriptors reserved, on top of one per connection, for the
#: listening sockets, the admin API and its clients, the identity and peers
#: files (including atomic rewrites) and log files.
FILE_DESCRIPTOR_HEADROOM = 64

#: The value of a key the node derives from other keys.
AUTO = "auto"
#: Bytes of peers file allowed for each peer the table may hold, when
#: C{max_peers_file_size} is C{"auto"}: a peer with a full ring of 100
#: events takes about 10 KiB, the rest is for the application's metadata.
PEER_RECORD_ALLOWANCE = 64 * 1024
#: Bytes allowed for each point the table may hold (a full record is
#: under 400 bytes).
POINT_RECORD_ALLOWANCE = 1024
#: Bytes allowed on top, for the bans and the layout.
PEERS_FILE_BASE_ALLOWANCE = 1024 * 1024

#: Label given to override values (the command line) in error messages.
COMMAND_LINE = "command line"


class ConfigError(ValueError):
    """
    A configuration value is missing, malformed, out of range or inconsistent
    with another, or a configuration file cannot be read.

    The message is C{"<source>: <dotted.key>: <detail>"}; the source (a file
    name or C{"command line"}) and the key are left out when unknown.

    @ivar key: the dotted key at fault (C{"p2p.max_connections"}), or C{None}
        for a problem with the file as a whole.
    @ivar detail: what is wrong.
    @ivar source: where the value came from, or C{None}.
    """

    def __init__(self, key: str | None, detail: str, source: str | None = None) -> None:
        self.key = key
        self.detail = detail
        self.source = source
        parts = [part for part in (source, key, detail) if part]
        super().__init__(": ".join(parts))

    def with_source(self, source: str | None) -> ConfigError:
        """
        The same error, attributed to C{source}.
        """
        return ConfigError(self.key, self.detail, source)


class _Invalid(ValueError):
    """
    A value does not fit its kind; the message is the detail, without a key.
    """


def _format_number(value: int | float) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    try:
        return str(value)
    except ValueError:  # an integer past sys.get_int_max_str_digits()
        return f"a {value.bit_length()}-bit integer"


def _describe(value: Any) -> str:
    """
    A short description of a value for error messages, in TOML terms.
    """
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    names = {int: "integer", float: "float", str: "string", list: "array", tuple: "array"}
    name = names.get(type(value))
    if isinstance(value, Mapping):
        return "a table"
    try:
        text = repr(value)
    except ValueError:  # holds an integer past sys.get_int_max_str_digits()
        text = "(too large to show)"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{name} {text}" if name else f"{type(value).__name__} {text}"


@attrs.frozen
class _Kind(abc.ABC):
    """
    How one kind of value is parsed and checked. Subclasses implement
    L{convert} and may override the others; C{expected} names the kind in
    messages and documentation.
    """

    expected: str = "a value"
    metavar: str = "VALUE"

    @abc.abstractmethod
    def convert(self, value: Any) -> Any:
        """
        Check a TOML value (or an already converted Python value) and return
        the Python value.

        @raise _Invalid: the value does not fit.
        """

    def from_text(self, text: str) -> Any:
        """
        Parse a command-line argument into a value that L{convert} accepts.

        @raise _Invalid: the text does not parse.
        """
        return text

    def to_text(self, value: Any) -> str:
        """
        The value as it is written on the command line.
        """
        return str(value)

    def resolve(self, value: Any, base_dir: str | None) -> Any:
        """
        Resolve a relative path against C{base_dir}; other kinds keep the value.
        """
        return value


def _check_range(
    value: int | float,
    minimum: float | None,
    maximum: float | None,
    exclusive_minimum: bool,
) -> None:
    low_ok = minimum is None or (value > minimum if exclusive_minimum else value >= minimum)
    high_ok = maximum is None or value <= maximum
    if low_ok and high_ok:
        return
    shown = _format_number(value)
    if minimum is not None and maximum is not None and not exclusive_minimum:
        raise _Invalid(f"must be between {_format_number(minimum)} and {_format_number(maximum)}, got {shown}")
    if not low_ok:
        assert minimum is not None
        sign = ">" if exclusive_minimum else ">="
        raise _Invalid(f"must be {sign} {_format_number(minimum)}, got {shown}")
    assert maximum is not None
    raise _Invalid(f"must be <= {_format_number(maximum)}, got {shown}")


def _check_64_bits(value: int) -> None:
    """
    Refuse an integer TOML cannot hold (tomllib reads hexadecimal, octal and
    binary literals of any size).
    """
    if not -(2**63) <= value < 2**63:
        raise _Invalid(f"must be a 64-bit integer, got {_format_number(value)}")


@attrs.frozen
class _Integer(_Kind):
    expected: str = "an integer"
    metavar: str = "N"
    minimum: int | None = None
    maximum: int | None = None

    def convert(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected {self.expected}, got {_describe(value)}")
        _check_64_bits(value)
        _check_range(value, self.minimum, self.maximum, False)
        return value

    def from_text(self, text: str) -> int:
        try:
            return int(text.strip(), 10)
        except ValueError:
            raise _Invalid(f"expected {self.expected}, got {text!r}") from None


@attrs.frozen
class _Real(_Kind):
    expected: str = "a number"
    metavar: str = "SECONDS"
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False

    def convert(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"expected {self.expected}, got {_describe(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise _Invalid(f"expected a finite number, got {_describe(value)}") from None
        if not math.isfinite(number):
            raise _Invalid(f"expected a finite number, got {value!r}")
        _check_range(number, self.minimum, self.maximum, self.exclusive_minimum)
        return number

    def from_text(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            raise _Invalid(f"expected {self.expected}, got {text!r}") from None

    def to_text(self, value: Any) -> str:
        return _format_number(value)


@attrs.frozen
class _Flag(_Kind):
    expected: str = "true or false"
    metavar: str = "BOOL"

    def convert(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _Invalid(f"expected {self.expected}, got {_describe(value)}")
        return value

    def from_text(self, text: str) -> bool:
        words = {"true": True, "false": False}
        try:
            return words[text.strip().lower()]
        except KeyError:
            raise _Invalid(f"expected {self.expected}, got {text!r}") from None

    def to_text(self, value: Any) -> str:
        return str(value).lower()


@attrs.frozen
class _Name(_Kind):
    """
    A printable string of a bounded number of UTF-8 bytes.
    """

    expected: str = "a string"
    metavar: str = "NAME"
    max_bytes: int = 255

    def convert(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"expected {self.expected}, got {_describe(value)}")
        size = len(value.encode("utf-8", "surrogatepass"))
        if not 1 <= size <= self.max_bytes:
            raise _Invalid(f"must be 1 to {self.max_bytes} UTF-8 bytes, got {size}")
        if not value.isprintable():
            raise _Invalid(f"must be printable text, got {value!r}")
        return value


@attrs.frozen
class _Path(_Kind):
    """
    A file system path: a string, or an C{os.PathLike} such as a
    C{pathlib.Path} (kept as its string). Relative paths are resolved
    against the directory of the file that gave them (see L{resolve}); C{~}
    is expanded.
    """

    expected: str = "a path"
    metavar: str = "PATH"

    def convert(self, value: Any) -> str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise _Invalid(f"expected {self.expected}, got {_describe(value)}")
        if not value or "\0" in value:
            raise _Invalid(f"must be a non-empty path without NUL characters, got {value!r}")
        return value

    def resolve(self, value: Any, base_dir: str | None) -> Any:
        if not isinstance(value, str) or not value:
            return value
        path = os.path.expanduser(value)
        if base_dir is not None and not os.path.isabs(path):
            path = os.path.normpath(os.path.join(base_dir, path))
        return path


@attrs.frozen
class _Address(_Kind):
    """
    A L{Point}: an IP address and a port (C{1.2.3.4:9732}, C{[::]:9732}).
    """

    expected: str = "a point like '1.2.3.4:9732'"
    metavar: str = "ADDR:PORT"

    def convert(self, value: Any) -> Point:
        if isinstance(value, Point):
            return value
        if not isinstance(value, str):
            raise _Invalid(f"expected {self.expected}, got {_describe(value)}")
        try:
            return Point.parse(value)
        except AddressError as e:
            raise _Invalid(str(e)) from None


@attrs.frozen
class _PointList(_Kind):
    """
    An array of L{PointSpec} strings (C{host:port} or C{host:port#peer_id}).
    """

    expected: str = "an array of points like 'host:port' or 'host:port#peer_id'"
    metavar: str = "HOST:PORT[#PEER_ID]"

    def convert(self, value: Any) -> tuple[PointSpec, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise _Invalid(f"expected {self.expected}, got {_describe(value)}")
        specs = []
        for index, item in enumerate(value):
            where = f"item {index}: " if len(value) > 1 else ""
            if isinstance(item, PointSpec):
                specs.append(item)
                continue
            if not isinstance(item, str):
                raise _Invalid(f"{where}expected a string, got {_describe(item)}")
            try:
                specs.append(PointSpec.parse(item))
            except AddressError as e:
                raise _Invalid(f"{where}{e}") from None
        return tuple(specs)

    def from_text(self, text: str) -> list[str]:
        """
        One item: a list flag is given once per point.
        """
        return [text]

    def to_text(self, value: Any) -> str:
        return " ".join(str(spec) for spec in value) if value else "none"


@attrs.frozen
class _UrlList(_Kind):
    """
    An array of C{https://} URLs (host name required, no user info).
    """

    expected: str = "an array of 'https://host[:port]/path' URLs"
    metavar: str = "URL"
    max_length: int = 2048

    def convert(self, value: Any) -> tuple[str, ...]:
        from urllib.parse import urlsplit

        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise _Invalid(f"expected {self.expected}, got {_describe(value)}")
        urls = []
        for index, item in enumerate(value):
            where = f"item {index}: " if len(value) > 1 else ""
            if not isinstance(item, str):
                raise _Invalid(f"{where}expected a string, got {_describe(item)}")
            if not 0 < len(item) <= self.max_length or not item.isascii() or not item.isprintable() or " " in item:
                raise _Invalid(f"{where}not a URL: {item[:60]!r}")
            try:
                parts = urlsplit(item)
                _ = parts.port  # raises ValueError for a bad port
            except ValueError as e:
                raise _Invalid(f"{where}malformed URL {item!r}: {e}") from None
            if parts.scheme != "https":
                raise _Invalid(f"{where}{item!r} is not an https:// URL")
            if not parts.hostname or "@" in parts.netloc:
                raise _Invalid(f"{where}{item!r} must name a host (and no user)")
            urls.append(item)
        return tuple(urls)

    def from_text(self, text: str) -> list[str]:
        """
        One item: a list flag is given once per URL.
        """
        return [text]

    def to_text(self, value: Any) -> str:
        return " ".join(value) if value else "none"


@attrs.frozen
class _Pair(_Kind):
    """
    A table size limit C{[max, target]} with C{max >= target >= 0}: the
    table is trimmed to C{target} entries when it reaches C{max}.
    """

    expected: str = "[max, target] (two integers)"
    metavar: str = "MAX,TARGET"

    def convert(self, value: Any) -> tuple[int, int]:
        if (
            isinstance(value, (str, bytes))
            or not isinstance(value, Sequence)
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
        ):
            raise _Invalid(f"expected {self.expected}, got {_describe(value)}")
        high, target = value
        _check_64_bits(high)
        _check_64_bits(target)
        if target < 0:
            raise _Invalid(f"target must be >= 0, got {_format_number(target)}")
        if high < target:
            raise _Invalid(f"max ({_format_number(high)}) must be >= target ({_format_number(target)})")
        return (high, target)

    def from_text(self, text: str) -> tuple[int, int]:
        parts = text.split(",")
        try:
            high, target = (int(part.strip(), 10) for part in parts)
        except ValueError:
            raise _Invalid(f"expected MAX,TARGET (two integers), got {text!r}") from None
        return (high, target)

    def to_text(self, value: Any) -> str:
        return f"{value[0]},{value[1]}"


@attrs.frozen
class _Wrapping(_Kind):
    """
    A kind that takes the values of another kind, and some more.
    """

    inner: _Kind = attrs.field(kw_only=True)

    def convert_inner(self, value: Any) -> Any:
        """
        C{value} converted by the inner kind; a wrong type is reported as
        not this kind (whose C{expected} names the values it adds).
        """
        try:
            return self.inner.convert(value)
        except _Invalid as e:
            if str(e).startswith(f"expected {self.inner.expected},"):
                raise _Invalid(f"expected {self.expected}, got {_describe(value)}") from None
            raise

    def convert(self, value: Any) -> Any:
        return self.convert_inner(value)

    def resolve(self, value: Any, base_dir: str | None) -> Any:
        return self.inner.resolve(value, base_dir)


@attrs.frozen
class _Optional(_Wrapping):
    """
    Another kind, or absent: C{false} in TOML and on the command line,
    C{None} in Python.
    """

    def convert(self, value: Any) -> Any:
        if value is None or value is False:
            return None
        if value is True:
            raise _Invalid(f"expected {self.expected}, got boolean true")
        return self.convert_inner(value)

    def from_text(self, text: str) -> Any:
        if text.strip().lower() == "false":
            return None
        return self.inner.from_text(text)

    def to_text(self, value: Any) -> str:
        return "false" if value is None else self.inner.to_text(value)


@attrs.frozen
class _Auto(_Wrapping):
    """
    Another kind, or C{"auto"}: a value the node derives from other keys.
    """

    def convert(self, value: Any) -> Any:
        if value == AUTO:
            return AUTO
        return self.convert_inner(value)

    def from_text(self, text: str) -> Any:
        if text.strip().lower() == AUTO:
            return AUTO
        return self.inner.from_text(text)

    def to_text(self, value: Any) -> str:
        return AUTO if value == AUTO else self.inner.to_text(value)


def _auto(inner: _Kind) -> _Auto:
    return _Auto(expected=f'"{AUTO}", {inner.expected}', metavar=f"{AUTO}|{inner.metavar}", inner=inner)


#: RFC 6750 C{b64token}: the characters a bearer token may hold.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


@attrs.frozen
class _Token(_Kind):
    """
    A bearer token (RFC 6750 C{b64token} characters, at least C{min_length}
    of them), or the empty string for none (C{none} on the command line,
    which is too short to be a token).
    """

    expected: str = "a bearer token string"
    metavar: str = "TOKEN"
    min_length: int = 16
    max_length: int = 4096

    def from_text(self, text: str) -> str:
        return "" if text == "none" else text

    def to_text(self, value: Any) -> str:
        return value or "none"

    def convert(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"expected {self.expected}, got {_describe(value)}")
        if not value:
            return value
        if not self.min_length <= len(value) <= self.max_length:
            raise _Invalid(f"must be {self.min_length} to {self.max_length} characters, got {len(value)}")
        if not _BEARER_TOKEN.fullmatch(value):
            raise _Invalid("may hold only letters, digits and - . _ ~ + / (then optional '=' padding)")
        return value


@attrs.frozen
class _Choice(_Kind):
    """
    One of a few words.
    """

    choices: tuple[str, ...] = ()

    def convert(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise _Invalid(f"expected {self.expected}, got {_describe(value)}")
        return value


def _choice(metavar: str, choices: tuple[str, ...]) -> _Choice:
    return _Choice(expected="one of " + ", ".join(choices), metavar=metavar, choices=choices)


#: The log levels of C{[log] level}, least severe first (Twisted's names).
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
#: The formats of C{[log] format}.
LOG_FORMATS = ("text", "json")


def _optional(inner: _Kind) -> _Optional:
    return _Optional(expected=f"{inner.expected} or false", metavar=f"{inner.metavar}|false", inner=inner)


@attrs.frozen
class ConfigKey:
    """
    One configuration key: where it lives in TOML, what kind of value it
    takes, what it means, and its command-line flag.

    @ivar table: the TOML table (C{"p2p"}, C{"p2p.reconnection"}, C{"admin"}).
    @ivar name: the key in that table, also the attribute name.
    @ivar kind: parses and checks values.
    @ivar help: one line of meaning.
    @ivar flag: the long command-line option, without dashes.
    @ivar repeatable: the flag is given once per list item.
    """

    table: str
    name: str
    kind: _Kind
    help: str
    flag: str = ""
    repeatable: bool = False

    @property
    def dotted(self) -> str:
        """
        The key in dotted form, as error messages and overrides name it.
        """
        return f"{self.table}.{self.name}"

    @property
    def is_switch(self) -> bool:
        """
        The flag takes no argument (a boolean that the flag turns on).
        """
        return isinstance(self.kind, _Flag)

    @property
    def metavar(self) -> str:
        """
        The shape of a command-line argument (C{N}, C{ADDR:PORT|false}, ...).
        """
        return self.kind.metavar

    def get(self, config: PoolConfig) -> Any:
        """
        This key's value in C{config}.
        """
        holder: Any = {
            "p2p": config,
            "p2p.reconnection": config.reconnection,
            "admin": config.admin,
            "log": config.log,
        }[self.table]
        return getattr(holder, self.name)

    @property
    def default(self) -> Any:
        """
        This key's built-in default value.
        """
        return self.get(_default_config())

    def format_value(self, value: Any) -> str:
        """
        A value as written on the command line (C{false} for absent).
        """
        return self.kind.to_text(value)

    def convert(self, value: Any) -> Any:
        """
        Check a TOML or Python value for this key.

        @raise ConfigError: naming this key.
        """
        try:
            return self.kind.convert(value)
        except _Invalid as e:
            raise ConfigError(self.dotted, str(e)) from None

    def parse_text(self, text: str, source: str | None = None) -> Any:
        """
        Parse and check a command-line argument for this key.

        @raise ConfigError: naming this key and C{source}.
        """
        try:
            return self.kind.convert(self.kind.from_text(text))
        except _Invalid as e:
            raise ConfigError(self.dotted, str(e), source) from None


def _key(table: str, name: str, kind: _Kind, help: str, flag: str = "", repeatable: bool = False) -> ConfigKey:
    if not flag:
        prefix = "" if table == "p2p" else table.rpartition(".")[2] + "-"
        flag = prefix + name.replace("_", "-")
    return ConfigKey(table, name, kind, help, flag, repeatable)


_SECONDS = _Real(minimum=0.0, exclusive_minimum=True)
_COUNT = _Integer(minimum=0)

#: Every configuration key, in documentation order.
CONFIG_KEYS: tuple[ConfigKey, ...] = (
    _key(
        "p2p", "listen", _Address(), "Address and port to accept peers on ([::]:PORT for IPv6; port 0 = any free port)."
    ),
    _key(
        "p2p",
        "advertised_port",
        _optional(_Integer(minimum=1, maximum=65535, metavar="PORT")),
        "Port announced to peers in the handshake; false = the port of listen.",
    ),
    _key("p2p", "data_dir", _Path(), "Directory holding identity.json and peers.json."),
    _key("p2p", "identity_file", _optional(_Path()), "Identity key file; false = identity.json in data_dir."),
    _key("p2p", "peers_file", _optional(_Path()), "Known peers and points file; false = peers.json in data_dir."),
    _key(
        "p2p",
        "network",
        _Name(),
        "Network (chain) name sent in the handshake; nodes with different names never connect.",
    ),
    _key(
        "p2p",
        "expected_proof_of_work",
        _Real(minimum=0.0, maximum=256.0, metavar="BITS"),
        "Proof-of-work difficulty (bits) required of identities, ours and peers'.",
    ),
    _key(
        "p2p",
        "trusted_points",
        _PointList(),
        "Trusted points: always kept, reconnected, and the only peers allowed in private mode.",
        flag="peer",
        repeatable=True,
    ),
    _key(
        "p2p",
        "bootstrap_points",
        _PointList(),
        "Points registered at start to find the network (not trusted).",
        flag="bootstrap-point",
        repeatable=True,
    ),
    _key(
        "p2p",
        "bootstrap_urls",
        _UrlList(),
        "HTTPS URLs serving a JSON list of points, fetched at start and when maintenance lacks candidates.",
        flag="bootstrap-url",
        repeatable=True,
    ),
    _key(
        "p2p",
        "seed_ca_file",
        _optional(_Path()),
        "PEM CA bundle that verifies bootstrap_urls servers; false = the system trust store.",
    ),
    _key("p2p", "private_mode", _Flag(), "Connect only to trusted points and ask peers not to advertise this node."),
    _key(
        "p2p",
        "min_connections",
        _COUNT,
        "Below this many connections maintenance looks for more (Tezos min_connections).",
    ),
    _key(
        "p2p",
        "expected_connections",
        _COUNT,
        "Number of connections maintenance aims for (Tezos expected_connections).",
    ),
    _key(
        "p2p", "max_connections", _COUNT, "Above this many connections maintenance closes some (Tezos max_connections)."
    ),
    _key("p2p", "max_incoming_connections", _COUNT, "Incoming connections allowed at once in the handshake."),
    _key(
        "p2p",
        "max_known_points",
        _optional(_Pair()),
        "Known-points table limit: at MAX, trim to TARGET; false = unbounded.",
    ),
    _key(
        "p2p",
        "max_known_peer_ids",
        _optional(_Pair()),
        "Known-peers table limit: at MAX, trim to TARGET; false = unbounded.",
    ),
    _key(
        "p2p",
        "max_source_group_share",
        _Real(minimum=0.0, maximum=1.0, exclusive_minimum=True, metavar="FRACTION"),
        "Share of max_known_points that never-connected points learnt from one source group may hold; "
        "at the bound a new one evicts that group's oldest.",
    ),
    _key(
        "p2p",
        "source_group_dial_rate",
        _Real(minimum=0.0, exclusive_minimum=True, metavar="PER_SECOND"),
        "Dials per second, per source group, of never-connected points learnt from peers.",
    ),
    _key(
        "p2p",
        "source_group_dial_burst",
        _Integer(minimum=1),
        "Dials of never-connected learnt points one source group may have at once before its rate applies.",
    ),
    _key(
        "p2p",
        "max_peers_file_size",
        _auto(_optional(_Integer(minimum=1, maximum=2**40, metavar="BYTES"))),
        "Largest peers file read at start; a larger one is moved aside unread and the node starts "
        "from peers.json.bak if it fits, else with empty tables; auto = derived from max_known_points "
        "and max_known_peer_ids; false = no limit.",
    ),
    _key(
        "p2p",
        "peer_greylist_size",
        _Integer(minimum=1),
        "Greylisted peer ids remembered; the oldest is forgotten first.",
    ),
    _key(
        "p2p",
        "ip_greylist_size_in_kilobytes",
        _Integer(minimum=1, maximum=8191, metavar="KIB"),
        "Size of the IP greylist bloom filter, in KiB.",
    ),
    _key(
        "p2p",
        "ip_greylist_cleanup_delay",
        _SECONDS,
        "Seconds an IP stays greylisted (the filter counts down in 16 steps).",
    ),
    _key("p2p", "connection_timeout", _SECONDS, "Seconds allowed to open a TCP connection to a point."),
    _key(
        "p2p", "authentication_timeout", _SECONDS, "Seconds allowed for the TLS handshake and the Hello/Ack exchange."
    ),
    _key(
        "p2p",
        "maintenance_idle_time",
        _optional(_SECONDS),
        "Seconds between maintenance runs when nothing triggers one; false = no maintenance.",
    ),
    _key("p2p", "swap_linger", _optional(_SECONDS), "Minimum seconds between two accepted swaps; false = never swap."),
    _key(
        "p2p",
        "disable_peer_discovery",
        _Flag(),
        "Neither send nor answer Bootstrap and Advertise messages; nacks carry no points.",
    ),
    _key("p2p", "max_concurrent_dials", _Integer(minimum=1), "Outgoing connections maintenance sets up at once."),
    _key(
        "p2p",
        "max_incoming_connections_per_netgroup",
        _Integer(minimum=1),
        "Connections accepted from one network group (IPv4 /16, IPv6 /32), pending or running.",
    ),
    _key(
        "p2p",
        "max_stalled_handshakes",
        _optional(_Integer(minimum=1)),
        "Incoming handshakes from one address that may time out (or give way) within 10 minutes; "
        "the last of them greylists the address; false = never.",
    ),
    _key(
        "p2p",
        "netgroup_cap_exempts_loopback",
        _Flag(),
        "Exempt loopback addresses from the per-netgroup cap (for many nodes on one host).",
    ),
    _key(
        "p2p",
        "eviction_protection",
        _optional(_COUNT),
        "When the slots are full, an incoming peer evicts the youngest incoming peer of the most represented "
        "network group, after protecting N peers by network group, N by score, 2N by ping and half the rest by "
        "uptime; false = no eviction (the newcomer is refused).",
    ),
    _key(
        "p2p",
        "refusal_log_interval",
        _optional(_SECONDS),
        "Seconds over which refused connections are counted, then logged as one line per reason; "
        "false = one line per refusal.",
    ),
    _key(
        "p2p",
        "max_message_size",
        _Integer(minimum=1, maximum=2**30, metavar="BYTES"),
        "Largest frame accepted from a peer, in bytes; a larger one closes the connection.",
    ),
    _key(
        "p2p",
        "checkpoint_interval",
        _SECONDS,
        "Seconds between two saves of the peers file (it is also saved at shutdown).",
    ),
    _key(
        "p2p",
        "memory_trim_interval",
        _optional(_SECONDS),
        "Seconds between two returns of the memory the process freed to the system (glibc malloc_trim); false = never.",
    ),
    _key(
        "p2p",
        "keepalive_interval",
        _optional(_SECONDS),
        "Seconds of silence after which a peer is pinged; 3 silent intervals close it; false = never.",
    ),
    _key(
        "p2p",
        "send_queue_size",
        _Integer(minimum=1, maximum=2**40, metavar="BYTES"),
        "Bytes queued for one peer beyond one message alone; a full queue refuses sends and drops control answers.",
    ),
    _key(
        "p2p",
        "send_queue_budget",
        _Integer(minimum=1, maximum=2**40, metavar="BYTES"),
        "Bytes queued for all peers together; when spent, every send waits or is refused.",
    ),
    _key(
        "p2p",
        "receive_buffer_budget",
        _Integer(minimum=1, maximum=2**40, metavar="BYTES"),
        "Bytes buffered for large frames (over 64 KiB) being received from all peers together; when spent, "
        "a peer starting one is not read until room is freed, first come first served. "
        "At least max_message_size + 5.",
    ),
    _key(
        "p2p",
        "min_frame_receive_rate",
        _Integer(minimum=1, maximum=2**40, metavar="BYTES/S"),
        "Bytes per second a large frame (over 64 KiB) must arrive at, counting only time its connection is read, "
        "after frame_receive_grace; a peer further behind is closed (frame_too_slow) and its reservation freed.",
    ),
    _key(
        "p2p",
        "frame_receive_grace",
        _SECONDS,
        "Seconds of reading a large frame may lag behind min_frame_receive_rate (a silent one is closed after this).",
    ),
    _key(
        "p2p",
        "send_stall_timeout",
        _SECONDS,
        "Seconds a peer may leave our send buffer full without draining it before the connection is aborted.",
    ),
    _key(
        "p2p",
        "close_grace_period",
        _SECONDS,
        "Seconds a closing connection may take to flush its goodbye before its socket is aborted.",
    ),
    _key(
        "p2p",
        "max_pending_messages",
        _Integer(minimum=1, maximum=2**20),
        "Messages of one connection the application may have in hand (unfired Deferreds) before reading pauses.",
    ),
    _key(
        "p2p",
        "max_control_frame_rate",
        _Real(minimum=0.0, exclusive_minimum=True, metavar="FRAMES"),
        "Control frames per second handled from one peer (burst: twice as many); reading pauses beyond.",
    ),
    _key(
        "p2p",
        "max_upload_speed",
        _optional(_Integer(minimum=1, maximum=2**40, metavar="BYTES/S")),
        "Node-wide upload limit in bytes per second, shared equally by busy connections; false = unlimited.",
    ),
    _key(
        "p2p",
        "max_download_speed",
        _optional(_Integer(minimum=1, maximum=2**40, metavar="BYTES/S")),
        "Node-wide download limit in bytes per second, shared equally by busy connections; false = unlimited.",
    ),
    _key(
        "p2p.reconnection",
        "factor",
        _Real(minimum=1.0, metavar="FACTOR"),
        "Multiplier applied to a point's back-off delay after each failed dial.",
    ),
    _key("p2p.reconnection", "initial_delay", _SECONDS, "First back-off delay after a failed dial, in seconds."),
    _key(
        "p2p.reconnection",
        "disconnection_delay",
        _Real(minimum=0.0),
        "Seconds before redialling a point whose established connection dropped.",
    ),
    _key("p2p.reconnection", "increase_cap", _SECONDS, "Longest back-off delay, in seconds."),
    _key(
        "p2p.reconnection",
        "jitter",
        _Real(minimum=0.0, maximum=1.0, metavar="FRACTION"),
        "Random spread of each delay, as a fraction of it (0.1 = +/-10%).",
    ),
    _key(
        "admin",
        "listen",
        _optional(_Address()),
        "Address and port of the admin HTTP API; false = no admin API.",
        flag="admin",
    ),
    _key(
        "admin",
        "token",
        _Token(),
        "Bearer token every admin API request must carry; empty = none (loopback listen only).",
    ),
    _key(
        "admin",
        "tls_certificate",
        _optional(_Path()),
        "PEM certificate (chain) to serve the admin API over HTTPS; false = plain HTTP.",
    ),
    _key(
        "admin",
        "tls_key",
        _optional(_Path()),
        "PEM private key of tls_certificate; false = the key is in the tls_certificate file.",
    ),
    _key(
        "admin",
        "request_timeout",
        _SECONDS,
        "Seconds a client has to send a whole request (line, headers, body) once it opens the "
        "connection or starts the request; then the connection is closed.",
    ),
    _key("admin", "idle_timeout", _SECONDS, "Seconds a keep-alive connection may stay idle between requests."),
    _key(
        "admin",
        "max_connections",
        _Integer(minimum=1),
        "HTTP connections open at once; at the cap an idle or slow one gives way to a new one.",
    ),
    _key(
        "admin",
        "max_connections_per_address",
        _Integer(minimum=1),
        "HTTP connections open at once from one client address.",
    ),
    _key(
        "log",
        "level",
        _choice("LEVEL", LOG_LEVELS),
        "Least severe level a node run by twistd logs: debug, info, warn, error or critical.",
    ),
    _key(
        "log",
        "format",
        _choice("FORMAT", LOG_FORMATS),
        "How a node run by twistd writes its log: text lines, or one JSON object per line.",
    ),
)

_KEYS_BY_DOTTED: dict[str, ConfigKey] = {key.dotted: key for key in CONFIG_KEYS}
_TABLES = ("p2p", "p2p.reconnection", "admin", "log")


def _converters_from_keys(table: str) -> Callable[[type, list[attrs.Attribute[Any]]], list[attrs.Attribute[Any]]]:
    """
    An attrs field transformer that gives each field of a class the converter
    of the L{CONFIG_KEYS} entry with the same name in C{table}.
    """
    keys = {key.name: key for key in CONFIG_KEYS if key.table == table}

    def transform(cls: type, fields: list[attrs.Attribute[Any]]) -> list[attrs.Attribute[Any]]:
        missing = set(keys) - {field.name for field in fields}
        if missing:
            raise TypeError(f"{cls.__name__} lacks fields for {sorted(missing)}")
        return [field.evolve(converter=keys[field.name].convert) if field.name in keys else field for field in fields]

    return transform


@attrs.frozen(field_transformer=_converters_from_keys("p2p.reconnection"))
class ReconnectionConfig:
    """
    Back-off of dials to a point (Tezos C{Point_reconnection_config}): after
    each failed dial the point waits C{delay}, which starts at
    C{initial_delay} and is multiplied by C{factor} up to C{increase_cap};
    after an established connection drops, the point waits
    C{disconnection_delay} and its delay resets. C{jitter} spreads each wait
    randomly by that fraction.
    """

    factor: float = 1.2
    initial_delay: float = 1.0
    disconnection_delay: float = 60.0
    increase_cap: float = 172800.0
    jitter: float = 0.1

    def __attrs_post_init__(self) -> None:
        if self.increase_cap < self.initial_delay:
            raise ConfigError(
                "p2p.reconnection.increase_cap",
                f"must be >= initial_delay ({_format_number(self.initial_delay)}), "
                f"got {_format_number(self.increase_cap)}",
            )


@attrs.frozen(field_transformer=_converters_from_keys("admin"))
class AdminConfig:
    """
    The admin HTTP API: where it listens, or C{None} to disable it, and the
    bearer token its clients must present (C{""}: none), and the PEM
    certificate and key that make it HTTPS. Listening on an address that is
    not loopback requires both a token and TLS. The last four fields bound
    what clients can hold: see C{docs/ADMIN.md}.
    """

    listen: Point | None = Point("127.0.0.1", 8732)
    token: str = ""
    tls_certificate: str | None = None
    tls_key: str | None = None
    request_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 64
    max_connections_per_address: int = 16

    def __attrs_post_init__(self) -> None:
        if self.listen is None or ipaddress.ip_address(self.listen.ip).is_loopback:
            return
        if not self.token:
            raise ConfigError(
                "admin.listen",
                f"{self.listen} is not a loopback address: set admin.token to require a bearer token there"
                + ("" if self.tls else ", and admin.tls_certificate and admin.tls_key to serve HTTPS"),
            )
        if not self.tls:
            raise ConfigError(
                "admin.listen",
                f"{self.listen} is not a loopback address: set admin.tls_certificate and admin.tls_key "
                "to serve the admin API over HTTPS there",
            )

    @property
    def tls(self) -> bool:
        """
        Whether the admin API is served over HTTPS. (A C{tls_key} without a
        C{tls_certificate} is refused when the admin service starts.)
        """
        return self.tls_certificate is not None


@attrs.frozen(field_transformer=_converters_from_keys("log"))
class LogConfig:
    """
    What a node run by twistd logs, and how (see L{p2pool.daemon.logs}): events
    of C{level} and above, as C{"text"} lines or C{"json"} objects.
    """

    level: str = "info"
    format: str = "text"


@attrs.frozen(field_transformer=_converters_from_keys("p2p"))
class PoolConfig:
    """
    Everything a pool needs to know before it starts. Defaults follow Tezos
    (C{p2p_limits.ml}) except C{listen}, C{network} and
    C{expected_proof_of_work}; see C{docs/CONFIGURATION.md}.

    Building one checks every value and raises L{ConfigError} naming the key.
    """

    listen: Point = Point("0.0.0.0", 9732)
    advertised_port: int | None = None
    data_dir: str = "p2pool-data"
    identity_file: str | None = None
    peers_file: str | None = None
    network: str = "p2pool-mainnet"
    expected_proof_of_work: float = 16.0
    trusted_points: tuple[PointSpec, ...] = ()
    bootstrap_points: tuple[PointSpec, ...] = ()
    bootstrap_urls: tuple[str, ...] = ()
    seed_ca_file: str | None = None
    private_mode: bool = False
    min_connections: int = 10
    expected_connections: int = 50
    max_connections: int = 100
    max_incoming_connections: int = 20
    max_known_points: tuple[int, int] | None = (400, 300)
    max_known_peer_ids: tuple[int, int] | None = (400, 300)
    max_source_group_share: float = 0.1
    source_group_dial_rate: float = 1.0
    source_group_dial_burst: int = 10
    max_peers_file_size: int | str | None = AUTO
    peer_greylist_size: int = 1023
    ip_greylist_size_in_kilobytes: int = 2048
    ip_greylist_cleanup_delay: float = 86400.0
    connection_timeout: float = 10.0
    authentication_timeout: float = 5.0
    maintenance_idle_time: float | None = 120.0
    swap_linger: float | None = 30.0
    disable_peer_discovery: bool = False
    max_concurrent_dials: int = 10
    max_incoming_connections_per_netgroup: int = 10
    max_stalled_handshakes: int | None = 3
    netgroup_cap_exempts_loopback: bool = False
    eviction_protection: int | None = 4
    refusal_log_interval: float | None = 60.0
    max_message_size: int = 8388608
    checkpoint_interval: float = 300.0
    memory_trim_interval: float | None = 60.0
    keepalive_interval: float | None = 30.0
    send_queue_size: int = 1048576
    send_queue_budget: int = 268435456
    receive_buffer_budget: int = 268435456
    min_frame_receive_rate: int = 65536
    frame_receive_grace: float = 10.0
    send_stall_timeout: float = 60.0
    close_grace_period: float = 2.0
    max_pending_messages: int = 10
    max_control_frame_rate: float = 20.0
    max_upload_speed: int | None = None
    max_download_speed: int | None = None
    reconnection: ReconnectionConfig = attrs.field(
        factory=ReconnectionConfig, validator=attrs.validators.instance_of(ReconnectionConfig)
    )
    admin: AdminConfig = attrs.field(factory=AdminConfig, validator=attrs.validators.instance_of(AdminConfig))
    log: LogConfig = attrs.field(factory=LogConfig, validator=attrs.validators.instance_of(LogConfig))

    def __attrs_post_init__(self) -> None:
        if self.min_connections > self.expected_connections:
            raise ConfigError(
                "p2p.min_connections",
                f"must be <= expected_connections ({self.expected_connections}), got {self.min_connections}",
            )
        if self.expected_connections > self.max_connections:
            raise ConfigError(
                "p2p.max_connections",
                f"must be >= expected_connections ({self.expected_connections}), got {self.max_connections}",
            )
        if self.receive_buffer_budget < self.max_message_size + FRAME_HEADER.size:
            raise ConfigError(
                "p2p.receive_buffer_budget",
                f"must be >= max_message_size ({self.max_message_size}) + {FRAME_HEADER.size} "
                f"(a whole frame with its header), got {self.receive_buffer_budget}",
            )

    @property
    def identity_path(self) -> str:
        """
        The identity file to use: C{identity_file}, or C{identity.json} in
        C{data_dir}.
        """
        return self.identity_file if self.identity_file is not None else os.path.join(self.data_dir, "identity.json")

    @property
    def peers_path(self) -> str:
        """
        The peers file to use: C{peers_file}, or C{peers.json} in C{data_dir}.
        """
        return self.peers_file if self.peers_file is not None else os.path.join(self.data_dir, "peers.json")

    @property
    def peers_file_size_limit(self) -> int | None:
        """
        The largest peers file read at start, in bytes (None: no limit):
        C{max_peers_file_size}, or when it is C{"auto"}, room for a full
        table of each kind (L{PEER_RECORD_ALLOWANCE} bytes a peer,
        L{POINT_RECORD_ALLOWANCE} a point) and L{PEERS_FILE_BASE_ALLOWANCE}
        more; no limit when either table is unbounded.
        """
        if self.max_peers_file_size != AUTO:
            return cast(int | None, self.max_peers_file_size)
        if self.max_known_points is None or self.max_known_peer_ids is None:
            return None
        return (
            PEERS_FILE_BASE_ALLOWANCE
            + self.max_known_peer_ids[0] * PEER_RECORD_ALLOWANCE
            + self.max_known_points[0] * POINT_RECORD_ALLOWANCE
        )

    def maintenance_bounds(self) -> tuple[int, int, int, int]:
        """
        Tezos C{make_maintenance_bounds}: C{(min_threshold, min_target,
        max_target, max_threshold)}. Maintenance repairs when the connection
        count leaves C{[min_threshold, max_threshold]}, aiming for
        C{[min_target, max_target]}. Defaults 10/50/100 give (23, 36, 68, 84).
        """
        low, expected, high = self.min_connections, self.expected_connections, self.max_connections
        step_min = (expected - low) // 3
        step_max = (high - expected) // 3
        return (low + step_min, low + 2 * step_min, high - 2 * step_max, high - step_max)


@functools.cache
def _default_config() -> PoolConfig:
    return PoolConfig()


# -- reading ---------------------------------------------------------------


def _hint(dotted: str) -> str:
    """
    A "did you mean" suffix for an unknown dotted name, or C{""}.
    """
    table, _, name = dotted.rpartition(".")
    known = list(_KEYS_BY_DOTTED) + list(_TABLES)
    siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == table]
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.7)
    if close:
        return f" (did you mean {f'{table}.' if table else ''}{close[0]}?)"
    elsewhere = [k for k in known if k.rpartition(".")[2] == name]
    if not elsewhere:
        elsewhere = difflib.get_close_matches(dotted, known, n=1, cutoff=0.8)
    return f" (did you mean {elsewhere[0]}?)" if elsewhere else ""


def _unknown(dotted: str, value: Any, source: str | None) -> ConfigError:
    if dotted in _TABLES:
        return ConfigError(dotted, "is a table; set its keys instead", source)
    what = "table" if isinstance(value, Mapping) else "key"
    hint = _hint(dotted)
    if not hint and what == "table":
        hint = " (the tables are " + ", ".join(f"[{t}]" for t in _TABLES) + ")"
    return ConfigError(dotted, f"unknown {what}{hint}", source)


def _flatten(data: Mapping[str, Any], source: str | None) -> dict[str, Any]:
    """
    The values of a TOML document by dotted key, refusing unknown tables and
    keys and tables that are not tables.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(None, f"expected a table of settings, got {_describe(data)}", source)
    flat: dict[str, Any] = {}

    def walk(mapping: Mapping[str, Any], table: str) -> None:
        for name, value in mapping.items():
            dotted = f"{table}.{name}" if table else str(name)
            if dotted in _TABLES:
                if not isinstance(value, Mapping):
                    raise ConfigError(dotted, f"expected a table, got {_describe(value)}", source)
                walk(value, dotted)
            elif dotted in _KEYS_BY_DOTTED:
                flat[dotted] = value
            else:
                raise _unknown(dotted, value, source)

    walk(data, "")
    return flat


@attrs.frozen
class _Origin:
    """
    Where a value came from: a label for messages, and the directory its
    relative paths are relative to.
    """

    label: str | None
    base_dir: str | None


def _build(flat: Mapping[str, Any], origin_of: Callable[[str], _Origin]) -> PoolConfig:
    """
    Build a L{PoolConfig} from values by dotted key, attributing any error to
    the origin of the key at fault.
    """
    arguments: dict[str, dict[str, Any]] = {table: {} for table in _TABLES}
    for dotted, value in flat.items():
        key = _KEYS_BY_DOTTED[dotted]
        arguments[key.table][key.name] = key.kind.resolve(value, origin_of(dotted).base_dir)
    try:
        return PoolConfig(
            reconnection=ReconnectionConfig(**arguments["p2p.reconnection"]),
            admin=AdminConfig(**arguments["admin"]),
            log=LogConfig(**arguments["log"]),
            **arguments["p2p"],
        )
    except ConfigError as e:
        # A cross-key check may blame a key left at its default because of
        # another key's value; say so, since the key appears nowhere.
        detail = e.detail if e.key in flat else f"{e.detail} (the default)"
        raise ConfigError(e.key, detail, origin_of(e.key or "").label) from None


def config_from_mapping(
    data: Mapping[str, Any], *, base_dir: str | None = None, source: str = "<config>"
) -> PoolConfig:
    """
    Validate a parsed TOML document (tables C{p2p}, C{p2p.reconnection},
    C{admin}, C{log}) and build the configuration; absent keys take their
    defaults.

    Unknown tables and keys, values of the wrong type or out of range, and
    C{min_connections <= expected_connections <= max_connections} violations
    are refused. Booleans are not integers; integers are accepted for
    floats; points are strings; absent optional values are C{false}.

    @param base_dir: the directory relative paths (C{data_dir},
        C{identity_file}, C{peers_file}) are relative to, normally that of
        the configuration file; C{None} leaves them as written.
    @param source: names the data in error messages.
    @raise ConfigError: naming C{source} and the dotted key.
    """
    origin = _Origin(source, base_dir)
    return _build(_flatten(data, source), lambda dotted: origin)


_NO_OVERRIDES: Mapping[str, Any] = MappingProxyType({})


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(None, f"cannot read configuration file: {e.strerror or e}", path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(None, f"not UTF-8 text: {e}", path) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(None, f"TOML syntax error: {e}", path) from None
    except RecursionError:
        raise ConfigError(None, "TOML syntax error: values nested too deeply", path) from None
    except ValueError as e:
        # tomllib lets int()'s digit limit out as a bare ValueError.
        raise ConfigError(None, f"TOML syntax error: {e}", path) from None


def load_config(
    path: str | None,
    overrides: Mapping[str, Any] = _NO_OVERRIDES,
    *,
    overrides_source: str = COMMAND_LINE,
) -> PoolConfig:
    """
    Read a TOML configuration file, apply overrides, and validate the result.

    Override beats file beats default. Relative paths in the file are
    relative to the file's directory; relative paths in C{overrides} are
    relative to the current directory.

    @param path: the file, or C{None} to start from the defaults.
    @param overrides: values by dotted key (C{"p2p.max_connections"}),
        either as TOML would give them or already converted
        (C{Point}, C{None} for absent, ...).
    @param overrides_source: names the overrides in error messages.
    @raise ConfigError: the file cannot be read or parsed (naming the file,
        and the line and column of a syntax error), or a value is wrong
        (naming its key and where it came from).
    """
    flat = _flatten(_read_toml(path), path) if path is not None else {}
    for dotted in overrides:
        if dotted not in _KEYS_BY_DOTTED:
            raise _unknown(dotted, overrides[dotted], overrides_source)
    flat.update(overrides)
    from_file = _Origin(path, os.path.dirname(os.path.abspath(path)) if path is not None else None)
    from_overrides = _Origin(overrides_source, os.getcwd())
    return _build(flat, lambda dotted: from_overrides if dotted in overrides else from_file)


# -- writing ---------------------------------------------------------------

#: Characters written as escapes in a TOML basic string.
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    """
    A configuration value in TOML: C{None} (absent) is C{false}, points
    and point specs are strings, tuples are arrays.
    """
    if value is None or isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return _toml_string(str(value))


def config_to_toml(config: PoolConfig, header: str = "") -> str:
    """
    The whole configuration as a TOML document that L{load_config} reads
    back into the same configuration: every key of every table, absent
    values as C{false}, relative paths made absolute (against the current
    directory, as the node uses them).

    @param header: a comment put first (each line prefixed with C{# }).
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for table in _TABLES:
        if lines:
            lines.append("")
        lines.append(f"[{table}]")
        for key in CONFIG_KEYS:
            if key.table == table:
                value = key.kind.resolve(key.get(config), os.getcwd())
                lines.append(f"{key.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


# -- open-file budget ------------------------------------------------------


def file_descriptors_needed(config: PoolConfig) -> int:
    """
    File descriptors a node may hold at once: one per connection and per
    pending incoming handshake, plus L{FILE_DESCRIPTOR_HEADROOM}.
    """
    return config.max_connections + config.max_incoming_connections + FILE_DESCRIPTOR_HEADROOM


def _is_unlimited(limit: int) -> bool:
    return limit < 0 or (_resource is not None and limit == _resource.RLIM_INFINITY)


def _soft_file_limit() -> int | None:
    if _resource is None:
        return None
    return _resource.getrlimit(_resource.RLIMIT_NOFILE)[0]


def check_file_budget(config: PoolConfig, soft_limit: int | None = None) -> None:
    """
    Refuse a configuration whose connections could exhaust the open-file
    limit (L{file_descriptors_needed} against C{RLIMIT_NOFILE}).

    @param soft_limit: the limit to check against; C{None} reads the
        process's soft limit (no check where there is none).
    @raise ConfigError: naming C{p2p.max_connections} and both numbers.
    """
    limit = soft_limit if soft_limit is not None else _soft_file_limit()
    if limit is None or _is_unlimited(limit):
        return
    needed = file_descriptors_needed(config)
    if needed > limit:
        raise ConfigError(
            "p2p.max_connections",
            f"needs {needed} file descriptors (max_connections {config.max_connections} "
            f"+ max_incoming_connections {config.max_incoming_connections} "
            f"+ {FILE_DESCRIPTOR_HEADROOM} for listeners, the admin API, files and logs) "
            f"but the open-file limit (RLIMIT_NOFILE) is {limit}; "
            f"lower the connection limits or raise the limit (ulimit -n)",
        )


def raise_file_limit(
    needed: int,
    *,
    getrlimit: Callable[[], tuple[int, int]] | None = None,
    setrlimit: Callable[[tuple[int, int]], None] | None = None,
) -> int:
    """
    Raise the soft open-file limit to C{needed} if it is lower, without
    exceeding the hard limit.

    @param getrlimit: returns C{(soft, hard)}; defaults to C{RLIMIT_NOFILE}.
    @param setrlimit: sets C{(soft, hard)}; defaults to C{RLIMIT_NOFILE}.
    @return: the soft limit now in force (negative or C{RLIM_INFINITY}
        when unlimited); unchanged if raising it failed.
    """
    if getrlimit is None or setrlimit is None:
        if _resource is None:
            return -1
        resource = _resource
        getrlimit = getrlimit or (lambda: resource.getrlimit(resource.RLIMIT_NOFILE))
        setrlimit = setrlimit or (lambda limits: resource.setrlimit(resource.RLIMIT_NOFILE, limits))
    soft, hard = getrlimit()
    if _is_unlimited(soft) or soft >= needed:
        return soft
    target = needed if _is_unlimited(hard) else min(needed, hard)
    if target <= soft:
        return soft
    try:
        setrlimit((target, hard))
    except (ValueError, OSError):
        return soft
    return getrlimit()[0]
