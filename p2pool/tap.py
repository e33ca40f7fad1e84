# -*- test-case-name: tests.test_tap -*-
"""
twistd glue: C{twistd -n p2pool [--config FILE] [flags]}.

L{Options} has C{--config} plus one flag per configuration key, generated
from L{p2pool.config.CONFIG_KEYS}. A flag beats the file, which beats the
defaults. L{makeService} builds the node service from the resulting
L{PoolConfig}.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application.service import IService
from twisted.python import usage

from p2pool.addressing import AddressError
from p2pool.config import CONFIG_KEYS, ConfigError, ConfigKey, PoolConfig, load_config

__all__ = ["Options", "makeService"]

_KEYS_BY_FLAG: dict[str, ConfigKey] = {key.flag: key for key in CONFIG_KEYS}


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
        "See docs/CONFIGURATION.md."
    )

    optParameters: list[list[Any]] = [
        ["config", "c", None, "FILE: TOML configuration file [default: none, built-in defaults only]"],
    ] + [
        [key.flag, None, None, _help(key)]
        for key in CONFIG_KEYS
        if not key.is_switch and not key.repeatable
    ]

    optFlags: list[list[Any]] = [[key.flag, None, _help(key)] for key in CONFIG_KEYS if key.is_switch]

    config: PoolConfig

    def __init__(self) -> None:
        super().__init__()
        self._repeated: dict[str, list[str]] = {}

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

    def _overrides(self) -> dict[str, Any]:
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
                    overrides[key.dotted] = tuple(
                        item for text in texts for item in key.parse_text(text, source)
                    )
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
        config_path: Optional[str] = self["config"]
        try:
            self.config = load_config(config_path, self._overrides())
        except (ConfigError, AddressError) as e:
            raise usage.UsageError(str(e)) from e


def makeService(options: Options) -> IService:
    """
    The node service for the parsed command line.
    """
    from p2pool.node import make_node_service

    return make_node_service(options.config)
