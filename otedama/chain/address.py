"""Bitcoin addresses to scriptPubKeys and back: base58check (P2PKH/P2SH), bech32 (witness
v0) and bech32m (witness v1+, BIP350).

Decoding checks everything a wallet would: checksum, network prefix/HRP, witness version
against the checksum variant, program length, case. ``AddressError`` says which check
failed, with the address, so a misconfigured payout address is caught at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from functools import lru_cache
from typing import cast

from otedama.chain.hashing import sha256d
from otedama.chain.params import NETWORKS, NetworkParams, get_network

__all__ = [
    "AddressError",
    "Encoding",
    "address_to_script",
    "base58_decode",
    "base58_encode",
    "base58check_decode",
    "base58check_encode",
    "bech32_decode",
    "bech32_encode",
    "decode_segwit_address",
    "encode_segwit_address",
    "script_to_address",
    "witness_script",
]


class AddressError(ValueError):
    """An address that does not decode for the network; the message names what is wrong."""


class Encoding(Enum):
    """The two bech32 checksum variants."""

    BECH32 = 1
    BECH32M = 0x2BC830A3


_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_INDEX = {c: i for i, c in enumerate(_BECH32_CHARSET)}
_BECH32_MAX_LEN = 90
_MAX_ADDRESS_LEN = 100


def _reduce_xor(values: Iterable[int]) -> int:
    result = 0
    for value in values:
        result ^= value
    return result


def _show(text: str) -> str:
    """The address as quoted in messages (cut when absurdly long)."""
    return text if len(text) <= 100 else text[:90] + "..."


def _networks_with_hrp(hrp: str) -> str:
    return "/".join(p.name for p in NETWORKS.values() if p.bech32_hrp == hrp)


def _networks_with_prefix(version: int) -> str:
    return "/".join(p.name for p in NETWORKS.values() if version in (p.p2pkh_prefix, p.p2sh_prefix))


def _params(network: NetworkParams | str) -> NetworkParams:
    return network if isinstance(network, NetworkParams) else get_network(network)


# --- base58 --------------------------------------------------------------------------


def base58_encode(data: bytes) -> str:
    """Base58 (Bitcoin alphabet); each leading zero byte becomes a ``1``."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, rem = divmod(n, 58)
        out.append(_B58_ALPHABET[rem])
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(out))


def base58_decode(text: str) -> bytes:
    """Decode base58; raises ``AddressError`` naming the first character not in the alphabet."""
    n = 0
    for pos, char in enumerate(text):
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise AddressError(
                f"invalid base58 character {char!r} at position {pos} in {_show(text)}"
            )
        n = n * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * zeros + body


def base58check_encode(payload: bytes) -> str:
    """Base58 of ``payload`` followed by its 4-byte sha256d checksum."""
    return base58_encode(payload + sha256d(payload)[:4])


def base58check_decode(text: str) -> bytes:
    """The payload of a base58check string, checksum verified."""
    raw = base58_decode(text)
    if len(raw) < 4:
        raise AddressError(f"{_show(text)} is too short for a base58check checksum")
    payload, checksum = raw[:-4], raw[-4:]
    if sha256d(payload)[:4] != checksum:
        raise AddressError(f"bad base58 checksum in {_show(text)}")
    return payload


# --- bech32 / bech32m ----------------------------------------------------------------


_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
# The XOR of the generator terms selected by each 5-bit top value: one lookup per
# character instead of five tests (BIP173's loop, unrolled).
_POLYMOD_TABLE = tuple(
    _reduce_xor(_GENERATOR[i] for i in range(5) if (top >> i) & 1) for top in range(32)
)


def _polymod(values: Sequence[int]) -> int:
    table = _POLYMOD_TABLE
    chk = 1
    for value in values:
        chk = ((chk & 0x1FFFFFF) << 5 ^ value) ^ table[chk >> 25]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def bech32_encode(hrp: str, data: Sequence[int], encoding: Encoding) -> str:
    """Encode 5-bit ``data`` under ``hrp`` with the ``encoding`` checksum (lower case)."""
    values = _hrp_expand(hrp) + list(data)
    polymod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ encoding.value
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[d] for d in [*data, *checksum])


def bech32_decode(text: str) -> tuple[str, list[int], Encoding]:
    """Split a bech32/bech32m string into (hrp, 5-bit data without checksum, encoding)."""
    shown = _show(text)
    if len(text) > _BECH32_MAX_LEN:
        raise AddressError(f"{shown} is {len(text)} characters, over the bech32 limit of 90")
    if not (text.isascii() and text.isprintable()) or " " in text:
        for pos, char in enumerate(text):
            if not 33 <= ord(char) <= 126:
                raise AddressError(f"invalid character {char!r} at position {pos} in {shown}")
    if text.lower() != text and text.upper() != text:
        raise AddressError(f"{shown} mixes upper and lower case")
    lowered = text.lower()
    sep = lowered.rfind("1")
    if sep < 0:
        raise AddressError(f"{shown} has no '1' separator")
    if sep == 0:
        raise AddressError(f"{shown} has an empty human-readable part")
    if len(lowered) - sep - 1 < 6:
        raise AddressError(f"{shown} is too short for a bech32 checksum")
    hrp = lowered[:sep]
    index = _BECH32_INDEX
    found = [index.get(char) for char in lowered[sep + 1 :]]
    if None in found:
        pos = sep + 1 + found.index(None)
        raise AddressError(f"invalid bech32 character {text[pos]!r} at position {pos} in {shown}")
    data = cast(list[int], found)
    check = _polymod(_hrp_expand(hrp) + data)
    for encoding in Encoding:
        if check == encoding.value:
            return hrp, data[:-6], encoding
    raise AddressError(f"bad bech32 checksum in {shown}")


def _convert_bits(data: Sequence[int], from_bits: int, to_bits: int, pad: bool) -> list[int] | None:
    acc = 0
    bits = 0
    out = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        return None
    return out


def _check_program(version: int, program: bytes, shown: str) -> None:
    if not 0 <= version <= 16:
        raise AddressError(f"invalid witness version {version} in {shown} (must be 0-16)")
    if not 2 <= len(program) <= 40:
        raise AddressError(
            f"witness program of {len(program)} bytes in {shown} (must be 2-40 bytes)"
        )
    if version == 0 and len(program) not in (20, 32):
        raise AddressError(
            f"witness v0 program of {len(program)} bytes in {shown} "
            "(must be 20 for P2WPKH or 32 for P2WSH)"
        )


def encode_segwit_address(hrp: str, version: int, program: bytes) -> str:
    """A segwit address: bech32 for version 0, bech32m for 1-16."""
    if hrp != hrp.lower():
        raise AddressError(f"human-readable part {hrp!r} must be lower case")
    _check_program(version, program, f"witness v{version} program {program.hex()}")
    data = _convert_bits(program, 8, 5, True)
    assert data is not None  # padding always succeeds
    encoding = Encoding.BECH32 if version == 0 else Encoding.BECH32M
    return bech32_encode(hrp, [version, *data], encoding)


def decode_segwit_address(hrp: str, address: str) -> tuple[int, bytes]:
    """(witness version, program) of a segwit ``address`` that must carry ``hrp``."""
    return _segwit_program(hrp, address, bech32_decode(address))


def _segwit_program(
    hrp: str, address: str, decoded: tuple[str, list[int], Encoding]
) -> tuple[int, bytes]:
    shown = _show(address)
    got_hrp, data, encoding = decoded
    if got_hrp != hrp:
        raise AddressError(f"address {shown} has human-readable part {got_hrp!r}, expected {hrp!r}")
    if not data:
        raise AddressError(f"address {shown} has an empty data section (no witness version)")
    version = data[0]
    if version > 16:
        raise AddressError(f"invalid witness version {version} in {shown} (must be 0-16)")
    converted = _convert_bits(data[1:], 5, 8, False)
    if converted is None:
        raise AddressError(f"invalid padding in the witness program of {shown}")
    program = bytes(converted)
    _check_program(version, program, shown)
    if version == 0 and encoding is not Encoding.BECH32:
        raise AddressError(f"witness v0 address {shown} must use bech32, not bech32m")
    if version > 0 and encoding is not Encoding.BECH32M:
        raise AddressError(
            f"witness v{version} address {shown} must use bech32m (BIP350), not bech32"
        )
    return version, program


# --- scripts -------------------------------------------------------------------------


def witness_script(version: int, program: bytes) -> bytes:
    """scriptPubKey of a witness program: ``OP_n <program>``."""
    _check_program(version, program, f"witness v{version} program {program.hex()}")
    return bytes((0x50 + version if version else 0, len(program))) + program


def _p2pkh(h: bytes) -> bytes:
    return b"\x76\xa9\x14" + h + b"\x88\xac"


def _p2sh(h: bytes) -> bytes:
    return b"\xa9\x14" + h + b"\x87"


def _looks_segwit(lowered: str) -> bool:
    return any(lowered.startswith(p.bech32_hrp + "1") for p in NETWORKS.values())


def address_to_script(address: str, network: NetworkParams | str) -> bytes:
    """The scriptPubKey paying ``address`` on ``network`` (a ``NetworkParams`` or a name).

    Valid addresses are remembered (a few thousand): a farm reconnecting at once
    authorizes with the same few addresses over and over.
    """
    params = _params(network)
    if not isinstance(address, str):
        raise AddressError(f"address must be a string, got {address!r}")
    return _address_to_script(address, params)


@lru_cache(maxsize=4096)
def _address_to_script(address: str, params: NetworkParams) -> bytes:
    if not address:
        raise AddressError("empty address")
    shown = _show(address)
    if len(address) > _MAX_ADDRESS_LEN:
        raise AddressError(f"address {shown} is {len(address)} characters, too long")
    try:
        decoded = bech32_decode(address)
    except AddressError:
        if _looks_segwit(address.lower()):
            raise
        return _base58_to_script(address, params)
    hrp = decoded[0]
    if hrp != params.bech32_hrp:
        owners = _networks_with_hrp(hrp)
        if owners:
            raise AddressError(f"address {shown} is for {owners}, not {params.name}")
        raise AddressError(
            f"address {shown} has unknown human-readable part {hrp!r}; "
            f"{params.name} addresses start with {params.bech32_hrp}1"
        )
    return witness_script(*_segwit_program(hrp, address, decoded))


def _base58_to_script(address: str, params: NetworkParams) -> bytes:
    shown = _show(address)
    payload = base58check_decode(address)
    if len(payload) != 21:
        raise AddressError(
            f"address {shown} decodes to {len(payload)} bytes; a P2PKH/P2SH address is 21 "
            "(version byte and 20-byte hash)"
        )
    version, h = payload[0], payload[1:]
    if version == params.p2pkh_prefix:
        return _p2pkh(h)
    if version == params.p2sh_prefix:
        return _p2sh(h)
    owners = _networks_with_prefix(version)
    if owners:
        raise AddressError(f"address {shown} is for {owners}, not {params.name}")
    raise AddressError(f"address {shown} has unknown version byte {version}")


def script_to_address(script: bytes, network: NetworkParams | str) -> str | None:
    """The address of a standard scriptPubKey (P2PKH, P2SH, witness v0-16), else ``None``."""
    params = _params(network)
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return base58check_encode(bytes((params.p2pkh_prefix,)) + script[3:23])
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[22:] == b"\x87":
        return base58check_encode(bytes((params.p2sh_prefix,)) + script[2:22])
    if 4 <= len(script) <= 42 and script[1] == len(script) - 2:
        op = script[0]
        if op == 0 or 0x51 <= op <= 0x60:
            version = op - 0x50 if op else 0
            try:
                return encode_segwit_address(params.bech32_hrp, version, script[2:])
            except AddressError:
                return None
    return None
