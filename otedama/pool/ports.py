"""What the pool core needs from the rest of the node, as typed Protocols (one place).

The core (:mod:`otedama.pool.core`) never imports a concrete chain backend or ledger
store: it is handed objects that satisfy these Protocols, so a test double, the devnet
and bitcoind, PostgreSQL and SQLite all plug in the same way, and mypy checks each of
them against the same signatures.

- :class:`BlockSubmitter`: the chain backend's ``submit_block``, answering with the
  node's own :class:`SubmitResult` (its ``outcome`` is a :class:`SubmitOutcome`).
- :class:`ShareLedger`: where the core puts accepted shares and found blocks.
  :class:`otedama.pool.core.LedgerLink` is the adapter that turns both into the ledger
  store's records.
- :class:`LedgerStorePort`: what that adapter needs of the store
  (:class:`otedama.ledger.store.LedgerStore` satisfies it).
- :class:`Federation`: the federation's side of the pool (settlement outputs of each
  template, the federation share target, publishing federation shares and found blocks);
  :class:`otedama.federation.node.FederationNode` satisfies it.

Parameters are positional-only, so an implementation may name them as it likes.
"""

from __future__ import annotations

from typing import Protocol

from otedama.chain.serialize import TxOut
from otedama.federation.node import MinedWork
from otedama.ledger.blocks import FoundBlock, RecordedBlock, RewardPolicy
from otedama.ledger.rewards import RewardScheme
from otedama.ledger.shares import ShareRecord
from otedama.node.chainview import SubmitOutcome, SubmitResult
from otedama.stratum.share import Share

__all__ = [
    "BlockSubmitter",
    "Federation",
    "LedgerStorePort",
    "MinedWork",
    "RewardScheme",
    "ShareLedger",
    "SubmitOutcome",
    "SubmitResult",
]


class BlockSubmitter(Protocol):
    """The chain backend as the core sees it (bitcoind's client and the devnet's)."""

    async def submit_block(self, block_bytes: bytes, /) -> SubmitResult:
        """Hand a solved block to the daemon; raises when the answer never came."""
        ...


class ShareLedger(Protocol):
    """The ledger as the core sees it."""

    def add_share(self, share: Share, /) -> None:
        """Count one accepted share (never blocks, never raises for the database)."""
        ...

    async def record_block(self, share: Share, reward: int, /) -> RecordedBlock:
        """Record a solved candidate as a pending block with its credits (idempotent)."""
        ...


class LedgerStorePort(Protocol):
    """The ledger store's interface that :class:`~otedama.pool.core.LedgerLink` uses."""

    def add_share(self, record: ShareRecord, /) -> None:
        """Batch one share for the database (spooled while it is away)."""
        ...

    async def record_block(self, found: FoundBlock, policy: RewardPolicy, /) -> RecordedBlock:
        """Record a found block and its credits, or queue it on disk until it can."""
        ...


class Federation(Protocol):
    """The federation as the core sees it (only when ``federation.enabled``)."""

    def coinbase_outputs(self, reward: int, template_time: int, /) -> list[TxOut]:
        """The settlement outputs of a template built at ``template_time`` (whole unix
        seconds), the node-id commitment last; the values add up to ``reward``."""
        ...

    def share_target(self) -> int:
        """The federation share target now (0 while unknown: no template yet)."""
        ...

    def publish_share(self, work: MinedWork, /) -> bool:
        """A share that met the federation share target: window and gossip; whether sent."""
        ...

    def publish_block(self, work: MinedWork, /) -> bool:
        """A block this node found: gossip it at once; whether sent."""
        ...
