# -*- test-case-name: tests.test_tap -*-
"""
twistd glue: C{twistd -n p2pool [--config FILE] [flags]}.

L{Options} has C{--config} plus one flag per configuration key, generated
from L{p2pool.config.CONFIG_KEYS}. A flag beats the file, which beats the
defaults. L{makeService} builds the node service from the resulting
L{PoolConfig}.

Run by twistd (or C{twist}), a command-line or configuration error is two
lines on standard error, the error and a hint, and exit status 2; not the
whole C{--help}, which those runners print for a C{usage.UsageError}.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from typing import Any, cast

from twisted.application.service import IService
from twisted.python import usage

from p2pool._version import __version__, version_line
from p2pool.config import CONFIG_KEYS, ConfigError, ConfigKey, PoolConfig, config_to_toml, load_config
from p2pool.core.addressing import AddressError

__all__ = ["Options", "effective_config", "makeService"]

_KEYS_BY_FLAG: dict[str, ConfigKey] = {key.flag: key for key in CONFIG_KEYS}

#: The exit status of a command-line or configuration error under twistd.
EXIT_USAGE = 2


def _help(key: ConfigKey) -> str:
    """
    The help line of a key's flag: value syntax, meaning, TOML key, default.
    """
    if key.is_switch:
        default = "on" if key.default else "off"
        syntax = ""
    else:
        default = key.format_value(key.default)
        syntax = f"{key.metavar}{', repeatable' if key.repeatable else ''}: "
    return f"{syntax}{key.help} [{key.dotted}; default: {default}]"


class Options(usage.Options):
    """
    Command line of the C{p2pool} twistd plugin. After parsing, C{config}
    holds the validated L{PoolConfig}.
    """

    synopsis = "[--config FILE] [options]"
    longdesc = (
        "Run a p2pool node. Settings come from the command line, then the TOML file given "
        "with --config, then the defaults. Write false for an absent optional value. "
        f"See docs/CONFIGURATION.md. This is p2pool {__version__}."
    )

    optParameters: list[list[Any]] = [
        ["config", "c", None, "FILE: TOML configuration file [default: none, built-in defaults only]"],
    ] + [[key.flag, None, None, _help(key)] for key in CONFIG_KEYS if not key.is_switch and not key.repeatable]

    optFlags: list[list[Any]] = [[key.flag, None, _help(key)] for key in CONFIG_KEYS if key.is_switch] + [
        [
            "dump-config",
            None,
            "Print the effective configuration (defaults, then --config, then flags) as TOML "
            "that --config accepts, and exit.",
        ],
    ]

    config: PoolConfig

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # unannotated in Twisted
        self._repeated: dict[str, list[str]] = {}
        self._argv: list[str] = []

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Parse the command line; an error names what is wrong and, for a
        mistyped flag, the flag meant.

        @raise usage.UsageError: the message is one line.
        @raise SystemExit: instead of C{usage.UsageError} when run by
            twistd or C{twist} (C{parent} is set): the error and one hint
            line are written to standard error, and the status is
            L{EXIT_USAGE}.
        """
        self._argv = list(sys.argv[1:] if options is None else options)
        try:
            super().parseOptions(self._argv)  # type: ignore[no-untyped-call]  # unannotated in Twisted
        except usage.UsageError as e:
            message = self._explain(str(e))
            if self.parent is None:
                raise usage.UsageError(message) from None
            program = f"{os.path.basename(sys.argv[0]) or 'twistd'} p2pool"
            sys.stderr.write(
                f"{program}: error: {message}\n"
                f"hint: '{program} --help' lists every option; docs/CONFIGURATION.md explains each\n"
            )
            raise SystemExit(EXIT_USAGE) from None

    def _long_options(self) -> list[str]:
        return [name.rstrip("=") for name in self.longOpt]

    def _explain(self, message: str) -> str:
        """
        A getopt error in our words: a switch given a value says what the
        switch takes; an unknown flag gets the closest known one.
        """
        unknown = re.fullmatch(r"option --(\S+) not recognized", message)
        if unknown:
            flag = unknown.group(1)
            close = difflib.get_close_matches(flag, self._long_options(), n=1, cutoff=0.6)
            return f"unknown option --{flag}" + (f" (did you mean --{close[0]}?)" if close else "")
        with_value = re.fullmatch(r"option --(\S+) must not have an argument", message)
        if with_value:
            return self._switch_with_value(with_value.group(1), None)
        needs_value = re.fullmatch(r"option --(\S+) requires argument", message)
        if needs_value:
            flag = needs_value.group(1)
            key = _KEYS_BY_FLAG.get(flag)
            shape = key.metavar if key is not None else "a value"
            return f"--{flag} needs a value: {shape}"
        return message

    @staticmethod
    def _switch_with_value(flag: str, value: str | None) -> str:
        """
        The error for a value given to a switch (C{--private-mode false}).
        """
        got = f" (got {value!r})" if value is not None else ""
        return f"--{flag} is a switch and takes no value{got}: give --{flag} to turn it on, leave it out to keep it off"

    def parseArgs(self, *args: str) -> None:
        """
        Refuse arguments that are not options, saying what went wrong.
        """
        if not args:
            return
        stray = args[0]
        index = len(self._argv) - len(args)
        previous = self._argv[index - 1] if index > 0 else ""
        if previous.startswith("--"):
            name = previous[2:]
            matches = [flag for flag in self._long_options() if flag.startswith(name)]
            flag = name if name in matches else (matches[0] if len(matches) == 1 else name)
            key = _KEYS_BY_FLAG.get(flag)
            if key is not None and key.is_switch:
                raise usage.UsageError(self._switch_with_value(flag, stray))
        raise usage.UsageError(f"unexpected argument {stray!r}: options are written --name VALUE")

    def opt_version(self) -> None:
        """
        Print the versions of p2pool, Twisted and Python, and exit.
        """
        print(version_line())
        sys.exit(0)

    def _add_repeated(self, flag: str, text: str) -> None:
        self._repeated.setdefault(flag, []).append(text)

    def opt_peer(self, text: str) -> None:
        self._add_repeated("peer", text)

    setattr(opt_peer, "__doc__", _help(_KEYS_BY_FLAG["peer"]))  # noqa: B010 (pydoctor reads literals only)

    def opt_bootstrap_point(self, text: str) -> None:
        self._add_repeated("bootstrap-point", text)

    setattr(opt_bootstrap_point, "__doc__", _help(_KEYS_BY_FLAG["bootstrap-point"]))  # noqa: B010 (pydoctor reads literals only)

    def opt_bootstrap_url(self, text: str) -> None:
        self._add_repeated("bootstrap-url", text)

    setattr(opt_bootstrap_url, "__doc__", _help(_KEYS_BY_FLAG["bootstrap-url"]))  # noqa: B010 (pydoctor reads literals only)

    def overrides(self) -> dict[str, Any]:
        """
        The configuration values given as flags, parsed and checked, by
        dotted key.

        @raise ConfigError: naming the flag and the key.
        """
        overrides: dict[str, Any] = {}
        for key in CONFIG_KEYS:
            source = f"--{key.flag}"
            if key.repeatable:
                texts = self._repeated.get(key.flag, [])
                if texts:
                    overrides[key.dotted] = tuple(item for text in texts for item in key.parse_text(text, source))
            elif key.is_switch:
                if self[key.flag]:
                    overrides[key.dotted] = True
            elif self[key.flag] is not None:
                overrides[key.dotted] = key.parse_text(self[key.flag], source)
        return overrides

    def postOptions(self) -> None:
        """
        Merge the flags over the configuration file (or the defaults) into
        C{self.config}.

        @raise usage.UsageError: a flag or the file is wrong; the message
            names the key.
        """
        config_path: str | None = self["config"]
        try:
            self.config = load_config(config_path, self.overrides())
        except (ConfigError, AddressError) as e:
            raise usage.UsageError(str(e)) from e
        if self["dump-config"]:
            sys.stdout.write(effective_config(self))
            sys.exit(0)


def effective_config(options: Options) -> str:
    """
    The configuration of parsed C{options} as TOML that C{--config}
    accepts, with a header saying where it comes from.
    """
    sources = ["the built-in defaults"]
    if options["config"] is not None:
        sources.append(os.path.abspath(options["config"]))
    if options.overrides():
        sources.append("the command line")
    header = f"p2pool {__version__}: the effective configuration: " + ", then ".join(sources) + "."
    if options.config.admin.token:
        header += "\nIt holds the admin token: keep it private."
    return config_to_toml(options.config, header)


def makeService(options: Options) -> IService:
    """
    The node service for the parsed command line. Under twistd, its log
    goes where twistd's would, filtered and formatted by C{[log]} (see
    L{p2pool.daemon.logs}); it exits with status 1 if it cannot start.
    """
    from p2pool.daemon.logs import node_log_level, node_log_observer, twistd_log_destination
    from p2pool.daemon.node import exit_on_start_failure, make_node_service

    service = make_node_service(options.config)
    destination = twistd_log_destination(options.parent)
    if destination is not None:
        service.log_observer = node_log_observer(options.config.log, destination)
        service.log_level = node_log_level(options.config.log)
    exit_on_start_failure(service)
    return cast(IService, service)
