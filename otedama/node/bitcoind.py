"""``BitcoindClient``: a chain view and a wallet view of bitcoind (or the devnet).

The client is put together from three parts: an ``RpcTransport`` (``transport.py``:
HTTP, failover in config order, cookie auth), the ``ChainView`` (``chainview.py``:
templates, block submission, chain queries, readiness) and a ``WalletView``
(``wallet.py``: the wallet RPC the payouts use). By default the wallet is the first chain
daemon's; ``wallet_endpoint`` puts it on another daemon with a transport of its own.
Wallet calls are never failed over nor retried: paying from a second wallet after an
unclear timeout could pay twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime

from otedama.node.chainview import (
    CHAIN_NAMES,
    AddressCheck,
    BlockchainInfo,
    ChainMismatchError,
    ChainView,
    SubmitOutcome,
    SubmitResult,
    chain_name,
)
from otedama.node.rpc import RpcEndpoint
from otedama.node.transport import RpcTransport
from otedama.node.wallet import WalletView, btc_to_satoshis

__all__ = [
    "CHAIN_NAMES",
    "AddressCheck",
    "BitcoindClient",
    "BlockchainInfo",
    "ChainMismatchError",
    "SubmitOutcome",
    "SubmitResult",
    "btc_to_satoshis",
    "chain_name",
]


class BitcoindClient(ChainView):
    """The chain view of ``endpoints`` (failover) with the wallet view at ``.wallet``.

    ``clock`` times the timeouts and back-offs; when ``http_client`` is not given it must
    be the reactor. ``wallet`` names a loaded wallet (``/wallet/<name>``);
    ``wallet_endpoint`` (None: the first of ``endpoints``) is the daemon that holds it.
    The wallet methods (``get_balance``, ``send_many``, ``get_transaction``,
    ``list_transactions``) are also offered here and go to ``.wallet``.
    """

    def __init__(
        self,
        endpoints: Sequence[RpcEndpoint],
        *,
        clock: IReactorTime,
        timeout: float = 30.0,
        http_client: Any = None,
        wallet: str | None = None,
        wallet_endpoint: RpcEndpoint | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        transport = RpcTransport(
            endpoints,
            clock=clock,
            timeout=timeout,
            http_client=http_client,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )
        super().__init__(transport)
        wallet_transport = transport
        if wallet_endpoint is not None:
            wallet_transport = RpcTransport(
                [wallet_endpoint], clock=clock, timeout=timeout, http_client=http_client
            )
        self.wallet = WalletView(wallet_transport, wallet)

    async def wait_until_ready(
        self, expected_network: str, *, retry_initial: float = 1.0, retry_max: float = 60.0
    ) -> BlockchainInfo:
        """The chain daemons' start-up check, then (when the wallet is on a daemon of its
        own) that the wallet daemon runs the same chain."""
        info = await super().wait_until_ready(
            expected_network, retry_initial=retry_initial, retry_max=retry_max
        )
        if self.wallet.transport is not self.transport:
            await self.wallet.check_chain(expected_network)
        return info

    def close(self) -> Deferred[None]:
        """Close idle connections of the chain's and (when apart) the wallet's transport."""
        transports = {id(t): t for t in (self.transport, self.wallet.transport)}
        closing: Deferred[Any] = gatherResults([t.close() for t in transports.values()])
        return closing.addCallback(lambda _: None)

    async def get_balance(self) -> int:
        """``getbalance`` of the wallet, in satoshis."""
        return await self.wallet.get_balance()

    async def send_many(self, amounts: Mapping[str, int], comment: str) -> str:
        """``sendmany`` from the wallet (see :meth:`WalletView.send_many`)."""
        return await self.wallet.send_many(amounts, comment)

    async def get_transaction(self, txid: str) -> dict[str, Any]:
        """``gettransaction`` of the wallet."""
        return await self.wallet.get_transaction(txid)

    async def list_transactions(self, count: int = 10, skip: int = 0) -> list[dict[str, Any]]:
        """``listtransactions`` of the wallet."""
        return await self.wallet.list_transactions(count, skip)
