"""The CPU miner service against a small pool over real TCP, with a real worker process."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver

from otedama.chain.hashing import sha256d
from otedama.chain.target import difficulty_to_target
from otedama.miner.service import CpuMinerService, default_threads, endpoint_from_url
from otedama.miner.work import MinerJob, Work, WorkError, header_prefix
from tests.conftest import notify_params

from .test_work import SUMMARY

POOL_MASK = 0x1FFFE000
DIFFICULTY = 2**-20
JOB = SUMMARY["jobs"]["6b05021400000000"]


class _Pool(LineOnlyReceiver):
    """A strict little pool: it rebuilds each submitted header and checks its hash."""

    delimiter = b"\n"

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def _send(self, obj: dict[str, Any]) -> None:
        self.sendLine(json.dumps(obj).encode())

    def lineReceived(self, line: bytes) -> None:
        msg = json.loads(line)
        method, params, msg_id = msg["method"], msg["params"], msg["id"]
        if method == "mining.configure":
            mask = int(params[1]["version-rolling.mask"], 16) & POOL_MASK
            self._send(
                {
                    "id": msg_id,
                    "result": {"version-rolling": True, "version-rolling.mask": f"{mask:08x}"},
                    "error": None,
                }
            )
        elif method == "mining.subscribe":
            self._send(
                {"id": msg_id, "result": [[["mining.notify", "1"]], "deadbeef", 4], "error": None}
            )
        elif method == "mining.authorize":
            self.state["user"] = params[0]
            self._send({"id": msg_id, "result": True, "error": None})
            self._send({"id": None, "method": "mining.set_difficulty", "params": [DIFFICULTY]})
            self._send({"id": None, "method": "mining.notify", "params": notify_params(JOB)})
        elif method == "mining.submit":
            self._send({"id": msg_id, "result": self._check(params), "error": None})

    def _check(self, params: list[str]) -> bool:
        job = MinerJob.from_notify(notify_params(JOB))
        bits = int(params[5], 16) if len(params) > 5 else 0
        if bits & ~POOL_MASK:
            return False
        work = Work(1, job, bytes.fromhex("deadbeef"), 4, 0, 1 << 32, POOL_MASK, 1)
        version = (job.version & ~POOL_MASK) | bits
        header = header_prefix(work, int(params[2], 16), version) + int(params[4], 16).to_bytes(
            4, "little"
        )
        key = header
        ok = key not in self.state["seen"] and int.from_bytes(
            sha256d(header), "little"
        ) <= difficulty_to_target(DIFFICULTY)
        self.state["seen"].add(key)
        self.state["valid" if ok else "invalid"] += 1
        if bits:
            self.state["rolled"] += 1
        if (
            ok
            and self.state["valid"] >= 5
            and self.state["rolled"]
            and not self.state["done"].called
        ):
            self.state["done"].callback(None)
        return ok


def _state() -> dict[str, Any]:
    done: Deferred[None] = Deferred()
    return {
        "seen": set(),
        "valid": 0,
        "invalid": 0,
        "rolled": 0,
        "done": done,
        "connections": set(),
    }


async def _mine_until_done(
    state: dict[str, Any], pool: type[_Pool], user: str, **miner_options: Any
) -> CpuMinerService:
    """Run a miner against ``pool`` on 127.0.0.1 until the pool fires ``state["done"]``."""
    from twisted.internet import reactor

    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(lambda: pool(state))
    )
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    miner = CpuMinerService(endpoint, user, 1, reactor, **miner_options)
    miner.startService()
    try:
        await state["done"]
    finally:
        await miner.stopService()
        await port.stopListening()
    return miner


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_the_miner_submits_valid_version_rolled_shares_to_a_pool() -> None:
    state = _state()
    # A small nonce range makes the worker roll version bits within seconds.
    miner = await _mine_until_done(state, _Pool, "bcrt1qtest.rig1", nonce_limit=4096)
    assert state["user"] == "bcrt1qtest.rig1"
    assert state["invalid"] == 0
    # Replies still in flight when the pool had seen enough are not counted yet.
    assert 1 <= miner.stats.accepted <= state["valid"] and miner.stats.rejected == 0
    assert miner.stats.hashes > 0
    assert all(not w.transport or w.ended.called for w in miner.pool.workers)


def test_pool_urls_become_endpoint_strings() -> None:
    assert endpoint_from_url("stratum+tcp://pool.example:3333") == "tcp:host=pool.example:port=3333"
    assert endpoint_from_url("stratum+ssl://pool.example:443") == "tls:pool.example:443"
    assert endpoint_from_url("stratum+tcp://[::1]:3333") == r"tcp:host=\:\:1:port=3333"
    assert endpoint_from_url("tcp:host=a:port=1") == "tcp:host=a:port=1"
    for bad in (
        "pool.example:3333",
        "stratum+tcp://pool.example",
        "http://x:1",
        "stratum+tcp://h:99999",
    ):
        with pytest.raises(WorkError):
            endpoint_from_url(bad)


def test_zero_threads_means_one_less_than_the_cores() -> None:
    assert default_threads(0, cpus=8) == 7
    assert default_threads(0, cpus=1) == 1
    assert default_threads(3, cpus=8) == 3
    with pytest.raises(WorkError, match="threads"):
        default_threads(-1)


class _DroppingPool(_Pool):
    """Accepts one share per connection, then hangs up."""

    def _check(self, params: list[str]) -> bool:
        ok = super()._check(params)
        self.state["connections"].add(id(self))
        if len(self.state["connections"]) >= 2 and not self.state["done"].called:
            self.state["done"].callback(None)
        self.transport.loseConnection()  # type: ignore[union-attr]
        return ok


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_the_miner_reconnects_and_mines_again_after_the_pool_hangs_up() -> None:
    state = _state()
    await _mine_until_done(state, _DroppingPool, "bcrt1qtest.rig2")
    assert len(state["connections"]) >= 2
    assert state["invalid"] == 0
