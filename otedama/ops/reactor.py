"""The one place that installs Twisted's asyncio reactor.

The node, the devnet, the miner and the benchmarks all run on the asyncio reactor
(kademlia is asyncio-only). Each entry point calls :func:`install_asyncio_reactor` before
anything imports ``twisted.internet.reactor``.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["WrongReactor", "install_asyncio_reactor"]


class WrongReactor(Exception):
    """Another reactor than asyncio's is installed already."""


def install_asyncio_reactor() -> Any:
    """Install the asyncio reactor unless it is installed already, and return it.

    Raises :class:`WrongReactor` when another reactor was installed first (for example
    ``twistd --reactor=epoll``). The reactor is typed ``Any``: without the zope plugin
    mypy does not know the reactor's interfaces.
    """
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import reactor

    if type(reactor).__name__ != "AsyncioSelectorReactor":
        raise WrongReactor(
            f"Otedama needs the asyncio reactor, but {type(reactor).__module__} is already "
            "installed; run twistd with --reactor=asyncio (or without --reactor)"
        )
    return reactor
