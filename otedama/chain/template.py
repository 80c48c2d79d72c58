"""A block template from bitcoind's ``getblocktemplate`` reply, checked and converted once.

Hex is decoded here (the JSON edge); hashes become internal byte order, so nothing past
this point needs to know that RPC shows them reversed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from otedama.chain.hashing import sha256d
from otedama.chain.merkle import WITNESS_COMMITMENT_HEADER
from otedama.chain.target import bits_to_target

__all__ = ["BlockTemplate", "TemplateError", "TemplateTx"]


class TemplateError(ValueError):
    """A ``getblocktemplate`` reply that is malformed; the message names the field."""


@dataclass(frozen=True)
class TemplateTx:
    """One template transaction: raw ``data`` (with witness), ``txid`` and ``wtxid``
    (internal order), ``fee`` in satoshis, and Core's ``depends``/``sigops``/``weight``."""

    data: bytes
    txid: bytes
    wtxid: bytes
    fee: int
    depends: tuple[int, ...] = ()
    sigops: int = 0
    weight: int = 0


@dataclass(frozen=True)
class BlockTemplate:
    """What a pool needs from ``getblocktemplate`` to build jobs and blocks.

    ``prev_hash`` is internal order; ``bits`` the compact target as a number and
    ``target`` its decoded value; ``default_witness_commitment`` the output script (bytes)
    or ``None`` when the reply has none.
    """

    version: int
    prev_hash: bytes
    height: int
    bits: int
    target: int
    curtime: int
    mintime: int
    coinbase_value: int
    transactions: tuple[TemplateTx, ...]
    default_witness_commitment: bytes | None
    longpollid: str | None
    rules: tuple[str, ...]
    mutable: tuple[str, ...] = ()
    sigop_limit: int | None = None
    weight_limit: int | None = None

    @property
    def prev_hash_hex(self) -> str:
        """The previous block hash in RPC display order."""
        return self.prev_hash[::-1].hex()

    @property
    def txids(self) -> list[bytes]:
        """Template transactions' txids in template order (for the Stratum branch)."""
        return [tx.txid for tx in self.transactions]

    @property
    def wtxids(self) -> list[bytes]:
        """Template transactions' wtxids in template order (for the witness root)."""
        return [tx.wtxid for tx in self.transactions]

    @property
    def total_fees(self) -> int:
        """Sum of the template transactions' fees (satoshis)."""
        return sum(tx.fee for tx in self.transactions)

    @classmethod
    def from_rpc(cls, reply: Mapping[str, Any]) -> BlockTemplate:
        """Parse and check the ``result`` object of ``getblocktemplate``."""
        if not isinstance(reply, Mapping):
            raise TemplateError(f"getblocktemplate reply must be an object, got {reply!r}")
        bits = int.from_bytes(_hex(reply, "bits", 4), "big")
        try:
            target = bits_to_target(bits)
        except ValueError as e:
            raise TemplateError(f"getblocktemplate field 'bits': {e}") from None
        if "target" in reply:
            given = int.from_bytes(_hex(reply, "target", 32), "big")
            if given != target:
                raise TemplateError(
                    f"getblocktemplate field 'target' {reply['target']!r} does not match "
                    f"bits {bits:08x}"
                )
        commitment = None
        if reply.get("default_witness_commitment") is not None:
            commitment = _hex(reply, "default_witness_commitment", None)
            if len(commitment) < 38 or not commitment.startswith(WITNESS_COMMITMENT_HEADER):
                raise TemplateError(
                    "getblocktemplate field 'default_witness_commitment': "
                    f"{commitment.hex()!r} is not an OP_RETURN aa21a9ed commitment script"
                )
        longpollid = reply.get("longpollid")
        if longpollid is not None and not isinstance(longpollid, str):
            raise TemplateError(
                f"getblocktemplate field 'longpollid': expected a string, got {longpollid!r}"
            )
        raw_txs = reply.get("transactions", [])
        if not isinstance(raw_txs, list):
            raise TemplateError(
                f"getblocktemplate field 'transactions': expected a list, got {raw_txs!r}"
            )
        return cls(
            version=_int(reply, "version", 0, 0xFFFFFFFF),
            prev_hash=_hex(reply, "previousblockhash", 32)[::-1],
            height=_int(reply, "height", 0, None),
            bits=bits,
            target=target,
            curtime=_int(reply, "curtime", 0, 0xFFFFFFFF),
            mintime=_int(reply, "mintime", 0, 0xFFFFFFFF),
            coinbase_value=_int(reply, "coinbasevalue", 0, None),
            transactions=tuple(_tx(raw, i) for i, raw in enumerate(raw_txs)),
            default_witness_commitment=commitment,
            longpollid=longpollid,
            rules=_strings(reply, "rules"),
            mutable=_strings(reply, "mutable"),
            sigop_limit=_int(reply, "sigoplimit", 0, None) if "sigoplimit" in reply else None,
            weight_limit=_int(reply, "weightlimit", 0, None) if "weightlimit" in reply else None,
        )


def _int(obj: Mapping[str, Any], key: str, low: int, high: int | None, where: str = "") -> int:
    name = f"{where}{key}"
    if key not in obj:
        raise TemplateError(f"getblocktemplate field {name!r} is missing")
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TemplateError(f"getblocktemplate field {name!r}: expected an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        raise TemplateError(f"getblocktemplate field {name!r}: {value} is out of range")
    return value


def _hex(obj: Mapping[str, Any], key: str, size: int | None, where: str = "") -> bytes:
    name = f"{where}{key}"
    if key not in obj:
        raise TemplateError(f"getblocktemplate field {name!r} is missing")
    value = obj[key]
    if not isinstance(value, str):
        raise TemplateError(f"getblocktemplate field {name!r}: expected hex, got {value!r}")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise TemplateError(f"getblocktemplate field {name!r}: {value!r} is not hex") from None
    if size is not None and len(data) != size:
        raise TemplateError(
            f"getblocktemplate field {name!r}: expected {size} bytes, got {len(data)}"
        )
    return data


def _strings(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TemplateError(
            f"getblocktemplate field {key!r}: expected a list of strings, got {value!r}"
        )
    return tuple(value)


def _tx(raw: Any, index: int) -> TemplateTx:
    where = f"transactions[{index}]."
    if not isinstance(raw, Mapping):
        raise TemplateError(f"getblocktemplate field 'transactions[{index}]' must be an object")
    data = _hex(raw, "data", None, where)
    if not data:
        raise TemplateError(f"getblocktemplate field '{where}data' is empty")
    wtxid = sha256d(data)
    if "hash" in raw and _hex(raw, "hash", 32, where)[::-1] != wtxid:
        raise TemplateError(
            f"getblocktemplate field '{where}hash' {raw['hash']!r} is not the hash of its data"
        )
    depends = raw.get("depends", [])
    if not isinstance(depends, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= index for d in depends
    ):
        raise TemplateError(
            f"getblocktemplate field '{where}depends': expected earlier 1-based indexes, "
            f"got {depends!r}"
        )
    return TemplateTx(
        data=data,
        txid=_hex(raw, "txid", 32, where)[::-1],
        wtxid=wtxid,
        fee=_int(raw, "fee", 0, None, where),
        depends=tuple(depends),
        sigops=_int(raw, "sigops", 0, None, where) if "sigops" in raw else 0,
        weight=_int(raw, "weight", 0, None, where) if "weight" in raw else 0,
    )
