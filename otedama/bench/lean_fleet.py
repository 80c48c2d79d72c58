"""The flood bench's honest miners as a lean client process (standard-library asyncio).

``otedama bench flood`` measures the server's share latency for 10,000 honest miners
sending 5,000 shares a second. Written on Twisted with a Deferred and a JSON parse per
reply, that load generator needed about 190 µs of CPU per share: a whole core, so on a
2-core host it, not the server, set the latencies. This one keeps a miner to a protocol
object, a preformatted submit line and a reply read without a JSON parse, so the figure is
the server's. It shares no code with the server.

Protocol with the bench (JSON lines): it prints ``{"ready", "failed", "failures"}`` when
the fleet is connected; then answers ``round`` with ``{"latencies", "shares", "accepted",
"unanswered"}`` and ``status`` with ``{"connected"}``; it exits when stdin closes.

``python -m otedama.bench.lean_fleet PORT MINERS PER_IP SPREAD ADDRESS``
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

__all__ = [
    "CLIENT_CPUS",
    "Fleet",
    "commands",
    "connect_in_batches",
    "main",
    "parse_cpus",
    "pin_clients",
    "raise_fd_limit",
    "say",
]

_M = TypeVar("_M")

#: The CPUs the flood bench's client processes are pinned to (``--client-cpus``).
CLIENT_CPUS = "OTEDAMA_BENCH_CLIENT_CPUS"

#: Seconds a miner has to connect, be authorized and hold a job.
CONNECT_TIMEOUT = 60.0
#: Seconds after a round's last submit before its missing replies count as unanswered.
REPLY_TIMEOUT = 30.0
_ACCEPTED = b'"result":true'


def parse_cpus(text: str) -> set[int]:
    """``"0"``, ``"1,3"`` or ``"0-2"`` as a set of CPU numbers (ValueError when malformed)."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        low = int(first)
        high = int(last) if dash else low
        if low < 0 or high < low:
            raise ValueError(f"not a CPU list: {text!r}")
        cpus.update(range(low, high + 1))
    return cpus


def pin_clients() -> None:
    """Pin this client process to the CPUs the bench named in :data:`CLIENT_CPUS`."""
    cpus = os.environ.get(CLIENT_CPUS)
    if cpus:
        os.sched_setaffinity(0, parse_cpus(cpus))


def raise_fd_limit() -> int:
    """Raise the open-files soft limit to the hard limit; return the new limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def connect_in_batches(
    count: int, connect: Callable[[int], Awaitable[_M]], batch: int = 200
) -> tuple[list[_M], int, list[str]]:
    """``connect(i)`` for i in 0..count-1, ``batch`` at a time, each given
    ``CONNECT_TIMEOUT``: the miners that came up, how many did not, and the first few
    reasons why."""
    miners: list[_M] = []
    failed = 0
    failures: list[str] = []
    for first in range(0, count, batch):
        results = await asyncio.gather(
            *(
                asyncio.wait_for(connect(i), CONNECT_TIMEOUT)
                for i in range(first, min(count, first + batch))
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                failed += 1
                if len(failures) < 5:
                    failures.append(f"{type(result).__name__}: {result}")
            else:
                miners.append(result)
    return miners, failed, failures


def say(obj: Any) -> None:
    """One JSON line to the bench."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def commands() -> AsyncIterator[str]:
    """The bench's command lines on stdin, until it closes."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while line := await stdin.readline():
        yield line.strip().decode()


class Miner(asyncio.Protocol):
    """One honest miner: subscribe, authorize, keep the latest job, time its submits."""

    def __init__(self, fleet: Fleet, worker: str) -> None:
        self.fleet = fleet
        self.worker = worker
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.job: tuple[str, str] | None = None  # (job id, ntime)
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.authorized = False
        self.lost = False
        self.next_id = 10
        self.sent: dict[int, float] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(
            b'{"id":1,"method":"mining.subscribe","params":["lean-fleet/1"]}\n'
            + json.dumps(
                {"id": 2, "method": "mining.authorize", "params": [self.worker, "x"]}
            ).encode()
            + b"\n"
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if b"\n" not in buffer:
            self.buffer = buffer
            return
        *lines, self.buffer = buffer.split(b"\n")
        for line in lines:
            if b'"method"' in line:
                message = json.loads(line)
                if message.get("method") == "mining.notify":
                    params = message["params"]
                    self.job = (params[0], params[7])
            elif line.startswith(b'{"id":'):
                comma = line.find(b",", 6)
                try:
                    msg_id = int(line[6:comma])
                except ValueError:
                    continue
                sent = self.sent.pop(msg_id, None)
                if sent is not None:
                    self.fleet.answered(time.monotonic() - sent, _ACCEPTED in line)
                elif msg_id == 2:
                    self.authorized = _ACCEPTED in line
                    if not self.authorized and not self.ready.done():
                        self.ready.set_exception(
                            RuntimeError(f"{self.worker} not authorized: {line[:200]!r}")
                        )
            if self.authorized and self.job is not None and not self.ready.done():
                self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{self.worker}: closed by the server"))

    def submit(self, nonce: int) -> None:
        if self.lost or self.job is None or self.transport is None:
            return
        msg_id = self.next_id
        self.next_id += 1
        job_id, ntime = self.job
        self.sent[msg_id] = time.monotonic()
        self.transport.write(
            b'{"id":%d,"method":"mining.submit","params":["%s","%s","0000000000000000",'
            b'"%s","%08x"]}\n'
            % (msg_id, self.worker.encode(), job_id.encode(), ntime.encode(), nonce)
        )


class Fleet:
    """Honest miners on 127.0.1.x (``per_ip`` per address), mining in rounds: each
    submits one share at a random moment within ``spread`` seconds."""

    def __init__(self, port: int, count: int, per_ip: int, spread: float, address: str) -> None:
        self.port = port
        self.count = count
        self.per_ip = per_ip
        self.spread = spread
        self.address = address
        self.miners: list[Miner] = []
        self.failed = 0
        self.failures: list[str] = []
        self.shares = 0
        self.accepted = 0
        self.unanswered = 0
        self.nonce = 0
        self.latencies: list[float] = []
        self.waiting = 0
        self.round_done: asyncio.Future[None] | None = None

    async def _connect(self, index: int) -> Miner:
        loop = asyncio.get_running_loop()
        host = f"127.0.{1 + index // self.per_ip // 250}.{1 + index // self.per_ip % 250}"
        _, miner = await loop.create_connection(
            lambda: Miner(self, f"{self.address}.h{index}"),
            "127.0.0.1",
            self.port,
            local_addr=(host, 0),
        )
        await miner.ready
        return miner

    async def start(self) -> int:
        """Connect the fleet, 200 at a time; one that is not ready within
        ``CONNECT_TIMEOUT`` is counted in ``failed`` and the fleet goes on without it."""
        self.miners, self.failed, self.failures = await connect_in_batches(
            self.count, self._connect
        )
        return len(self.miners)

    def answered(self, latency: float, accepted: bool) -> None:
        self.latencies.append(latency)
        self.accepted += accepted
        self.waiting -= 1
        done = self.round_done
        if self.waiting <= 0 and done is not None and not done.done():
            done.set_result(None)

    async def round(self) -> list[float]:
        """One share from every miner at a random moment within ``spread``; their
        latencies in seconds (no reply within ``REPLY_TIMEOUT`` of the last submit:
        counted in ``unanswered``)."""
        loop = asyncio.get_running_loop()
        miners = [m for m in self.miners if not m.lost]
        for miner in miners:
            miner.sent.clear()
        dues = sorted((random.uniform(0, self.spread), i) for i in range(len(miners)))
        self.latencies = []
        self.waiting = len(miners)
        self.round_done = loop.create_future()
        start = time.monotonic()
        position = 0
        while position < len(dues):
            elapsed = time.monotonic() - start
            while position < len(dues) and dues[position][0] <= elapsed:
                self.nonce += 1
                miners[dues[position][1]].submit(self.nonce)
                self.shares += 1
                position += 1
            await asyncio.sleep(0.002)
        if self.waiting > 0:
            try:
                await asyncio.wait_for(asyncio.shield(self.round_done), REPLY_TIMEOUT)
            except TimeoutError:
                pass
        self.unanswered += max(0, self.waiting)
        self.waiting = 0
        latencies, self.latencies = self.latencies, []
        return latencies

    def connected(self) -> int:
        return sum(1 for miner in self.miners if not miner.lost)

    def close(self) -> None:
        for miner in self.miners:
            if miner.transport is not None:
                miner.transport.close()


async def _run(port: int, count: int, per_ip: int, spread: float, address: str) -> None:
    fleet = Fleet(port, count, per_ip, spread, address)
    ready = await fleet.start()
    # 10,000 miners in this process: keep its full collections off the latencies.
    gc.collect()
    gc.freeze()
    say({"ready": ready, "failed": fleet.failed, "failures": fleet.failures})
    async for command in commands():
        if command == "round":
            latencies = await fleet.round()
            say(
                {
                    "latencies": latencies,
                    "shares": fleet.shares,
                    "accepted": fleet.accepted,
                    "unanswered": fleet.unanswered,
                }
            )
        elif command == "status":
            say({"connected": fleet.connected()})
    fleet.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    raise_fd_limit()
    pin_clients()
    asyncio.run(_run(int(args[0]), int(args[1]), int(args[2]), float(args[3]), args[4]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
