"""Addresses: BIP173/BIP350 vectors, Bitcoin Core's key_io data, error messages, round trips."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otedama.chain.address import (
    AddressError,
    Encoding,
    address_to_script,
    base58_decode,
    base58_encode,
    base58check_decode,
    base58check_encode,
    bech32_decode,
    decode_segwit_address,
    encode_segwit_address,
    script_to_address,
    witness_script,
)
from otedama.chain.params import NETWORKS, get_network

from .conftest import load_json

# --- official BIP173 / BIP350 vectors (bitcoin/bips, sipa/bech32 ref/python/tests.py) ---

VALID_BECH32 = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]

VALID_BECH32M = [
    "A1LQFN3A",
    "a1lqfn3a",
    "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
    "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
    "11llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllludsr8",
    "split1checkupstagehandshakeupstreamerranterredcaperredlc445v",
    "?1v759aa",
]

INVALID_BECH32 = [
    " 1nwldj5",  # HRP character out of range
    "\x7f" + "1axkwrx",  # HRP character out of range
    "\x80" + "1eym55h",  # HRP character out of range
    # overall max length exceeded
    "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
    "pzry9x0s0muk",  # No separator character
    "1pzry9x0s0muk",  # Empty HRP
    "x1b4n0q5v",  # Invalid data character
    "li1dgmt3",  # Too short checksum
    "de1lg7wt" + "\xff",  # Invalid character in checksum
    "A1G7SGD8",  # checksum calculated with uppercase form of HRP
    "10a06t8",  # empty HRP
    "1qzzfhee",  # empty HRP
]

INVALID_BECH32M = [
    " 1xj0phk",  # HRP character out of range
    "\x7f" + "1g6xzxy",  # HRP character out of range
    "\x80" + "1vctc34",  # HRP character out of range
    # overall max length exceeded
    "an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11d6pts4",
    "qyrz8wqd2c9m",  # No separator character
    "1qyrz8wqd2c9m",  # Empty HRP
    "y1b0jsk6g",  # Invalid data character
    "lt1igcx5c0",  # Invalid data character
    "in1muywd",  # Too short checksum
    "mm1crxm3i",  # Invalid character in checksum
    "au1s5cgom",  # Invalid character in checksum
    "M1VUXWEZ",  # Checksum calculated with uppercase form of HRP
    "16plkw9",  # Empty HRP
    "1p2gdwpf",  # Empty HRP
]

VALID_ADDRESS = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    (
        "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
        "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262",
    ),
    (
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
        "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6",
    ),
    ("BC1SW50QGDZ25J", "6002751e"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "5210751e76e8199196d454941c45d1b3a323"),
    (
        "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
        "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
        "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    ),
]

INVALID_ADDRESS_BIP350 = [
    ("tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut", "Invalid HRP"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "bech32 instead of bech32m"),
    ("tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf", "bech32 instead of bech32m"),
    ("BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL", "bech32 instead of bech32m"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh", "bech32m instead of bech32"),
    ("tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47", "bech32m instead of bech32"),
    ("bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4", "char in checksum"),
    ("BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R", "witness version"),
    ("bc1pw5dgrnzv", "program length 1"),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
        "program length 41",
    ),
    ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "v0 program length"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq", "mixed case"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf", "> 4 padding bits"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j", "non-zero padding"),
    ("bc1gmk9yu", "empty data section"),
]

INVALID_ADDRESS_BIP173 = [
    ("tc1qw508d6qejxtdg4y5r3zarvary0c5xw7kg3g4ty", "invalid HRP"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "invalid checksum"),
    ("BC13W508D6QEJXTDG4Y5R3ZARVARY0C5XW7KN40WF2", "invalid witness version"),
    ("bc1rw5uspcuh", "invalid program length"),
    (
        "bc10w508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kw5rljs90",
        "invalid program length",
    ),
    ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "v0 program length"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sL5k7", "mixed case"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du", "zero padding of more than 4 bits"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3pjxtptv", "non-zero padding"),
    ("bc1gmk9yu", "empty data section"),
]

# BIP173's original valid v1+ addresses: bech32 checksums, so BIP350 makes them invalid.
BIP173_V1PLUS_NOW_INVALID = [
    "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7k7grplx",
    "BC1SW50QA3JX3S",
    "bc1zw508d6qejxtdg4y5r3zarvaryvg6kdaj",
]

INVALID_ADDRESS_ENC = [("BC", 0, 20), ("bc", 0, 21), ("bc", 17, 32), ("bc", 1, 1), ("bc", 16, 41)]


def _flip_after_separator(text: str) -> str:
    pos = text.rfind("1")
    return text[: pos + 1] + chr(ord(text[pos + 1]) ^ 1) + text[pos + 2 :]


@pytest.mark.parametrize(
    ("text", "encoding"),
    [(t, Encoding.BECH32) for t in VALID_BECH32] + [(t, Encoding.BECH32M) for t in VALID_BECH32M],
)
def test_valid_checksums_decode_with_their_variant_and_break_on_one_flip(
    text: str, encoding: Encoding
) -> None:
    assert bech32_decode(text)[2] is encoding
    with pytest.raises(AddressError):
        bech32_decode(_flip_after_separator(text))


@pytest.mark.parametrize("text", INVALID_BECH32 + INVALID_BECH32M)
def test_invalid_bech32_strings_are_refused(text: str) -> None:
    with pytest.raises(AddressError):
        bech32_decode(text)


@pytest.mark.parametrize(("address", "script"), VALID_ADDRESS)
def test_bip350_valid_addresses_decode_and_reencode(address: str, script: str) -> None:
    hrp = address[:2].lower()
    version, program = decode_segwit_address(hrp, address)
    assert witness_script(version, program).hex() == script
    assert encode_segwit_address(hrp, version, program) == address.lower()
    network = "mainnet" if hrp == "bc" else "testnet"
    assert address_to_script(address, network).hex() == script
    assert script_to_address(bytes.fromhex(script), network) == address.lower()


@pytest.mark.parametrize(
    ("address", "why"), INVALID_ADDRESS_BIP350 + INVALID_ADDRESS_BIP173, ids=lambda v: str(v)[:20]
)
def test_bip173_and_bip350_invalid_addresses_are_refused_on_every_network(
    address: str, why: str
) -> None:
    for hrp in ("bc", "tb"):
        with pytest.raises(AddressError):
            decode_segwit_address(hrp, address)
    for network in NETWORKS:
        with pytest.raises(AddressError):
            address_to_script(address, network)


@pytest.mark.parametrize("address", BIP173_V1PLUS_NOW_INVALID)
def test_v1_plus_with_a_bech32_checksum_names_bech32m(address: str) -> None:
    with pytest.raises(AddressError, match=r"must use bech32m \(BIP350\), not bech32"):
        address_to_script(address, "mainnet")


@pytest.mark.parametrize(("hrp", "version", "length"), INVALID_ADDRESS_ENC)
def test_invalid_segwit_encodings_are_refused(hrp: str, version: int, length: int) -> None:
    with pytest.raises(AddressError):
        encode_segwit_address(hrp, version, bytes(length))


# --- Bitcoin Core key_io / base58 data ------------------------------------------------

CORE_CHAIN = {"main": "mainnet", "testnet4": "testnet4", "signet": "signet", "regtest": "regtest"}
KEY_IO_VALID = [
    entry for entry in load_json("bitcoin-core-data/key_io_valid.json") if not entry[2]["isPrivkey"]
]
KEY_IO_INVALID = [entry[0] for entry in load_json("bitcoin-core-data/key_io_invalid.json")]


def test_key_io_vectors_are_loaded() -> None:
    assert len(KEY_IO_VALID) >= 40
    assert len(KEY_IO_INVALID) == 70


@pytest.mark.parametrize("entry", KEY_IO_VALID, ids=lambda e: e[0][:24])
def test_core_valid_addresses_round_trip_on_their_chain(entry: list[Any]) -> None:
    address, script_hex, meta = entry
    network = CORE_CHAIN[meta["chain"]]
    script = bytes.fromhex(script_hex)
    assert address_to_script(address, network) == script
    assert script_to_address(script, network) == address
    if meta.get("tryCaseFlip"):
        assert address_to_script(address.swapcase(), network) == script
    here = get_network(network)
    for other, params in NETWORKS.items():
        if address.lower().startswith(here.bech32_hrp + "1"):  # bech32: the HRP names it
            if params.bech32_hrp == here.bech32_hrp:
                continue
        elif params.p2pkh_prefix == here.p2pkh_prefix:  # base58: the version byte does
            assert address_to_script(address, other) == script
            continue
        with pytest.raises(AddressError, match=f"is for .*not {other}"):
            address_to_script(address, other)


def test_devnet_accepts_regtest_addresses() -> None:
    for address, script_hex, meta in KEY_IO_VALID:
        if meta["chain"] == "regtest":
            assert address_to_script(address, "devnet").hex() == script_hex


@pytest.mark.parametrize("text", KEY_IO_INVALID, ids=lambda t: t[:24] or "empty")
def test_core_invalid_strings_are_not_addresses_anywhere(text: str) -> None:
    for network in NETWORKS:
        with pytest.raises(AddressError):
            address_to_script(text, network)


@pytest.mark.parametrize("pair", load_json("bitcoin-core-data/base58_encode_decode.json"))
def test_core_base58_pairs_encode_and_decode(pair: list[str]) -> None:
    raw, text = bytes.fromhex(pair[0]), pair[1]
    assert base58_encode(raw) == text
    assert base58_decode(text) == raw


# --- messages ---------------------------------------------------------------------------

REGTEST_ADDR = "bcrt1qp5wnmzck8ralkprp0kcq3ge6fqkfldnvz9kkua"


@pytest.mark.parametrize(
    ("address", "network", "message"),
    [
        (
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
            "regtest",
            "address bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4 is for mainnet, not regtest",
        ),
        (REGTEST_ADDR, "mainnet", "is for regtest/devnet, not mainnet"),
        ("1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo", "signet", "is for mainnet, not signet"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "mainnet", "bad bech32 checksum in bc1q"),
        ("1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mp", "mainnet", "bad base58 checksum in 1FsS"),
        ("1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2m0", "mainnet", "invalid base58 character '0'"),
        ("bcrt1qp5wnmzck8ralkprp0kcq3ge6fqkfldnvz9kkUA", "regtest", "mixes upper and lower case"),
        ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "mainnet", "v0 program of 16 bytes"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh", "mainnet", "must use bech32, not bech32m"),
        (
            "tc1qw508d6qejxtdg4y5r3zarvary0c5xw7kg3g4ty",
            "mainnet",
            "unknown human-readable part 'tc'",
        ),
        ("", "mainnet", "empty address"),
    ],
)
def test_errors_name_what_is_wrong(address: str, network: str, message: str) -> None:
    with pytest.raises(AddressError, match=message.replace("(", r"\(").replace(")", r"\)")):
        address_to_script(address, network)


def test_base58_payload_of_wrong_length_is_refused() -> None:
    with pytest.raises(AddressError, match="decodes to 20 bytes"):
        address_to_script(base58check_encode(bytes(20)), "mainnet")
    with pytest.raises(AddressError, match="unknown version byte 42"):
        address_to_script(base58check_encode(bytes([42]) + bytes(20)), "mainnet")


def test_non_standard_scripts_have_no_address() -> None:
    assert script_to_address(b"\x6a\x04abcd", "mainnet") is None
    assert script_to_address(b"", "mainnet") is None
    assert script_to_address(bytes.fromhex("0015") + bytes(21), "mainnet") is None  # v0, 21 bytes


# --- properties -------------------------------------------------------------------------

NETWORK_NAMES = st.sampled_from(sorted(NETWORKS))


@given(NETWORK_NAMES, st.binary(min_size=20, max_size=20), st.booleans())
def test_base58_addresses_round_trip(network: str, h: bytes, p2sh: bool) -> None:
    params = get_network(network)
    script = (b"\xa9\x14" + h + b"\x87") if p2sh else (b"\x76\xa9\x14" + h + b"\x88\xac")
    address = script_to_address(script, params)
    assert address is not None
    assert address_to_script(address, params) == script


@given(
    NETWORK_NAMES,
    st.integers(min_value=0, max_value=16).flatmap(
        lambda v: st.tuples(
            st.just(v),
            st.sampled_from([20, 32]) if v == 0 else st.integers(min_value=2, max_value=40),
        )
    ),
    st.data(),
)
def test_segwit_addresses_round_trip(
    network: str, vl: tuple[int, int], data: st.DataObject
) -> None:
    version, length = vl
    program = data.draw(st.binary(min_size=length, max_size=length))
    script = witness_script(version, program)
    address = script_to_address(script, network)
    assert address is not None
    assert address_to_script(address, network) == script
    assert address_to_script(address.upper(), network) == script


@given(st.binary(max_size=40))
def test_base58check_round_trips_with_leading_zeros(payload: bytes) -> None:
    assert base58check_decode(base58check_encode(payload)) == payload


@given(st.text(max_size=120), NETWORK_NAMES)
def test_arbitrary_text_only_ever_raises_address_error(text: str, network: str) -> None:
    try:
        script = address_to_script(text, network)
    except AddressError:
        return
    assert script_to_address(script, network) is not None


def _reference_polymod(values: list[int]) -> int:
    """BIP173's polymod exactly as the BIP writes it."""
    generator = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if ((top >> i) & 1) else 0
    return chk


@given(st.lists(st.integers(min_value=0, max_value=31), max_size=120))
def test_table_polymod_equals_the_bips_loop(values: list[int]) -> None:
    from otedama.chain.address import _polymod

    assert _polymod(values) == _reference_polymod(values)


def test_repeated_addresses_are_answered_from_the_cache_and_errors_are_not_cached() -> None:
    from otedama.chain.address import _address_to_script

    address = "bcrt1qsv2hexjrhpa8qwxr4la2nmmkmdh8hxkje996rc"
    first = address_to_script(address, "regtest")
    hits = _address_to_script.cache_info().hits
    assert address_to_script(address, get_network("regtest")) == first
    assert _address_to_script.cache_info().hits == hits + 1
    for _ in range(2):
        with pytest.raises(AddressError, match="is for regtest"):
            address_to_script(address, "mainnet")
