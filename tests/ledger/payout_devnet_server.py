"""Run the embedded devnet in its own process for the payout crash tests.

Usage: ``payout_devnet_server.py DATA_DIR``. Prints one JSON line ``{"url": ...}`` once
listening on 127.0.0.1 (a free port), then serves until SIGTERM. Being a separate
process, it outlives the payout process the tests kill, like a real bitcoind would.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from typing import Any

from twisted.internet import asyncioreactor

#: Easy enough that ``generatetoaddress 101`` takes well under a second.
DIFFICULTY = Fraction(1, 10**9)


def main(data_dir: str) -> None:
    asyncioreactor.install()
    from twisted.internet import reactor

    from otedama.devnet.service import DevnetHandle, start_devnet

    def ready(handle: DevnetHandle) -> None:
        sys.stdout.write(json.dumps({"url": handle.url}) + "\n")
        sys.stdout.flush()
        reactor.addSystemEventTrigger("before", "shutdown", handle.stop)  # type: ignore[attr-defined]

    def failed(failure: Any) -> None:
        sys.stderr.write(f"devnet failed to start: {failure.getErrorMessage()}\n")
        reactor.stop()  # type: ignore[attr-defined]

    d = start_devnet(reactor, "tcp:0:interface=127.0.0.1", DIFFICULTY, data_dir)
    d.addCallbacks(ready, failed)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1])
