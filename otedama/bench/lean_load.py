"""The Stratum bench's share load as a lean client process (standard-library asyncio).

``otedama bench stratum`` measures accepted shares/s and submit->reply latency. Its
Twisted load generator, in the bench's own process, burnt about 85 % of a core at 11,000
shares/s: on a 2-core host it, not the server, set the figure. Here a miner is a protocol
object with a preformatted submit line, and a reply is recognised by its id without a JSON
parse (only notifies and the subscribe reply are parsed); the bench runs several of these
processes, pinned away from the server's CPU. It shares no code with the server.

Each process opens MINERS miners that subscribe, authorize as ``ADDRESS.l<index>m<i>``,
keep the latest job id and ntime, and submit shares (the bench server's difficulty is
2**-33, so every nonce is a share). (extranonce2, nonce) come from one counter per process
with the process index in extranonce2's top byte: no two submits are duplicates.

* closed loop (``--window W``): each miner keeps W submits in flight, sending the next
  when a reply comes;
* open loop (``--rate R``): R shares/s for this process, share j due at j/R and sent by
  miner j mod MINERS, whether or not its earlier ones were answered (each miner on its own
  schedule, the miners' schedules staggered evenly).

Protocol with the bench, JSON lines, one answer per command: when the miners are ready it
prints ``{"ready", "failed", "failures", "cpus"}``; ``load`` starts submitting; ``measure``
starts the measured interval; ``stop`` ends it and stops submitting, waits for the replies
still in flight (at most ``REPLY_TIMEOUT``) and answers with the interval's figures
(``accepted``, ``rejected``, ``reasons``, ``sent``, ``latency_us`` -- a histogram of
whole-microsecond submit->reply latencies, ``[[us, count], ...]``, exact enough for
nearest-rank percentiles --, ``seconds``, ``cpu_seconds``, ``behind_ms``: how far the open
loop fell behind its schedule at worst) and the totals since ``load`` (``sent_total``,
``accepted_total``, ``rejected_total``, ``unanswered``, ``lost``). It exits when stdin
closes.

``python -m otedama.bench.lean_load --port P --miners N --index I --address A
[--host H] [--window W | --rate R]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from collections import Counter
from typing import Any

from otedama.bench.lean_fleet import (
    commands,
    connect_in_batches,
    pin_clients,
    raise_fd_limit,
    say,
)

__all__ = ["Load", "Miner", "latency_histogram", "main"]

#: Seconds ``stop`` waits for the replies still in flight before counting them unanswered.
REPLY_TIMEOUT = 10.0
#: The tail of an accepted submit's reply, as the server writes it (``encode_result_true``).
ACCEPTED_TAIL = b',"result":true,"error":null}'
_NOTIFY = b'"mining.notify"'


def latency_histogram(latencies: list[float]) -> list[list[int]]:
    """Latencies in seconds as ``[[microseconds, count], ...]``, ascending."""
    counts = Counter(int(latency * 1e6 + 0.5) for latency in latencies)
    return [[us, counts[us]] for us in sorted(counts)]


class Miner(asyncio.Protocol):
    """One bench miner: subscribe, authorize, keep the latest job, submit and time shares."""

    def __init__(self, load: Load, worker: str) -> None:
        self.load = load
        self.worker = worker.encode()
        self.transport: Any = None
        self.buffer = b""
        self.job_id = b""
        self.ntime = b""
        self.en2_width = 0
        self.en2_tag = 0
        self.authorized = False
        self.lost = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.next_id = 10
        self.sent: dict[int, float] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(
            b'{"id":1,"method":"mining.subscribe","params":["lean-load/1"]}\n'
            + json.dumps(
                {"id": 2, "method": "mining.authorize", "params": [self.worker.decode(), "x"]}
            ).encode()
            + b"\n"
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.load.lost += 1
        self._fail(ConnectionError(f"{self.worker.decode()}: closed by the server"))

    def _fail(self, error: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(error)

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        *lines, self.buffer = data.split(b"\n")
        now = time.monotonic()
        for line in lines:
            if line.startswith(b'{"id":') and line[6:7].isdigit():
                try:
                    msg_id = int(line[6 : line.index(b",", 6)])
                except ValueError:
                    continue
                sent = self.sent.pop(msg_id, None)
                if sent is not None:
                    self.load.answered(self, now - sent, line)
                    continue
                if msg_id == 1:
                    self._subscribed(line)
                elif msg_id == 2:
                    self.authorized = line.endswith(ACCEPTED_TAIL)
                    if not self.authorized:
                        self._fail(RuntimeError(f"authorize refused: {line[:200]!r}"))
            elif _NOTIFY in line:
                params = json.loads(line)["params"]
                self.job_id = params[0].encode()
                self.ntime = params[7].encode()
            else:
                continue
            if self.authorized and self.job_id and self.en2_width and not self.ready.done():
                self.ready.set_result(None)

    def _subscribed(self, line: bytes) -> None:
        message = json.loads(line)
        result = message.get("result")
        if not isinstance(result, list) or len(result) < 3:
            self._fail(RuntimeError(f"subscribe refused: {line[:200]!r}"))
            return
        size = int(result[2])
        self.en2_width = 2 * size
        # The process index in extranonce2's top byte keeps the processes' shares apart.
        self.en2_tag = self.load.index << (8 * size - 8)

    def send(self, n: int) -> None:
        """Submit share ``n`` of this process: extranonce2 from ``n``'s high bits, the
        nonce from its low 32."""
        if self.lost:
            return
        msg_id = self.next_id
        self.next_id = msg_id + 1
        self.sent[msg_id] = time.monotonic()
        self.transport.write(
            b'{"id":%d,"method":"mining.submit","params":["%s","%s","%0*x","%s","%08x"]}\n'
            % (
                msg_id,
                self.worker,
                self.job_id,
                self.en2_width,
                self.en2_tag | (n >> 32),
                self.ntime,
                n & 0xFFFFFFFF,
            )
        )


class Load:
    """One process's miners and their counters (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        count: int,
        index: int,
        address: str,
        window: int = 1,
        rate: float = 0.0,
    ) -> None:
        self.host = host
        self.port = port
        self.count = count
        self.index = index
        self.address = address
        self.window = window
        self.rate = rate
        self.miners: list[Miner] = []
        self.failed = 0
        self.failures: list[str] = []
        self.lost = 0
        self.loading = False
        self.measuring = False
        self.counter = 0
        self.sent_total = 0
        self.accepted_total = 0
        self.rejected_total = 0
        self._reset_interval()
        self._ticker: asyncio.Task[None] | None = None

    def _reset_interval(self) -> None:
        self.sent = 0
        self.accepted = 0
        self.rejected = 0
        self.reasons: dict[str, int] = {}
        self.latencies: list[float] = []
        self.behind = 0.0
        self.started = time.monotonic()
        self.cpu0 = _cpu_seconds()

    async def _connect(self, i: int) -> Miner:
        loop = asyncio.get_running_loop()
        worker = f"{self.address}.l{self.index}m{i}"
        _, miner = await loop.create_connection(lambda: Miner(self, worker), self.host, self.port)
        await miner.ready
        return miner

    async def start(self) -> int:
        """Connect the miners, 200 at a time; one not ready within a minute is counted in
        ``failed``."""
        self.miners, self.failed, self.failures = await connect_in_batches(
            self.count, self._connect
        )
        return len(self.miners)

    def submit(self, miner: Miner) -> None:
        n = self.counter
        self.counter = n + 1
        self.sent_total += 1
        if self.measuring:
            self.sent += 1
        miner.send(n)

    def answered(self, miner: Miner, latency: float, line: bytes) -> None:
        accepted = line.endswith(ACCEPTED_TAIL)
        if accepted:
            self.accepted_total += 1
        else:
            self.rejected_total += 1
        if self.measuring:
            self.latencies.append(latency)
            if accepted:
                self.accepted += 1
            else:
                self.rejected += 1
                reason = _reason(line)
                self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if self.loading and not self.rate:
            self.submit(miner)

    def load(self) -> None:
        """Start submitting: ``window`` shares per miner, or the open loop's schedule."""
        self.loading = True
        if self.rate:
            self._ticker = asyncio.get_running_loop().create_task(self._open_loop())
            return
        for _ in range(self.window):
            for miner in self.miners:
                self.submit(miner)

    async def _open_loop(self) -> None:
        miners = self.miners
        count = len(miners)
        rate = self.rate
        start = time.monotonic()
        j = 0
        while self.loading and count:
            now = time.monotonic()
            due = int((now - start) * rate) + 1
            if due > j and self.measuring:
                self.behind = max(self.behind, now - (start + j / rate))
            while j < due:
                self.submit(miners[j % count])
                j += 1
            await asyncio.sleep(max(0.001, start + j / rate - time.monotonic()))

    def measure(self) -> None:
        self._reset_interval()
        self.measuring = True

    async def stop(self) -> dict[str, Any]:
        """End the interval and the load; its figures once the replies in flight landed."""
        self.measuring = False
        seconds = time.monotonic() - self.started
        cpu_seconds = _cpu_seconds() - self.cpu0
        self.loading = False
        if self._ticker is not None:
            await self._ticker
            self._ticker = None
        figures: dict[str, Any] = {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "reasons": self.reasons,
            "sent": self.sent,
            "latency_us": latency_histogram(self.latencies),
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "behind_ms": self.behind * 1000,
        }
        deadline = time.monotonic() + REPLY_TIMEOUT
        while self._in_flight() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        figures.update(
            sent_total=self.sent_total,
            accepted_total=self.accepted_total,
            rejected_total=self.rejected_total,
            unanswered=self._in_flight(),
            lost=self.lost,
        )
        return figures

    def _in_flight(self) -> int:
        return sum(len(miner.sent) for miner in self.miners)

    def close(self) -> None:
        for miner in self.miners:
            if miner.transport is not None:
                miner.transport.close()


def _reason(line: bytes) -> str:
    try:
        return repr(json.loads(line).get("error"))
    except ValueError:
        return repr(line[:100])


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def _run(args: argparse.Namespace) -> None:
    load = Load(args.host, args.port, args.miners, args.index, args.address, args.window, args.rate)
    ready = await load.start()
    # Keep this process's full collections off the latencies.
    gc.collect()
    gc.freeze()
    say(
        {
            "ready": ready,
            "failed": load.failed,
            "failures": load.failures,
            "cpus": sorted(os.sched_getaffinity(0)),
        }
    )
    async for command in commands():
        if command == "load":
            gc.disable()
            load.load()
            say({"loading": True})
        elif command == "measure":
            load.measure()
            say({"measuring": True})
        elif command == "stop":
            figures = await load.stop()
            gc.enable()
            say(figures)
        elif command:
            say({"error": f"unknown command {command!r}"})
    load.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m otedama.bench.lean_load", description="lean Stratum share load"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--miners", type=int, required=True)
    parser.add_argument(
        "--index", type=int, required=True, help="this process's number, 0-255 (nonce space)"
    )
    parser.add_argument("--address", required=True, help="the address miners authorize as")
    parser.add_argument("--window", type=int, default=1, help="closed loop: in flight per miner")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: shares/s (0: closed)")
    args = parser.parse_args(argv)
    if not 0 <= args.index < 256 or args.miners < 1 or args.window < 1 or args.rate < 0:
        parser.error("--index must be 0-255, --miners and --window >= 1, --rate >= 0")
    raise_fd_limit()
    pin_clients()
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
