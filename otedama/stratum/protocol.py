"""The thin Twisted edge of the Stratum server: a Protocol that feeds a session, a Factory.

``tap.py`` listens with ``StreamServerEndpointService(serverFromString(reactor, listen),
StratumFactory(job_manager, sink, settings, reactor))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet import tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from otedama.stratum.jobs import JobManager
from otedama.stratum.server import StratumServer
from otedama.stratum.session import StratumSession
from otedama.stratum.settings import StratumSettings
from otedama.stratum.share import ShareSink

__all__ = ["OutputGuard", "StratumFactory", "StratumProtocol", "direct_write"]


_CONNECTION_DONE = Failure(ConnectionDone())


def direct_write(transport: Any, guard: OutputGuard | None = None) -> Callable[[bytes], object]:
    """``transport.write``, but bytes go to a plain TCP socket at once when nothing is queued.

    Twisted queues every write until the reactor reports the socket writable: two
    ``epoll_ctl`` calls and a loop turn per connection, so one notify fanned out to 15,000
    miners takes seconds. When Twisted holds nothing for the socket, this sends now;
    whatever the kernel does not take is queued through ``transport.write`` as usual, so
    the byte order never changes. TLS and other transports get their own ``write``.

    ``guard`` is told of every byte queued in the transport (sent bytes cannot count
    towards its bound, and a paused transport always has bytes queued).
    """
    if type(transport) is not tcp.Server or not all(
        hasattr(transport, name)
        for name in ("_tempDataLen", "dataBuffer", "offset", "socket", "SEND_LIMIT")
    ):
        plain = cast(Callable[[bytes], object], transport.write)
        if guard is None:
            return plain

        def guarded(data: bytes) -> None:
            plain(data)
            if guard.paused:
                guard.wrote(len(data))

        return guarded

    send = transport.socket.send
    limit = transport.SEND_LIMIT

    def write(data: bytes) -> None:
        if (
            transport._tempDataLen
            or transport.offset != len(transport.dataBuffer)
            or transport.disconnecting
            or not transport.connected
            or len(data) > limit
        ):
            transport.write(data)
        else:
            # The socket's own send (Twisted's writeSomeData adds a memoryview, a slice
            # and a retry frame per call). Whatever it does not take, or any error, goes
            # through transport.write: the reactor then sends it or finds the error.
            try:
                sent = send(data)
            except OSError:
                sent = 0
            if sent <= 0:
                transport.write(data)
            elif sent < len(data):
                transport.write(data[sent:])
            return
        if guard is not None and guard.paused:
            guard.wrote(len(data))

    return write


def _host_of(addr: IAddress) -> str:
    host = getattr(addr, "host", None)
    return host if isinstance(host, str) else str(addr)


@implementer(IPushProducer)
class OutputGuard:
    """Back-pressure for one connection, registered with its transport as a producer.

    The transport pauses us when its send buffer is full (Twisted's ``bufferSize``): we
    stop reading from the peer, so a miner that does not read cannot make us answer more.
    Bytes written while paused are counted; past ``limit``, or when the transport stays
    full for ``stall_timeout`` seconds, ``on_overflow`` drops the connection. When the
    buffer drains we are resumed and read again.
    """

    __slots__ = (
        "_stall_call",
        "clock",
        "limit",
        "on_overflow",
        "paused",
        "pending",
        "stall_timeout",
        "transport",
    )

    def __init__(
        self,
        transport: Any,
        limit: int,
        on_overflow: Callable[[], object],
        clock: Any,
        stall_timeout: float,
    ) -> None:
        self.transport = transport
        self.limit = limit
        self.on_overflow = on_overflow
        self.clock = clock
        self.stall_timeout = stall_timeout
        self.paused = False
        self.pending = 0
        self._stall_call: Any = None

    def pauseProducing(self) -> None:
        self.paused = True
        self.pending = 0
        self.transport.pauseProducing()
        if self._stall_call is None:
            self._stall_call = self.clock.callLater(self.stall_timeout, self._overflow)

    def resumeProducing(self) -> None:
        self._stopped()
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self._stopped()

    def _stopped(self) -> None:
        self.paused = False
        self.pending = 0
        call, self._stall_call = self._stall_call, None
        if call is not None and call.active():
            call.cancel()

    def _overflow(self) -> None:
        self._stall_call = None
        self._stopped()  # report once
        self.on_overflow()

    def wrote(self, size: int) -> None:
        """``size`` bytes were handed to the transport."""
        if self.paused:
            self.pending += size
            if self.pending > self.limit:
                self._overflow()


class StratumProtocol(Protocol):
    """Hands bytes to its ``StratumSession`` and enforces the connection's output bound
    and close-then-abort; nothing else."""

    def __init__(self, server: StratumServer, host: str) -> None:
        self.server = server
        self.host = host
        self.session: StratumSession | None = None
        self.guard: OutputGuard | None = None
        self._abort_call: Any = None

    def connectionMade(self) -> None:
        # zope interfaces do not type-check without mypy-zope.
        transport: Any = self.transport
        server = self.server
        settings = server.settings
        guard = OutputGuard(
            transport,
            settings.max_unsent_bytes,
            self._overflow,
            server.clock,
            settings.stall_timeout,
        )
        session = server.open_session(self.host, direct_write(transport, guard), self.close)
        if session is None:
            transport.abortConnection()
            return
        self.session = session
        self.guard = guard
        transport.registerProducer(guard, True)

    def _overflow(self) -> None:
        session = self.session
        self.server.stats.output_overflows += 1
        if session is not None:
            settings = self.server.settings
            session.close(
                f"the miner does not read its replies (over {settings.max_unsent_bytes} "
                f"bytes or {settings.stall_timeout:g} s unsent)"
            )

    def close(self) -> None:
        """Close after flushing; abort if the peer has not taken the rest within the grace."""
        transport: Any = self.transport
        if transport is None or self._abort_call is not None:
            return
        guard = self.guard
        if guard is not None:
            # A registered producer would keep a flushed connection open (Twisted
            # resumes it instead of closing).
            self.guard = None
            guard.stopProducing()
            transport.unregisterProducer()
        transport.loseConnection()
        self._abort_call = self.server.clock.callLater(
            self.server.settings.close_grace, self._abort
        )

    def _abort(self) -> None:
        self._abort_call = None
        self.server.stats.aborted_connections += 1
        transport: Any = self.transport
        transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        if session is not None:
            session.data_received(data)

    def connectionLost(self, reason: Failure = _CONNECTION_DONE) -> None:
        call = self._abort_call
        if call is not None:
            self._abort_call = None
            if call.active():
                call.cancel()
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
            self.server.note_refused(host, reason)
            return None
        return StratumProtocol(self.server, host)
