"""The one place that installs Twisted's asyncio reactor (Otedama's lean variant of it).

The node, the devnet, the miner and the benchmarks all run on the asyncio reactor
(kademlia is asyncio-only). Each entry point calls :func:`install_asyncio_reactor` before
anything imports ``twisted.internet.reactor``.

:class:`LeanAsyncioReactor` is Twisted's ``AsyncioSelectorReactor`` with one change on
the path every received byte takes: the stock reactor registers each socket with asyncio
as ``log.callWithLogger(selectable, self._readOrWrite, ...)``, which for every read and
write event builds the legacy log context (the selectable's log prefix as ``system``,
copied into a new context dict pushed on a thread-local stack). Measured on the Stratum
server with 1,000 miners, that wrapper was about 8 µs of the 45 µs of reactor CPU a
share costs (``docs/benchmarks.md``). This reactor registers ``_readOrWrite`` itself; it
keeps the stock handling of a failing ``doRead``/``doWrite`` (logged, the connection
dropped), and an error escaping the disconnect path is logged through Twisted's logger
with the selectable's log prefix, as the wrapper did, instead of reaching asyncio. What
is lost: messages logged through the *legacy* ``twisted.python.log`` API inside such a
callback carry ``system: -`` instead of the connection's prefix (Otedama logs through
``twisted.logger`` with its own namespaces).
"""

from __future__ import annotations

import errno
import sys
from typing import Any

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.posixbase import _NO_FILEDESC
from twisted.logger import Logger

__all__ = ["LeanAsyncioReactor", "WrongReactor", "install_asyncio_reactor"]


class WrongReactor(Exception):
    """Another reactor than asyncio's is installed already."""


class LeanAsyncioReactor(AsyncioSelectorReactor):
    """``AsyncioSelectorReactor`` whose file descriptors are served without the legacy
    log-context wrapper (see the module docstring)."""

    _lean_log = Logger()

    def addReader(self, reader: Any) -> None:
        if reader in self._readers or reader in self._continuousPolling._readers:
            return
        fd = reader.fileno()
        try:
            self._asyncioEventloop.add_reader(fd, self._readOrWrite, reader, True)
            self._readers[reader] = fd
        except OSError as e:
            self._unregisterFDInAsyncio(fd)
            if e.errno == errno.EPERM:
                # epoll(7) does not take some descriptors (regular files): poll them.
                self._continuousPolling.addReader(reader)
            else:
                raise

    def addWriter(self, writer: Any) -> None:
        if writer in self._writers or writer in self._continuousPolling._writers:
            return
        fd = writer.fileno()
        try:
            self._asyncioEventloop.add_writer(fd, self._readOrWrite, writer, False)
            self._writers[writer] = fd
        except PermissionError:
            self._unregisterFDInAsyncio(fd)
            self._continuousPolling.addWriter(writer)
        except BrokenPipeError:
            self._unregisterFDInAsyncio(fd)
        except BaseException:
            self._unregisterFDInAsyncio(fd)
            raise

    def _readOrWrite(self, selectable: Any, read: bool) -> None:
        try:
            method = selectable.doRead if read else selectable.doWrite
            if selectable.fileno() == -1:
                self._disconnectSelectable(selectable, _NO_FILEDESC, read)
                return
            try:
                why = method()
            except Exception as e:
                why = e
                self._lean_log.failure(
                    "{what} of {prefix} failed",
                    what="doRead" if read else "doWrite",
                    prefix=_prefix(selectable),
                )
            if why:
                self._disconnectSelectable(selectable, why, read)
        except Exception:
            self._lean_log.failure("unhandled error serving {prefix}", prefix=_prefix(selectable))


def _prefix(selectable: Any) -> str:
    try:
        return str(selectable.logPrefix())
    except Exception:
        return repr(selectable)


def install_asyncio_reactor() -> Any:
    """Install :class:`LeanAsyncioReactor` unless an asyncio reactor is installed
    already, and return the installed one.

    Raises :class:`WrongReactor` when another reactor was installed first (for example
    ``twistd --reactor=epoll``); Twisted's own asyncio reactor (``twistd
    --reactor=asyncio``) is accepted as it is. The reactor is typed ``Any``: without the
    zope plugin mypy does not know the reactor's interfaces.
    """
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet.main import installReactor

        installReactor(LeanAsyncioReactor())
    from twisted.internet import reactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise WrongReactor(
            f"Otedama needs the asyncio reactor, but {type(reactor).__module__} is already "
            "installed; run twistd with --reactor=asyncio (or without --reactor)"
        )
    return reactor
