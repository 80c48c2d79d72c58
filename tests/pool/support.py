"""Helpers shared by the pool tests: addresses, a scripted block submitter, candidate shares."""

from __future__ import annotations

from fractions import Fraction

from twisted.internet.defer import Deferred

from otedama.chain.coinbase import build_coinbase
from otedama.chain.params import get_network
from otedama.chain.serialize import TxOut
from otedama.pool.ports import SubmitResult
from otedama.stratum.share import Share

NETWORK = get_network("devnet")
POOL = "bcrt1qqxlgwddcf0uhsmr9uqesvn3efp00p99t0mcyjs"
MINER = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


class ScriptedSubmitter:
    """A BlockSubmitter whose answer is a SubmitResult, an exception, or a Deferred."""

    def __init__(self, result: SubmitResult | Exception | Deferred[SubmitResult]) -> None:
        self.result = result
        self.blocks: list[bytes] = []

    async def submit_block(self, block_bytes: bytes) -> SubmitResult:
        self.blocks.append(block_bytes)
        if isinstance(self.result, Exception):
            raise self.result
        if isinstance(self.result, Deferred):
            return await self.result
        return self.result


def share(
    outputs: list[TxOut],
    *,
    is_block: bool = True,
    height: int = 7,
    header: bytes = bytes(80),
    time: float = 1_800_000_001.0,
) -> Share:
    """An accepted share (a block candidate unless ``is_block`` is false) paying ``outputs``."""
    parts = build_coinbase(height, outputs, 12)
    return Share(
        worker=f"{MINER}.rig1",
        address=MINER,
        difficulty=Fraction(1, 1000),
        hash=b"\x01" * 32,
        job_id="1a",
        height=height,
        time=time,
        is_block=is_block,
        header=header,
        coinbase=parts.assemble(bytes(12)),
    )
