"""Network parameters of the supported chains, the subsidy schedule and the devnet genesis."""

from __future__ import annotations

from dataclasses import dataclass, field

from otedama.chain.merkle import merkle_root
from otedama.chain.serialize import Block, BlockHeader, Transaction, TxIn, TxOut, push_data
from otedama.chain.target import bits_to_target, hash_to_int

__all__ = [
    "COIN",
    "DEVNET_GENESIS_BITS",
    "DEVNET_GENESIS_TIME",
    "NETWORKS",
    "NetworkParams",
    "block_subsidy",
    "devnet_genesis",
    "get_network",
]

COIN = 100_000_000
"""Satoshis per coin."""

INITIAL_SUBSIDY = 50 * COIN

DEVNET_GENESIS_BITS = 0x207FFFFF
"""Compact target of the devnet genesis block (the regtest proof-of-work limit)."""

DEVNET_GENESIS_TIME = 1735689600
"""Timestamp of the devnet genesis block (2025-01-01T00:00:00Z)."""

DEVNET_GENESIS_MESSAGE = b"Otedama devnet genesis"


@dataclass(frozen=True)
class NetworkParams:
    """Consensus and address constants of one chain.

    ``genesis_hash`` is in internal byte order; ``pow_limit`` is the easiest allowed target.
    """

    name: str
    bech32_hrp: str
    p2pkh_prefix: int
    p2sh_prefix: int
    genesis_hash: bytes = field(repr=False)
    coinbase_maturity: int
    halving_interval: int
    pow_limit: int
    default_rpc_port: int
    algorithm: str = "sha256d"

    @property
    def genesis_hash_hex(self) -> str:
        """The genesis hash in RPC display order."""
        return self.genesis_hash[::-1].hex()


def _display(hex_hash: str) -> bytes:
    return bytes.fromhex(hex_hash)[::-1]


_POW_LIMIT_MAIN = (1 << 224) - 1
_POW_LIMIT_SIGNET = 0x00000377AE << 216
_POW_LIMIT_REGTEST = (1 << 255) - 1


def devnet_genesis(bits: int = DEVNET_GENESIS_BITS) -> Block:
    """The devnet's genesis block for compact target ``bits``; deterministic.

    A one-transaction block whose coinbase (height 0, unspendable OP_RETURN output of 50
    coins) carries ``Otedama devnet genesis``; the nonce is the lowest one meeting
    ``bits``. Only easy targets (at least 2**236, about a million hashes) are accepted so
    building it stays quick.
    """
    target = bits_to_target(bits)
    if target < 1 << 236:
        raise ValueError(
            f"devnet genesis bits {bits:08x} are too hard to grind quickly; "
            "use a target of at least 2**236 (e.g. 207fffff)"
        )
    coinbase = Transaction(
        version=1,
        inputs=(
            TxIn(bytes(32), 0xFFFFFFFF, b"\x00" + push_data(DEVNET_GENESIS_MESSAGE), 0xFFFFFFFF),
        ),
        outputs=(TxOut(INITIAL_SUBSIDY, b"\x6a"),),
        lock_time=0,
    )
    root = merkle_root([coinbase.txid()])
    for nonce in range(1 << 32):
        header = BlockHeader(1, bytes(32), root, DEVNET_GENESIS_TIME, bits, nonce)
        if hash_to_int(header.hash()) <= target:
            return Block(header, (coinbase,))
    raise ValueError(f"no nonce meets devnet genesis bits {bits:08x}")


NETWORKS: dict[str, NetworkParams] = {
    "mainnet": NetworkParams(
        name="mainnet",
        bech32_hrp="bc",
        p2pkh_prefix=0,
        p2sh_prefix=5,
        genesis_hash=_display("000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"),
        coinbase_maturity=100,
        halving_interval=210_000,
        pow_limit=_POW_LIMIT_MAIN,
        default_rpc_port=8332,
    ),
    "testnet": NetworkParams(
        name="testnet",
        bech32_hrp="tb",
        p2pkh_prefix=111,
        p2sh_prefix=196,
        genesis_hash=_display("000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943"),
        coinbase_maturity=100,
        halving_interval=210_000,
        pow_limit=_POW_LIMIT_MAIN,
        default_rpc_port=18332,
    ),
    "testnet4": NetworkParams(
        name="testnet4",
        bech32_hrp="tb",
        p2pkh_prefix=111,
        p2sh_prefix=196,
        genesis_hash=_display("00000000da84f2bafbbc53dee25a72ae507ff4914b867c565be350b0da8bf043"),
        coinbase_maturity=100,
        halving_interval=210_000,
        pow_limit=_POW_LIMIT_MAIN,
        default_rpc_port=48332,
    ),
    "signet": NetworkParams(
        name="signet",
        bech32_hrp="tb",
        p2pkh_prefix=111,
        p2sh_prefix=196,
        genesis_hash=_display("00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6"),
        coinbase_maturity=100,
        halving_interval=210_000,
        pow_limit=_POW_LIMIT_SIGNET,
        default_rpc_port=38332,
    ),
    "regtest": NetworkParams(
        name="regtest",
        bech32_hrp="bcrt",
        p2pkh_prefix=111,
        p2sh_prefix=196,
        genesis_hash=_display("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"),
        coinbase_maturity=100,
        halving_interval=150,
        pow_limit=_POW_LIMIT_REGTEST,
        default_rpc_port=18443,
    ),
    "devnet": NetworkParams(
        name="devnet",
        bech32_hrp="bcrt",
        p2pkh_prefix=111,
        p2sh_prefix=196,
        genesis_hash=devnet_genesis().hash(),
        coinbase_maturity=100,
        # Mainnet's schedule: at a block every few seconds, regtest's 150 would drive
        # the embedded devnet's subsidy to zero within hours.
        halving_interval=210_000,
        pow_limit=_POW_LIMIT_REGTEST,
        default_rpc_port=19443,
    ),
}
"""Every supported network by canonical name."""

_ALIASES = {
    "main": "mainnet",
    "bitcoin": "mainnet",
    "test": "testnet",
    "testnet3": "testnet",
}


def get_network(name: str) -> NetworkParams:
    """Parameters of network ``name``.

    Accepts the canonical names and Core's ``getblockchaininfo`` chain names (``main``,
    ``test``, ``testnet4``, ``signet``, ``regtest``).
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    try:
        return NETWORKS[key]
    except KeyError:
        raise ValueError(
            f"unknown network {name!r}; expected one of {', '.join(NETWORKS)}"
        ) from None


def block_subsidy(height: int, params: NetworkParams) -> int:
    """New coins (satoshis) a block at ``height`` may create: 50 coins halved every
    ``halving_interval`` blocks, zero after 64 halvings."""
    if height < 0:
        raise ValueError(f"block height must not be negative, got {height}")
    halvings = height // params.halving_interval
    if halvings >= 64:
        return 0
    return INITIAL_SUBSIDY >> halvings
