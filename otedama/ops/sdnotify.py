"""systemd's sd_notify protocol: datagrams to ``$NOTIFY_SOCKET``."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

T = TypeVar("T")

#: While a start step waits, systemd's start timeout is pushed this far ahead…
EXTEND_BY = 90.0
#: …this often (well inside EXTEND_BY, so one late tick does not let it expire).
EXTEND_EVERY = 30.0


class SystemdNotifier:
    """Sends READY=1 / RELOADING=1 / STOPPING=1 / STATUS=… when run under systemd.

    Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing.
    """

    log = Logger()

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address or None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *states: str) -> bool:
        """Send ``states`` (e.g. ``"READY=1"``); return whether a datagram went out."""
        if self._address is None:
            return False
        payload = "\n".join(states).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(payload)
        except OSError as error:
            self.log.warn(
                "cannot notify systemd at {address}: {error}", address=self._address, error=error
            )
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")


class StartKeepalive:
    """Keeps systemd waiting, and tells it why, while a slow start step runs.

    The node sends ``READY=1`` only when bitcoind is out of initial block download, which
    on a fresh mainnet daemon takes days: longer than any ``TimeoutStartSec``. Every
    ``EXTEND_EVERY`` seconds this sends ``EXTEND_TIMEOUT_USEC`` (pushing the timeout
    ``EXTEND_BY`` ahead) and a ``STATUS=`` line that ``systemctl status`` shows. The line
    comes from ``probe()`` (say, the sync progress); a failing probe's error is appended
    to ``status``.
    """

    log = Logger()

    def __init__(
        self,
        notifier: SystemdNotifier,
        clock: IReactorTime,
        probe: Callable[[], Awaitable[str]],
        *,
        status: str = "starting",
        every: float = EXTEND_EVERY,
        extend_by: float = EXTEND_BY,
    ) -> None:
        self.notifier = notifier
        self.status = status
        self._waiting_for = status
        self._probe = probe
        self._extend_usec = int(extend_by * 1_000_000)
        self._every = every
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock
        self._probing = False

    def start(self) -> None:
        if self.notifier.enabled:
            self._loop.start(self._every, now=True).addErrback(
                lambda failure: self.log.failure("start keepalive stopped", failure)
            )

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _tick(self) -> None:
        self.notifier.notify(f"EXTEND_TIMEOUT_USEC={self._extend_usec}", f"STATUS={self.status}")
        if not self._probing:
            self._probing = True
            ensureDeferred(self._refresh())

    async def _refresh(self) -> None:
        try:
            status = await self._probe()
        except Exception as error:
            status = f"{self._waiting_for}: {error}"
        finally:
            self._probing = False
        if status != self.status and self._loop.running:
            self.status = status
            self.notifier.notify(f"STATUS={status}")


def keep_start_alive(
    waiting: Deferred[T],
    notifier: SystemdNotifier,
    clock: IReactorTime,
    probe: Callable[[], Awaitable[str]],
    status: str,
) -> Deferred[T]:
    """``waiting``, with a :class:`StartKeepalive` running until it fires."""
    if waiting.called:
        return waiting
    keepalive = StartKeepalive(notifier, clock, probe, status=status)
    keepalive.start()

    def done(result: Any) -> Any:
        keepalive.stop()
        return result

    return waiting.addBoth(done)
