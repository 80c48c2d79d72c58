"""Run the embedded devnet in its own process for the chain-outage drill.

Usage: ``outage_devnet.py DATA_DIR PORT [DIFFICULTY]`` (a fraction, e.g. ``1/10000``).
Prints one JSON line ``{"url": ...}`` once listening on 127.0.0.1:PORT, then serves until killed. The drill kills it and starts it
again on the same port and data directory, as an operator restarting bitcoind would.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from typing import Any

from twisted.internet import asyncioreactor

#: Easy enough that a block is ground in a moment.
DIFFICULTY = Fraction(1, 10**9)


def main(data_dir: str, port: int, difficulty: Fraction = DIFFICULTY) -> None:
    asyncioreactor.install()
    from twisted.internet import reactor

    from otedama.devnet.service import DevnetHandle, start_devnet

    def ready(handle: DevnetHandle) -> None:
        sys.stdout.write(json.dumps({"url": handle.url}) + "\n")
        sys.stdout.flush()

    def failed(failure: Any) -> None:
        sys.stderr.write(f"devnet failed to start: {failure.getErrorMessage()}\n")
        reactor.stop()  # type: ignore[attr-defined]

    d = start_devnet(reactor, f"tcp:{port}:interface=127.0.0.1", difficulty, data_dir)
    d.addCallbacks(ready, failed)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *(Fraction(arg) for arg in sys.argv[3:4]))
