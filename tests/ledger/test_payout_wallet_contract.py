"""The wallet contract payouts rely on, checked on the fake wallet and on a real devnet
wallet through ``BitcoindClient``: the same tests, so the fake stands in honestly.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from payout_fake_wallet import COIN, FileWallet
from payout_support import devnet_address

from otedama.devnet.service import start_devnet
from otedama.ledger.payouts import Wallet, is_definite_failure, sent_outputs
from otedama.node.bitcoind import BitcoindClient
from otedama.node.rpc import RpcEndpoint

EASY = Fraction(1, 10**9)


@dataclass
class WalletUnderTest:
    """A wallet and how to mine a block for it."""

    wallet: Wallet
    mine: Callable[[], Awaitable[None]]


@pytest_twisted.async_yield_fixture(params=["fake", "devnet"])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WalletUnderTest]:
    if request.param == "fake":
        fake = FileWallet(tmp_path / "wallet.json", balance=50 * COIN)

        async def mine_fake() -> None:
            fake.mine(1)

        yield WalletUnderTest(fake, mine_fake)
        return
    from twisted.internet import reactor

    handle = await start_devnet(reactor, "tcp:0:interface=127.0.0.1", EASY, tmp_path / "devnet")
    client = BitcoindClient([RpcEndpoint(handle.url)], clock=reactor)
    # Past coinbase maturity: the first five blocks' coins are spendable (the devnet, like
    # sendmany's minconf 1, does not spend its own unconfirmed change).
    await client.call("generatetoaddress", 105, await client.call("getnewaddress"))

    async def mine_devnet() -> None:
        await client.call("generatetoaddress", 1, devnet_address())

    try:
        yield WalletUnderTest(client, mine_devnet)
    finally:
        await client.close()
        await handle.stop()


def sends(entries: list[Any]) -> list[Any]:
    return [e for e in entries if e.get("category") == "send"]


@pytest_twisted.ensureDeferred
async def test_send_many_pays_each_address_in_one_transaction_listed_with_its_comment(subject):
    a, b = devnet_address(), devnet_address()
    txid = await subject.wallet.send_many({a: 150_000, b: 250_000}, "otedama-payout-7")

    assert re.fullmatch(r"[0-9a-f]{64}", txid)
    listed = sends(list(await subject.wallet.list_transactions(50)))
    ours = [e for e in listed if e["txid"] == txid]
    assert {e["address"]: e["amount"] for e in ours} == {
        a: Decimal("-0.0015"),
        b: Decimal("-0.0025"),
    }
    assert {e["comment"] for e in ours} == {"otedama-payout-7"}


@pytest_twisted.ensureDeferred
async def test_get_transaction_shows_the_outputs_and_confirmations_after_a_block(subject):
    a = devnet_address()
    txid = await subject.wallet.send_many({a: 123_456}, "otedama-payout-1")

    before = await subject.wallet.get_transaction(txid)
    assert before["confirmations"] == 0
    assert sent_outputs(before["details"]) == {a: 123_456}
    await subject.mine()
    after = await subject.wallet.get_transaction(txid)
    assert after["confirmations"] >= 1


@pytest_twisted.ensureDeferred
async def test_list_transactions_gives_the_latest_entries_oldest_first(subject):
    txids = [
        await subject.wallet.send_many({devnet_address(): 100_000}, f"otedama-payout-{n}")
        for n in range(3)
    ]
    latest_two = sends(list(await subject.wallet.list_transactions(2)))
    assert [e["txid"] for e in latest_two] == txids[1:]


@pytest_twisted.ensureDeferred
async def test_insufficient_funds_is_a_definite_refusal_and_sends_nothing(subject):
    with pytest.raises(Exception) as refused:
        await subject.wallet.send_many({devnet_address(): 10**6 * COIN}, "otedama-payout-1")
    assert refused.value.code == -6  # type: ignore[attr-defined]
    assert is_definite_failure(refused.value)
    assert sends(list(await subject.wallet.list_transactions(50))) == []


@pytest_twisted.ensureDeferred
async def test_invalid_address_is_a_definite_refusal_naming_it(subject):
    with pytest.raises(Exception) as refused:
        await subject.wallet.send_many({"bcrt1qnotanaddress": 100_000}, "otedama-payout-1")
    assert refused.value.code == -5  # type: ignore[attr-defined]
    assert "bcrt1qnotanaddress" in str(refused.value)
    assert is_definite_failure(refused.value)


@pytest_twisted.ensureDeferred
async def test_unknown_txid_is_refused_with_code_minus_5(subject):
    with pytest.raises(Exception) as refused:
        await subject.wallet.get_transaction("ab" * 32)
    assert refused.value.code == -5  # type: ignore[attr-defined]
