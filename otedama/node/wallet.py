"""The wallet view of a daemon: the wallet RPC the payouts use.

It may be a different daemon than the chain's (``chain.wallet`` in the config): payouts
then go to that wallet while templates and blocks go to the chain daemons. Wallet calls go
to the first endpoint of their transport only and are never retried or failed over:
paying from a second wallet after an unclear timeout could pay twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from twisted.logger import Logger

from otedama.chain.rpcjson import Amount, AmountError, btc_to_sats
from otedama.node.chainview import (
    BlockchainInfo,
    ChainMismatchError,
    chain_name,
    check_hash,
    check_int,
    hash_result,
)
from otedama.node.rpc import NodeError, RpcAuthError, RpcProtocolError
from otedama.node.transport import RpcTransport

__all__ = ["WalletView", "btc_to_satoshis"]


def btc_to_satoshis(value: Any) -> int:
    """An exact amount in BTC from a reply as integer satoshis, or :class:`RpcProtocolError`."""
    try:
        return btc_to_sats(value)
    except AmountError as e:
        raise RpcProtocolError(str(e)) from None


class WalletView:
    """The wallet side of a daemon over ``transport``; ``name`` picks a loaded wallet
    (``/wallet/<name>``), None the daemon's default wallet."""

    log = Logger()

    def __init__(self, transport: RpcTransport, name: str | None = None) -> None:
        self.transport = transport
        self.name = name
        self._path = "" if name is None else "/wallet/" + quote(name, safe="")

    @property
    def url(self) -> str:
        """Where the wallet calls go."""
        return self.transport.endpoints[0].url.rstrip("/") + self._path

    async def _call(self, method: str, params: list[Any]) -> Any:
        return await self.transport.call_first(method, params, path=self._path)

    async def check_chain(self, network: str) -> None:
        """Start-up check of a wallet on a daemon of its own: refuse one on another chain.

        Raises :class:`ChainMismatchError` (it would pay on another chain) or
        :class:`RpcAuthError` (wrong credentials need an operator). A wallet daemon that
        cannot be reached yet is only a warning: payouts wait for it and retry.
        """
        want = chain_name(network)
        try:
            reply = await self.transport.call_first("getblockchaininfo", [])
            chain = BlockchainInfo.from_rpc(reply).chain
        except RpcAuthError:
            raise
        except NodeError as e:
            self.log.warn(
                "wallet bitcoind at {url} could not be checked ({error}); payouts wait for it",
                url=self.url,
                error=str(e),
            )
            return
        if chain != want:
            raise ChainMismatchError(
                f"wallet bitcoind at {self.url} runs chain {chain!r}, but the node is "
                f"configured for network {network!r} (chain {want!r}); point chain.wallet.url "
                "at a daemon on that chain"
            )

    async def get_balance(self) -> int:
        """``getbalance``: the wallet's trusted balance in satoshis."""
        return btc_to_satoshis(await self._call("getbalance", []))

    async def send_many(self, amounts: Mapping[str, int], comment: str) -> str:
        """``sendmany`` from the wallet: ``{address: satoshis}``; returns the txid.

        ``comment`` is stored with the wallet transaction (the ledger puts its payout batch
        id there, to find the payment again after a crash). A :class:`RpcTimeout` or a
        :class:`RpcConnectionError` with ``request_sent`` leaves the outcome unknown: look
        the comment up with :meth:`list_transactions` before trying again.
        """
        if not amounts:
            raise ValueError("send_many needs at least one address and amount")
        outputs: dict[str, Amount] = {}
        for address, sats in amounts.items():
            if not isinstance(address, str) or not address:
                raise ValueError(f"send_many: bad address {address!r}")
            if not isinstance(sats, int) or isinstance(sats, bool) or sats <= 0:
                raise ValueError(
                    f"send_many: amount for {address} must be a positive integer of "
                    f"satoshis, got {sats!r}"
                )
            outputs[address] = Amount(sats)
        if not isinstance(comment, str):
            raise TypeError(f"send_many: comment must be a string, got {comment!r}")
        txid = await self._call("sendmany", ["", outputs, 1, comment])
        txid = hash_result(txid, "sendmany")
        self.log.info(
            "sent {total} sat to {count} addresses in transaction {txid} ({comment})",
            total=sum(amounts.values()),
            count=len(amounts),
            txid=txid,
            comment=comment,
        )
        return txid

    async def get_transaction(self, txid: str) -> dict[str, Any]:
        """``gettransaction``: the wallet's view of ``txid`` (amounts as ``Decimal`` BTC)."""
        reply = await self._call("gettransaction", [check_hash(txid)])
        if not isinstance(reply, dict):
            raise RpcProtocolError(f"gettransaction: expected an object, got {reply!r}")
        return reply

    async def list_transactions(self, count: int = 10, skip: int = 0) -> list[dict[str, Any]]:
        """``listtransactions "*" count skip``: recent wallet entries, oldest first."""
        check_int(count, "count")
        check_int(skip, "skip")
        reply = await self._call("listtransactions", ["*", count, skip])
        if not isinstance(reply, list) or not all(isinstance(e, dict) for e in reply):
            raise RpcProtocolError(f"listtransactions: expected a list of objects, got {reply!r}")
        return reply
