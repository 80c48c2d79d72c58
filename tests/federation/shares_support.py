"""Real federation shares for tests: coinbases built by the chain core, headers mined."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from otedama.chain.coinbase import build_coinbase, node_commitment_output
from otedama.chain.hashing import sha256d
from otedama.chain.merkle import merkle_branch, root_from_branch, witness_commitment_script
from otedama.chain.params import COIN
from otedama.chain.serialize import BlockHeader, Transaction, TxOut
from otedama.chain.target import hash_to_int
from otedama.federation.settlement import Output
from otedama.federation.shares import ChainTip, FedShare
from otedama.federation.window import FederationWindow, WindowEntry

NOW = 1_800_000_000
NODE = b"\x11" * 20
KEY = b"\x22" * 32
EASY = 1 << 252
"""A target one hash in 16 meets: quick to mine in a test."""
TIP = ChainTip(hash=sha256d(b"tip"), height=100, parent_hash=sha256d(b"parent"), since=NOW - 100)
TXIDS = [sha256d(bytes([i])) for i in range(3)]


def script(n: int) -> bytes:
    """A P2WPKH scriptPubKey distinct per ``n``."""
    return b"\x00\x14" + n.to_bytes(20, "big")


PAYOUT = script(1)


@dataclass
class ShareSpec:
    """What to put in a test share; every default makes a share that verifies against
    ``TIP`` at ``NOW`` with target ``EASY`` and an empty window."""

    node_id: bytes = NODE
    public_key: bytes = KEY
    payout_script: bytes = PAYOUT
    outputs: Sequence[Output] = ((PAYOUT, 50 * COIN),)
    commitments: Sequence[bytes] | None = None
    """Node ids committed to in the coinbase; None: just ``node_id``."""
    prev_hash: bytes = TIP.hash
    height: int = TIP.height + 1
    coinbase_height: int | None = None
    target: int = EASY
    time: int = NOW
    template_time: int | None = None
    """None: 20 s before ``time``."""
    header_time: int | None = None
    txids: Sequence[bytes] = field(default_factory=lambda: list(TXIDS))
    branch: Sequence[bytes] | None = None
    """Branch sent with the share; None: the true one."""
    meets_target: bool = True
    change_coinbase: Callable[[Transaction], Transaction] | None = None
    """Applied to the built coinbase before the header commits to it."""


def make_share(spec: ShareSpec | None = None, **changes: object) -> FedShare:
    """A share from ``spec`` (or ``ShareSpec(**changes)``) with a real coinbase and a
    header mined to meet (or, with ``meets_target=False``, to miss) its target."""
    if spec is None:
        spec = ShareSpec(**changes)  # type: ignore[arg-type]
    commitments = [spec.node_id] if spec.commitments is None else list(spec.commitments)
    txouts = [TxOut(amount, out_script) for out_script, amount in spec.outputs]
    txouts += [node_commitment_output(node_id) for node_id in commitments]
    parts = build_coinbase(
        spec.height if spec.coinbase_height is None else spec.coinbase_height,
        txouts,
        8,
        b"/otedama/",
        witness_commitment_script(bytes(32)),
    )
    coinbase = parts.assemble(bytes.fromhex("0102030405060708"))
    if spec.change_coinbase is not None:
        coinbase = spec.change_coinbase(Transaction.parse(coinbase)).serialize(witness=False)
    branch = merkle_branch(spec.txids)
    root = root_from_branch(sha256d(coinbase), branch)
    header_time = spec.time if spec.header_time is None else spec.header_time
    for nonce in range(1 << 20):
        header = BlockHeader(0x20000000, spec.prev_hash, root, header_time, 0x207FFFFF, nonce)
        raw = header.serialize()
        if (hash_to_int(sha256d(raw)) <= spec.target) == spec.meets_target:
            break
    else:  # pragma: no cover - 2**20 tries at 1/16 do not all fail
        raise AssertionError("could not mine the test header")
    return FedShare(
        node_id=spec.node_id,
        public_key=spec.public_key,
        payout_script=spec.payout_script,
        header=raw,
        coinbase=coinbase,
        branch=tuple(branch if spec.branch is None else spec.branch),
        height=spec.height,
        target=spec.target,
        time=spec.time,
        template_time=spec.time - 20 if spec.template_time is None else spec.template_time,
    )


def window_of(weights: dict[bytes, int], time: int = NOW - 60) -> FederationWindow:
    """A 2 h window holding one share of ``work`` per payout script at ``time``."""
    window = FederationWindow(7200)
    for n, (payout, work) in enumerate(sorted(weights.items())):
        entry = WindowEntry(sha256d(b"share %d" % n), payout[-20:], payout, work, time)
        assert window.add(entry, NOW)
    return window
