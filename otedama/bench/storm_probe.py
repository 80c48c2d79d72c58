"""One client process of a reconnect storm: connect miners with a bounded number in flight.

``otedama bench stratum --storm N --storm-clients K`` starts K of these, as the
independent probe the pool was compared with (two client processes, 200 connections in
flight each, subscribe then authorize): each opens its part of the N miners, at most
``--inflight`` of them between "connecting" and "has its first job", so the figure is the
server's and not one client's socket storm. The process prints one JSON line when it is
ready, waits for ``go`` on stdin, prints one JSON line with its figures when its last miner
has its first job, and keeps every connection open until stdin closes.

Standard library only (asyncio streams): the probe must not share code paths with the
server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time

__all__ = ["main"]


async def _miner(
    host: str,
    port: int,
    user: str,
    index: int,
    held: list[asyncio.StreamWriter],
    drains: list[asyncio.Task[None]],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    held.append(writer)
    writer.write(b'{"id":1,"method":"mining.subscribe","params":["storm-probe/1"]}\n')
    authorized = notified = False
    while not (authorized and notified):
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed by the server before the first job")
        message = json.loads(line)
        method = message.get("method")
        if method == "mining.notify":
            notified = True
        elif message.get("id") == 1:
            if message.get("error"):
                raise ConnectionError(f"subscribe refused: {message['error']}")
            request = {
                "id": 2,
                "method": "mining.authorize",
                "params": [f"{user}.s{index}", "x"],
            }
            writer.write(json.dumps(request).encode() + b"\n")
        elif message.get("id") == 2:
            if message.get("result") is not True:
                raise ConnectionError(f"authorize refused: {message.get('error')}")
            authorized = True
    # Keep reading (and dropping) what the server sends, as a miner would (the task is
    # kept: the loop holds only a weak reference to it).
    drains.append(asyncio.get_running_loop().create_task(_drain(reader)))


async def _drain(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass


async def _run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    if (await stdin.readline()).strip() != b"go":
        return
    start = time.monotonic()
    cpu0 = time.process_time()
    gate = asyncio.Semaphore(args.inflight)
    held: list[asyncio.StreamWriter] = []
    drains: list[asyncio.Task[None]] = []
    failures: list[str] = []

    async def one(index: int) -> None:
        async with gate:
            try:
                await asyncio.wait_for(
                    _miner(args.host, args.port, args.user, index, held, drains), args.timeout
                )
            except (TimeoutError, OSError, ValueError) as e:
                failures.append(f"{type(e).__name__}: {e}")

    await asyncio.gather(*(one(args.first + i) for i in range(args.count)))
    print(
        json.dumps(
            {
                "seconds": time.monotonic() - start,
                "cpu_seconds": time.process_time() - cpu0,
                "ready": args.count - len(failures),
                "failures": len(failures),
                "first_failure": failures[0] if failures else None,
            }
        ),
        flush=True,
    )
    await stdin.read()  # hold the connections until the bench closes stdin
    for writer in held:
        writer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="index of the first worker name")
    parser.add_argument("--inflight", type=int, default=200)
    parser.add_argument("--user", required=True, help="address used as the worker's user")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-miner limit, seconds")
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
