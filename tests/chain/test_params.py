"""Network parameters, subsidy schedule and the devnet genesis."""

from __future__ import annotations

import pytest

from otedama.chain.hashing import sha256d
from otedama.chain.merkle import merkle_root
from otedama.chain.params import (
    COIN,
    DEVNET_GENESIS_BITS,
    NETWORKS,
    block_subsidy,
    devnet_genesis,
    get_network,
)
from otedama.chain.serialize import Block, BlockHeader, Transaction, TxIn, TxOut, push_data
from otedama.chain.target import bits_to_target, hash_to_int

SATOSHI_MESSAGE = b"The Times 03/Jan/2009 Chancellor on brink of second bailout for banks"
SATOSHI_KEY = bytes.fromhex(
    "04678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f3"
    "5504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5f"
)


def _satoshi_genesis(time: int, nonce: int, bits: int) -> BlockHeader:
    coinbase = Transaction(
        1,
        (
            TxIn(
                bytes(32),
                0xFFFFFFFF,
                bytes.fromhex("04ffff001d0104") + push_data(SATOSHI_MESSAGE),
                0xFFFFFFFF,
            ),
        ),
        (TxOut(50 * COIN, push_data(SATOSHI_KEY) + b"\xac"),),
        0,
    )
    return BlockHeader(1, bytes(32), merkle_root([coinbase.txid()]), time, bits, nonce)


@pytest.mark.parametrize(
    ("network", "time", "nonce", "bits"),
    [
        ("mainnet", 1231006505, 2083236893, 0x1D00FFFF),
        ("testnet", 1296688602, 414098458, 0x1D00FFFF),
        ("regtest", 1296688602, 2, 0x207FFFFF),
    ],
)
def test_genesis_hash_is_the_hash_of_the_rebuilt_genesis(
    network: str, time: int, nonce: int, bits: int
) -> None:
    params = get_network(network)
    assert _satoshi_genesis(time, nonce, bits).hash() == params.genesis_hash


def test_regtest_genesis_matches_the_vector_previous_hash() -> None:
    from .conftest import load_json

    first = load_json("bitcoind/low-heights.json")["heights"][0]
    assert get_network("regtest").genesis_hash_hex == first["getblocktemplate"]["previousblockhash"]


def test_address_prefixes_per_network() -> None:
    assert (get_network("mainnet").p2pkh_prefix, get_network("mainnet").p2sh_prefix) == (0, 5)
    for name in ("testnet", "testnet4", "signet", "regtest", "devnet"):
        params = get_network(name)
        assert (params.p2pkh_prefix, params.p2sh_prefix) == (111, 196)
    assert [get_network(n).bech32_hrp for n in NETWORKS] == [
        "bc",
        "tb",
        "tb",
        "tb",
        "bcrt",
        "bcrt",
    ]


def test_core_chain_names_are_accepted() -> None:
    assert get_network("main").name == "mainnet"
    assert get_network("test").name == "testnet"
    assert get_network("testnet3").name == "testnet"
    with pytest.raises(ValueError, match="unknown network 'litecoin'"):
        get_network("litecoin")


def test_pow_limits_decode_from_each_networks_genesis_bits() -> None:
    assert get_network("mainnet").pow_limit >> 208 == bits_to_target(0x1D00FFFF) >> 208
    assert get_network("regtest").pow_limit >= bits_to_target(0x207FFFFF)
    assert get_network("signet").pow_limit == bits_to_target(0x1E0377AE)


def test_subsidy_halves_on_schedule() -> None:
    main = get_network("mainnet")
    assert block_subsidy(0, main) == 50 * COIN
    assert block_subsidy(209_999, main) == 50 * COIN
    assert block_subsidy(210_000, main) == 25 * COIN
    assert block_subsidy(840_000, main) == 312_500_000
    assert block_subsidy(64 * 210_000, main) == 0
    regtest = get_network("regtest")
    assert block_subsidy(149, regtest) == 50 * COIN
    assert block_subsidy(150, regtest) == 25 * COIN
    assert get_network("devnet").halving_interval == 210_000
    with pytest.raises(ValueError, match="negative"):
        block_subsidy(-1, main)


def test_all_networks_mature_coinbases_after_100_blocks() -> None:
    assert {p.coinbase_maturity for p in NETWORKS.values()} == {100}
    assert {p.algorithm for p in NETWORKS.values()} == {"sha256d"}


def test_devnet_genesis_is_deterministic_valid_and_named_in_params() -> None:
    block = devnet_genesis()
    assert block == devnet_genesis(DEVNET_GENESIS_BITS)
    assert block.hash() == get_network("devnet").genesis_hash
    assert block.header.prev_hash == bytes(32)
    assert block.header.merkle_root == merkle_root([block.transactions[0].txid()])
    assert hash_to_int(block.hash()) <= bits_to_target(block.header.bits)
    assert Block.parse(block.serialize()) == block
    assert sha256d(block.header.serialize()) == block.hash()


def test_devnet_genesis_refuses_hard_bits() -> None:
    with pytest.raises(ValueError, match="too hard"):
        devnet_genesis(0x1D00FFFF)
