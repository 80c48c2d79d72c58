"""systemd start timeout: the node keeps it alive, with a STATUS=, while bitcoind syncs."""

from __future__ import annotations

import socket
from decimal import Decimal
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from otedama.node.bitcoind import BlockchainInfo
from otedama.ops.sdnotify import EXTEND_BY, EXTEND_EVERY, SystemdNotifier
from otedama.tap import ChainService
from tests.house.test_lifecycle import notify_socket

__all__ = ["notify_socket"]  # the fixture: a bound AF_UNIX datagram socket and its path


def syncing(blocks: int, progress: str | None = "0.125") -> BlockchainInfo:
    return BlockchainInfo(
        chain="main",
        blocks=blocks,
        headers=870_000,
        best_block_hash="00" * 32,
        initial_block_download=True,
        verification_progress=None if progress is None else Decimal(progress),
    )


class SyncingDaemon:
    """A chain client whose readiness waits on ``ready``; it reports ``info``."""

    def __init__(self) -> None:
        self.ready: Deferred[None] = Deferred()
        self.info: BlockchainInfo | Exception = syncing(100_000)
        self.probes = 0

    async def wait_until_ready(self, network: str) -> str:
        await self.ready
        return network

    async def get_blockchain_info(self) -> BlockchainInfo:
        self.probes += 1
        if isinstance(self.info, Exception):
            raise self.info
        return self.info


def datagrams(sock: socket.socket) -> list[str]:
    """Every notify datagram sent so far (unix datagrams arrive as they are sent)."""
    sock.setblocking(False)
    seen = []
    while True:
        try:
            seen.append(sock.recv(4096).decode())
        except BlockingIOError:
            return seen


def test_waiting_for_initial_block_download_extends_the_start_timeout_with_a_status(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, address = notify_socket
    clock, daemon = Clock(), SyncingDaemon()
    chain = ChainService(daemon, "mainnet", SystemdNotifier({"NOTIFY_SOCKET": address}), clock)

    ready = chain.whenReady()
    extend = f"EXTEND_TIMEOUT_USEC={int(EXTEND_BY * 1_000_000)}"
    assert datagrams(sock) == [
        f"{extend}\nSTATUS=waiting for the chain backend",
        "STATUS=waiting for bitcoind's initial block download: block 100000 of 870000, "
        "12.5% verified",
    ]

    daemon.info = syncing(200_000, None)
    clock.advance(EXTEND_EVERY)
    assert datagrams(sock) == [
        f"{extend}\nSTATUS=waiting for bitcoind's initial block download: block 100000 of "
        "870000, 12.5% verified",
        "STATUS=waiting for bitcoind's initial block download: block 200000 of 870000",
    ]

    daemon.info = ConnectionRefusedError("connection refused")
    clock.advance(EXTEND_EVERY)
    assert datagrams(sock)[-1] == "STATUS=waiting for the chain backend: connection refused"

    results: list[Any] = []
    ready.addCallback(results.append)
    daemon.ready.callback(None)
    assert results == ["mainnet"]
    clock.advance(10 * EXTEND_EVERY)
    assert datagrams(sock) == []  # READY=1 comes from the node once every part is up
    assert daemon.probes == 3


def test_a_daemon_that_is_ready_at_once_sends_nothing(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, address = notify_socket
    daemon = SyncingDaemon()
    daemon.ready.callback(None)
    chain = ChainService(daemon, "mainnet", SystemdNotifier({"NOTIFY_SOCKET": address}), Clock())
    results: list[Any] = []
    chain.whenReady().addCallback(results.append)
    assert results == ["mainnet"]
    assert datagrams(sock) == []


def test_outside_systemd_nothing_is_sent_and_the_daemon_is_not_probed() -> None:
    clock, daemon = Clock(), SyncingDaemon()
    chain = ChainService(daemon, "mainnet", SystemdNotifier({}), clock)
    results: list[Any] = []
    chain.whenReady().addCallback(results.append)
    clock.advance(5 * EXTEND_EVERY)
    assert daemon.probes == 0 and not clock.getDelayedCalls()
    daemon.ready.callback(None)
    assert results == ["mainnet"]
