"""BlockTemplate.from_rpc on Core's real getblocktemplate replies."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from otedama.chain.template import BlockTemplate, TemplateError

from .conftest import load_json

LOW = load_json("bitcoind/low-heights.json")["heights"]
CASES = load_json("bitcoind/templates-with-txs.json")["cases"]


def test_low_height_template_fields_are_converted() -> None:
    reply = LOW[0]["getblocktemplate"]
    t = BlockTemplate.from_rpc(reply)
    assert t.height == 1
    assert t.version == 0x20000000
    assert t.bits == 0x207FFFFF
    assert t.target == int(reply["target"], 16)
    assert t.prev_hash[::-1].hex() == reply["previousblockhash"]
    assert t.prev_hash_hex == reply["previousblockhash"]
    assert t.coinbase_value == 5_000_000_000
    assert t.curtime == reply["curtime"] and t.mintime == reply["mintime"]
    assert t.longpollid == reply["longpollid"]
    assert t.rules == ("csv", "!segwit", "taproot")
    assert t.transactions == ()
    assert t.default_witness_commitment == bytes.fromhex(reply["default_witness_commitment"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_template_transactions_keep_order_hashes_and_fees(case: dict[str, Any]) -> None:
    reply = case["getblocktemplate"]
    t = BlockTemplate.from_rpc(reply)
    assert [tx.txid[::-1].hex() for tx in t.transactions] == case["template_order_txids"]
    assert [tx.wtxid[::-1].hex() for tx in t.transactions] == [
        e["hash"] for e in reply["transactions"]
    ]
    assert [tx.data.hex() for tx in t.transactions] == [e["data"] for e in reply["transactions"]]
    assert t.total_fees == case["template_fees_sat"]
    assert t.coinbase_value == case["template_coinbasevalue_sat"]
    assert [list(tx.depends) for tx in t.transactions] == [
        e["depends"] for e in reply["transactions"]
    ]


def _broken(change: dict[str, Any], remove: tuple[str, ...] = ()) -> dict[str, Any]:
    reply: dict[str, Any] = copy.deepcopy(CASES[0]["getblocktemplate"])
    reply.update(change)
    for key in remove:
        del reply[key]
    return reply


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (_broken({"bits": "zz"}), "'bits': 'zz' is not hex"),
        (_broken({"bits": "207fff"}), "'bits': expected 4 bytes"),
        (_broken({"bits": "04923456"}), "'bits': .*negative"),
        (_broken({}, remove=("height",)), "'height' is missing"),
        (_broken({"height": "5"}), "'height': expected an integer"),
        (_broken({"height": True}), "'height': expected an integer"),
        (_broken({"coinbasevalue": -1}), "'coinbasevalue': -1 is out of range"),
        (_broken({"previousblockhash": "00"}), "'previousblockhash': expected 32 bytes"),
        (_broken({"target": "00" * 32}), "'target' .* does not match bits"),
        (_broken({"transactions": {}}), "'transactions': expected a list"),
        (_broken({"rules": "segwit"}), "'rules': expected a list of strings"),
        (_broken({"longpollid": 5}), "'longpollid': expected a string"),
        (_broken({"default_witness_commitment": "xyz"}), "'default_witness_commitment'"),
        (_broken({"default_witness_commitment": "6a00"}), "is not an OP_RETURN aa21a9ed"),
    ],
)
def test_malformed_reply_names_the_field(reply: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        BlockTemplate.from_rpc(reply)


def test_transaction_whose_hash_does_not_match_its_data_is_refused() -> None:
    reply = copy.deepcopy(CASES[0]["getblocktemplate"])
    reply["transactions"][0]["hash"] = "00" * 32
    with pytest.raises(TemplateError, match=r"transactions\[0\]\.hash"):
        BlockTemplate.from_rpc(reply)


def test_transaction_missing_fee_or_with_bad_depends_is_refused() -> None:
    reply = copy.deepcopy(CASES[1]["getblocktemplate"])
    del reply["transactions"][1]["fee"]
    with pytest.raises(TemplateError, match=r"transactions\[1\]\.fee' is missing"):
        BlockTemplate.from_rpc(reply)
    reply = copy.deepcopy(CASES[1]["getblocktemplate"])
    reply["transactions"][0]["depends"] = [1]
    with pytest.raises(TemplateError, match=r"transactions\[0\]\.depends"):
        BlockTemplate.from_rpc(reply)


def test_non_object_reply_is_refused() -> None:
    with pytest.raises(TemplateError, match="must be an object"):
        BlockTemplate.from_rpc([])  # type: ignore[arg-type]
