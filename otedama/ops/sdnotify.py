"""systemd's sd_notify protocol: datagrams to ``$NOTIFY_SOCKET``."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from twisted.logger import Logger


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
