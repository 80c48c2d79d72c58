"""``twistd otedama``: command-line options and the one function that builds the node.

``twistd -n otedama --config FILE`` and ``otedama serve --config FILE`` both end here,
so they run the same service tree.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.python import usage

from otedama.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config


def install_asyncio_reactor() -> None:
    """Install Twisted's asyncio reactor (kademlia is asyncio-only); refuse any other."""
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
        return
    from twisted.internet import reactor

    if type(reactor).__name__ != "AsyncioSelectorReactor":
        raise usage.UsageError(
            f"Otedama needs the asyncio reactor, but {type(reactor).__module__} is already "
            "installed; run twistd with --reactor=asyncio (or without --reactor)"
        )


def default_config_path(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    return env.get("OTEDAMA_CONFIG") or DEFAULT_CONFIG_PATH


class Options(usage.Options):
    """``twistd otedama`` options."""

    synopsis = "[--config FILE]"
    longdesc = "Run an Otedama mining pool node. See docs/configuration.md for the file."
    optParameters = [
        [
            "config",
            "c",
            None,
            f"Config file (default: $OTEDAMA_CONFIG, else {DEFAULT_CONFIG_PATH}).",
        ],
    ]

    config: Config

    def postOptions(self) -> None:
        install_asyncio_reactor()
        path = self["config"] or default_config_path()
        try:
            self.config = load_config(path)
        except ConfigError as error:
            problems = "\n  ".join(error.problems)
            raise usage.UsageError(f"invalid configuration {path}:\n  {problems}") from None


def makeService(options: Options) -> Any:
    """Build the node's service tree from validated options (twistd's entry point)."""
    from twisted.internet import reactor

    from otedama.node_tree import build_node

    return build_node(options.config, reactor)
