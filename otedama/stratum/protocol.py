"""The thin Twisted edge of the Stratum server: a Protocol that feeds a session, a Factory.

``tap.py`` listens with ``StreamServerEndpointService(serverFromString(reactor, listen),
StratumFactory(job_manager, sink, settings, reactor))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet import tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from otedama.stratum.jobs import JobManager
from otedama.stratum.server import StratumServer
from otedama.stratum.session import StratumSession
from otedama.stratum.settings import StratumSettings
from otedama.stratum.share import ShareSink

__all__ = ["StratumFactory", "StratumProtocol"]


_CONNECTION_DONE = Failure(ConnectionDone())


def direct_write(transport: Any) -> Callable[[bytes], object]:
    """``transport.write``, but bytes go to a plain TCP socket at once when nothing is queued.

    Twisted queues every write until the reactor reports the socket writable: two
    ``epoll_ctl`` calls and a loop turn per connection, so one notify fanned out to 15,000
    miners takes seconds. When Twisted holds nothing for the socket, this sends now;
    whatever the kernel does not take is queued through ``transport.write`` as usual, so
    the byte order never changes. TLS and other transports get their own ``write``.
    """
    if type(transport) is not tcp.Server or not all(
        hasattr(transport, name) for name in ("_tempDataLen", "dataBuffer", "offset")
    ):
        return cast(Callable[[bytes], object], transport.write)

    def write(data: bytes) -> None:
        if (
            transport._tempDataLen
            or transport.offset != len(transport.dataBuffer)
            or transport.disconnecting
            or not transport.connected
        ):
            transport.write(data)
            return
        sent = transport.writeSomeData(data)
        if not isinstance(sent, int) or sent <= 0:
            transport.write(data)
        elif sent < len(data):
            transport.write(data[sent:])

    return write


def _host_of(addr: IAddress) -> str:
    host = getattr(addr, "host", None)
    return host if isinstance(host, str) else str(addr)


class StratumProtocol(Protocol):
    """Hands bytes to its ``StratumSession``; nothing else."""

    def __init__(self, server: StratumServer, host: str) -> None:
        self.server = server
        self.host = host
        self.session: StratumSession | None = None

    def connectionMade(self) -> None:
        # zope interfaces do not type-check without mypy-zope.
        transport: Any = self.transport
        session = self.server.open_session(
            self.host, direct_write(transport), transport.loseConnection
        )
        if session is None:
            transport.abortConnection()
            return
        self.session = session

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        if session is not None:
            session.data_received(data)

    def connectionLost(self, reason: Failure = _CONNECTION_DONE) -> None:
        session = self.session
        if session is not None:
            self.session = None
            session.connection_lost()


class StratumFactory(Factory):
    """Builds a ``StratumProtocol`` per connection around one ``StratumServer``."""

    log = Logger()
    noisy = False

    def __init__(
        self,
        job_manager: JobManager,
        sink: ShareSink,
        settings: StratumSettings,
        clock: IReactorTime,
    ) -> None:
        self.server = StratumServer(job_manager, sink, settings, clock)

    def startFactory(self) -> None:
        self.server.start()

    def stopFactory(self) -> None:
        self.server.stop()

    def buildProtocol(self, addr: IAddress | None) -> StratumProtocol | None:
        host = _host_of(addr) if addr is not None else "unknown"
        reason = self.server.refusal(host)
        if reason is not None:
            self.server.stats.refused_connections += 1
            self.log.warn("refusing stratum connection: {reason}", reason=reason)
            return None
        return StratumProtocol(self.server, host)
