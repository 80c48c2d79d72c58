"""Federation shares: the value gossiped between nodes, its wire form, the federation
share target, and how a receiver verifies one.

A ``FedShare`` is a share that met the federation share target: the 80-byte header, the
coinbase (non-witness serialization) and the merkle branch that links the coinbase to the
header's merkle root, with the claiming node's id, public key and payout script, the
block height it was mined at, the target it claims, the time it was found and the
template time: the moment of the window its coinbase's split was computed from. Pure: no
I/O, the receiver's time is passed in. ``docs/federation.md`` states the rules.

**Share target.** ``share_target`` is computed from the window alone, so two nodes with
the same window compute the same target. The window's work done after its oldest share
(total work minus the oldest share's) over the time between its oldest and newest share
(at least ``share_interval``) estimates the federation's hash rate; the target is the one
whose expected work per share is that rate times ``share_interval``. Integer arithmetic,
times in milliseconds. Fewer than two shares: the easiest target. The result is clamped
between the network target (a federation share need never be harder than a block) and
``network_target * 2**START_FACTOR_BITS`` (and 2**256-1).

**Verification order** (cheapest first, each with its ``Rejection`` reason):

0. the envelope signature, and that the node id belongs to the public key: the gossip
   layer checks both before a ``FedShare`` reaches ``verify_share``;
1. proof of work: the claimed target is at most ``TARGET_TOLERANCE`` times the receiver's
   own share target (``TARGET_TOO_EASY``) and the header hash meets the claimed target
   (``INSUFFICIENT_WORK``);
2. the coinbase parses as a coinbase (``BAD_COINBASE``) and commits to the claiming
   node's id with exactly one node commitment output (``NOT_COMMITTED``);
3. the header builds on the receiver's tip, or on the tip's parent while the tip is at
   most ``TIP_GRACE`` seconds old (``STALE``), and the coinbase's BIP34 height is the
   height that implies (``BAD_HEIGHT``);
4. the coinbase txid and the branch give the header's merkle root (``BAD_MERKLE_ROOT``);
5. time bounds: the share is at most ``MAX_AGE`` old (``TOO_OLD``) and at most
   ``MAX_FUTURE`` ahead (``FROM_FUTURE``); the header time is within ``MAX_HEADER_DRIFT``
   of the share's time (``BAD_HEADER_TIME``); the template time is at most
   ``MAX_TEMPLATE_AGE`` before the share's time and not after it (``BAD_TEMPLATE_TIME``);
6. the coinbase splits its reward within the settlement tolerance of the receiver's own
   window as of the share's template time (``UNDERPAYS``; see
   ``otedama.federation.settlement``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Protocol

from otedama.chain.coinbase import MAX_NODE_ID_SIZE, encode_height, node_commitments
from otedama.chain.hashing import sha256d
from otedama.chain.merkle import root_from_branch
from otedama.chain.serialize import BlockHeader, SerializationError, Transaction
from otedama.chain.target import MAX_TARGET, hash_to_int
from otedama.federation.settlement import SettlementCheck, SettlementError, check_settlement

__all__ = [
    "FIELDS",
    "MAX_AGE",
    "MAX_BRANCH",
    "MAX_COINBASE_SIZE",
    "MAX_FUTURE",
    "MAX_HEADER_DRIFT",
    "MAX_PAYOUT_SCRIPT",
    "MAX_TEMPLATE_AGE",
    "PUBLIC_KEY_SIZE",
    "START_FACTOR_BITS",
    "TARGET_TOLERANCE",
    "TIP_GRACE",
    "ChainTip",
    "FedShare",
    "FedShareError",
    "Rejection",
    "Verdict",
    "WindowWeights",
    "share_target",
    "share_work",
    "verify_share",
]

PUBLIC_KEY_SIZE = 32
"""An Ed25519 public key."""
MAX_COINBASE_SIZE = 8_192
"""Bytes; a settlement coinbase with the most outputs is about 3 kB."""
MAX_BRANCH = 32
"""Merkle branch steps; 2**32 transactions do not fit in a block."""
MAX_PAYOUT_SCRIPT = 100
"""Bytes of the claiming node's payout scriptPubKey (standard ones are at most 34)."""
MAX_HEIGHT = 0x7FFFFFFF
MAX_TIME = 0xFFFFFFFF

TARGET_TOLERANCE = 2
"""A share may claim a target up to this many times easier than the receiver's own: the
sender computed its target from its window a moment earlier, with shares in flight."""
TIP_GRACE = 30.0
"""Seconds after a new tip during which shares on its parent are still accepted."""
MAX_AGE = 60
"""Seconds a share may be older than the receiver's clock."""
MAX_FUTURE = 15
"""Seconds a share may be ahead of the receiver's clock (clock skew)."""
MAX_HEADER_DRIFT = 7_200
"""Seconds between the header's ntime and the share's time (Bitcoin's own future bound)."""
MAX_TEMPLATE_AGE = 300
"""Seconds a share's template time may precede its time: templates (and so coinbase
splits) are rebuilt at least every 30 s by the node's block source."""
START_FACTOR_BITS = 16
"""The easiest federation share target is the network target times 2**16."""

FIELDS = (
    "node_id",
    "public_key",
    "payout_script",
    "header",
    "coinbase",
    "branch",
    "height",
    "target",
    "time",
    "template_time",
)
"""The keys of a share's wire dict, all required."""


class FedShareError(ValueError):
    """A federation share field that is missing, of the wrong type, or out of bounds."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"fed-share {field_name}: {message}")
        self.field = field_name


def _bytes(name: str, value: Any, low: int, high: int) -> bytes:
    if not isinstance(value, bytes):
        raise FedShareError(name, f"expected bytes, got {type(value).__name__}")
    if not low <= len(value) <= high:
        size = f"{low}" if low == high else f"{low}..{high}"
        raise FedShareError(name, f"expected {size} bytes, got {len(value)}")
    return value


def _int(name: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise FedShareError(name, f"expected a whole number, got {type(value).__name__}")
    if not low <= value <= high:
        raise FedShareError(name, f"expected {low}..{high}, got {value}")
    return value


def share_work(target: int) -> int:
    """Expected hashes to meet ``target``: ``2**256 // (target + 1)``, Bitcoin Core's
    block proof. Integer, proportional to difficulty: the weight of a share."""
    if not 0 < target <= MAX_TARGET:
        raise ValueError(f"target must be 1..2**256-1, got {target!r}")
    return (1 << 256) // (target + 1)


@dataclass(frozen=True)
class FedShare:
    """A federation share as gossiped; validated at construction (``FedShareError``)."""

    node_id: bytes
    public_key: bytes
    payout_script: bytes
    header: bytes
    coinbase: bytes
    branch: tuple[bytes, ...]
    height: int
    target: int
    time: int
    template_time: int
    _parsed_header: BlockHeader = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _bytes("node_id", self.node_id, 1, MAX_NODE_ID_SIZE)
        _bytes("public_key", self.public_key, PUBLIC_KEY_SIZE, PUBLIC_KEY_SIZE)
        _bytes("payout_script", self.payout_script, 1, MAX_PAYOUT_SCRIPT)
        _bytes("header", self.header, 80, 80)
        _bytes("coinbase", self.coinbase, 1, MAX_COINBASE_SIZE)
        if not isinstance(self.branch, tuple):
            raise FedShareError("branch", f"expected a tuple, got {type(self.branch).__name__}")
        if len(self.branch) > MAX_BRANCH:
            raise FedShareError("branch", f"at most {MAX_BRANCH} steps, got {len(self.branch)}")
        for step in self.branch:
            _bytes("branch", step, 32, 32)
        _int("height", self.height, 0, MAX_HEIGHT)
        _int("target", self.target, 1, MAX_TARGET)
        _int("time", self.time, 0, MAX_TIME)
        _int("template_time", self.template_time, 0, MAX_TIME)
        object.__setattr__(self, "_parsed_header", BlockHeader.parse(self.header))

    @property
    def block_header(self) -> BlockHeader:
        """The parsed header."""
        return self._parsed_header

    @cached_property
    def share_hash(self) -> bytes:
        """The header's sha256d (internal order): the share's identity for dedup."""
        return sha256d(self.header)

    @property
    def work(self) -> int:
        """The share's weight in the window: the work its claimed target stands for."""
        return share_work(self.target)

    def to_dict(self) -> dict[str, Any]:
        """The msgpack-friendly form: bytes stay bytes, the 256-bit target is 32
        big-endian bytes (msgpack integers stop at 64 bits)."""
        return {
            "node_id": self.node_id,
            "public_key": self.public_key,
            "payout_script": self.payout_script,
            "header": self.header,
            "coinbase": self.coinbase,
            "branch": list(self.branch),
            "height": self.height,
            "target": self.target.to_bytes(32, "big"),
            "time": self.time,
            "template_time": self.template_time,
        }

    @classmethod
    def from_dict(cls, data: Any) -> FedShare:
        """Parse the wire dict; any missing, unknown or bad field is a ``FedShareError``."""
        if not isinstance(data, dict):
            raise FedShareError("share", f"expected a map, got {type(data).__name__}")
        unknown = [key for key in data if key not in FIELDS]
        if unknown:
            raise FedShareError(repr(unknown[0])[:40], "unknown field")
        missing = [key for key in FIELDS if key not in data]
        if missing:
            raise FedShareError(missing[0], "missing")
        branch = data["branch"]
        if not isinstance(branch, list | tuple):
            raise FedShareError("branch", f"expected a list, got {type(branch).__name__}")
        if len(branch) > MAX_BRANCH:
            raise FedShareError("branch", f"at most {MAX_BRANCH} steps, got {len(branch)}")
        target = _bytes("target", data["target"], 32, 32)
        return cls(
            node_id=data["node_id"],
            public_key=data["public_key"],
            payout_script=data["payout_script"],
            header=data["header"],
            coinbase=data["coinbase"],
            branch=tuple(branch),
            height=data["height"],
            target=int.from_bytes(target, "big"),
            time=data["time"],
            template_time=data["template_time"],
        )


def share_target(
    total_work: int,
    oldest_work: int,
    oldest_time: int,
    newest_time: int,
    share_interval: float,
    network_target: int,
) -> int:
    """The federation share target from a window's totals (see the module docstring).

    ``total_work`` is the window's summed share work, ``oldest_work`` the work of its
    oldest share, ``oldest_time``/``newest_time`` the times (whole seconds) of its oldest
    and newest shares; an empty window has ``total_work == 0``.
    """
    if not 0 < network_target <= MAX_TARGET:
        raise ValueError(f"network target must be 1..2**256-1, got {network_target!r}")
    interval_ms = max(1, round(share_interval * 1000))
    easiest = min(MAX_TARGET, network_target << START_FACTOR_BITS)
    work = total_work - oldest_work
    if work <= 0:
        return easiest
    span_ms = max((newest_time - oldest_time) * 1000, interval_ms)
    wanted = work * interval_ms // span_ms
    if wanted <= 0:
        return easiest
    target = (1 << 256) // wanted - 1
    return max(network_target, min(easiest, target))


@dataclass(frozen=True)
class ChainTip:
    """The receiver's view of the chain: its tip, the tip's parent, and when it saw it."""

    hash: bytes
    height: int
    parent_hash: bytes
    since: float


class Rejection(StrEnum):
    """Why a receiver refused a federation share, in verification order."""

    TARGET_TOO_EASY = "target-too-easy"
    INSUFFICIENT_WORK = "insufficient-work"
    BAD_COINBASE = "bad-coinbase"
    NOT_COMMITTED = "not-committed"
    STALE = "stale"
    BAD_HEIGHT = "bad-height"
    BAD_MERKLE_ROOT = "bad-merkle-root"
    TOO_OLD = "too-old"
    FROM_FUTURE = "from-future"
    BAD_HEADER_TIME = "bad-header-time"
    BAD_TEMPLATE_TIME = "bad-template-time"
    UNDERPAYS = "underpays"


class WindowWeights(Protocol):
    """The receiver's window, as ``FederationWindow`` provides it."""

    def script_weights(self, as_of: float) -> Mapping[bytes, int]:
        """Payout script -> work of the window as of ``as_of``."""
        ...


@dataclass(frozen=True)
class Verdict:
    """The outcome of ``verify_share``: ``reason`` is None when the share is accepted.
    ``settlement`` is the split check, when verification got that far."""

    reason: Rejection | None
    detail: str = ""
    settlement: SettlementCheck | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


def _reject(reason: Rejection, detail: str) -> Verdict:
    return Verdict(reason, detail)


def verify_share(
    share: FedShare,
    *,
    federation_target: int,
    tip: ChainTip,
    window: WindowWeights | None,
    now: float,
    tip_grace: float = TIP_GRACE,
) -> Verdict:
    """Verify ``share`` against the receiver's state, in the documented order.

    ``federation_target`` is the receiver's own federation share target (its window's
    ``at(now).share_target(...)``), ``window`` its federation window before this share
    is added. The signature was checked by the gossip layer. With ``window`` None the
    split (step 6) is not checked: the receiver does not know the finder's payout script
    yet (``FederationNode`` then refuses the share as ``finder-record-unknown`` anyway,
    after steps 1 to 5 have shown it is not junk).
    """
    # 1. Proof of work.
    if share.target > federation_target * TARGET_TOLERANCE:
        return _reject(
            Rejection.TARGET_TOO_EASY,
            f"claims target {share.target:#x}, more than {TARGET_TOLERANCE}x "
            f"the federation target {federation_target:#x}",
        )
    if hash_to_int(share.share_hash) > share.target:
        return _reject(
            Rejection.INSUFFICIENT_WORK,
            f"header hash {share.share_hash[::-1].hex()} does not meet its target",
        )
    # 2. The coinbase commits to the claiming node.
    try:
        coinbase = Transaction.parse(share.coinbase)
    except SerializationError as e:
        return _reject(Rejection.BAD_COINBASE, f"coinbase does not parse: {e}")
    if (
        len(coinbase.inputs) != 1
        or coinbase.inputs[0].prev_hash != bytes(32)
        or coinbase.inputs[0].prev_index != 0xFFFFFFFF
    ):
        return _reject(Rejection.BAD_COINBASE, "not a coinbase (one input, null outpoint)")
    committed = node_commitments(coinbase.outputs)
    if committed != [share.node_id]:
        return _reject(
            Rejection.NOT_COMMITTED,
            f"coinbase commits to {[c.hex() for c in committed]}, "
            f"not only to {share.node_id.hex()}",
        )
    # 3. Builds on the tip (or its parent, for a grace period).
    header = share.block_header
    if header.prev_hash == tip.hash:
        height = tip.height + 1
    elif header.prev_hash == tip.parent_hash and now - tip.since <= tip_grace:
        height = tip.height
    else:
        return _reject(
            Rejection.STALE,
            f"builds on {header.prev_hash[::-1].hex()}, not on tip {tip.hash[::-1].hex()}",
        )
    if share.height != height or not coinbase.inputs[0].script_sig.startswith(
        encode_height(height)
    ):
        return _reject(
            Rejection.BAD_HEIGHT,
            f"share height {share.height} / coinbase height push do not match {height}",
        )
    # 4. Merkle root.
    if root_from_branch(sha256d(share.coinbase), share.branch) != header.merkle_root:
        return _reject(Rejection.BAD_MERKLE_ROOT, "coinbase and branch do not give the root")
    # 5. Time bounds.
    if share.time < now - MAX_AGE:
        return _reject(Rejection.TOO_OLD, f"share time {share.time} is before {now - MAX_AGE}")
    if share.time > now + MAX_FUTURE:
        return _reject(
            Rejection.FROM_FUTURE, f"share time {share.time} is after {now + MAX_FUTURE}"
        )
    if abs(header.time - share.time) > MAX_HEADER_DRIFT:
        return _reject(
            Rejection.BAD_HEADER_TIME,
            f"header time {header.time} is more than {MAX_HEADER_DRIFT}s from {share.time}",
        )
    if not share.time - MAX_TEMPLATE_AGE <= share.template_time <= share.time:
        return _reject(
            Rejection.BAD_TEMPLATE_TIME,
            f"template time {share.template_time} is not within {MAX_TEMPLATE_AGE}s "
            f"before the share time {share.time}",
        )
    # 6. The split, against the receiver's own window at the moment the sender split.
    if window is None:
        return Verdict(None, "split not checked")
    weights = window.script_weights(share.template_time)
    try:
        check = check_settlement(coinbase.outputs, weights, share.payout_script)
    except SettlementError as e:
        return _reject(Rejection.BAD_COINBASE, f"coinbase outputs cannot be settled: {e}")
    if check.underpaid:
        return Verdict(
            Rejection.UNDERPAYS,
            f"coinbase underpays the federation by {check.shortfall} sat "
            f"(tolerance {check.allowed} sat of {check.reward})",
            check,
        )
    return Verdict(None, "", check)
