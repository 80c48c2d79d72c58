"""Hash functions against published values."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otedama.chain.hashing import _ripemd160_pure, hash160, scrypt_pow, sha256, sha256d


def test_sha256d_of_empty_string_matches_known_value() -> None:
    assert sha256d(b"").hex() == "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
    assert sha256(b"abc") == hashlib.sha256(b"abc").digest()


def test_genesis_header_hashes_to_the_mainnet_genesis_hash() -> None:
    header = bytes.fromhex(
        "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd"
        "7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
    )
    assert (
        sha256d(header)[::-1].hex()
        == "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    )


@pytest.mark.parametrize(
    ("message", "digest"),
    [
        (b"", "9c1185a5c5e9fc54612808977ee8f548b2258d31"),
        (b"abc", "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"),
        (b"message digest", "5d0689ef49d2fae572b881b123a85ffa21595f36"),
        (
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "9b752e45573d4b39f4dbd3323cab82bf63326bfb",
        ),
    ],
)
def test_pure_ripemd160_matches_the_specification_vectors(message: bytes, digest: str) -> None:
    assert _ripemd160_pure(message).hex() == digest


@given(st.binary(max_size=300))
def test_pure_ripemd160_agrees_with_hashlib_when_available(data: bytes) -> None:
    try:
        expected = hashlib.new("ripemd160", data).digest()
    except ValueError:
        expected = _ripemd160_pure(data)
    assert _ripemd160_pure(data) == expected


def test_hash160_of_compressed_pubkey_gives_the_p2pkh_hash() -> None:
    # The key of bitcoin wiki's "Technical background of version 1 Bitcoin addresses".
    pubkey = bytes.fromhex("0250863ad64a87ae8a2fe83c1af1a8403cb53f53e486d8511dad8a04887e5b2352")
    assert hash160(pubkey).hex() == "f54a5851e9372b87810a8e60cdd2e7cfd80b6e31"


def test_scrypt_pow_matches_litecoin_block_29255() -> None:
    # Litecoin's scrypt test vector (src/test/scrypt_tests.cpp in Litecoin Core).
    header = bytes.fromhex(
        "020000004c1271c211717198227392b029a64a7971931d351b387bb80db027f270411e398a07046f"
        "7d4a08dd815412a8712f874a7ebf0507e3878bd24e20a3b73fd750a667d2f451eac7471b00de6659"
    )
    assert (
        scrypt_pow(header)[::-1].hex()
        == "00000000002bef4107f882f6115e0b01f348d21195dacd3582aa2dabd7985806"
    )


def test_scrypt_pow_refuses_a_header_that_is_not_80_bytes() -> None:
    with pytest.raises(ValueError, match="80-byte header, got 79"):
        scrypt_pow(bytes(79))
