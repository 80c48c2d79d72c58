"""Asynchronous client for bitcoind's JSON-RPC (and the devnet, which speaks the same subset).

One client talks to one or more daemons. Calls go to the first endpoint in config order
that is not backing off; an endpoint that fails at the transport level (refused, timed out,
a reply that is not JSON-RPC, refused credentials) backs off and the call moves on to the
next one, with a log line when the client switches. A JSON-RPC error reply is an answer,
not a failure, and never moves the call. Wallet calls go to the first endpoint only and
are never retried elsewhere: paying from a second wallet after an unclear timeout could pay
twice.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from otedama.chain.hashing import sha256d
from otedama.chain.rpcjson import Amount
from otedama.chain.template import BlockTemplate, TemplateError
from otedama.node.rpc import (
    RPC_IN_WARMUP,
    NodeError,
    RpcAuthError,
    RpcConnectionError,
    RpcEndpoint,
    RpcError,
    RpcProtocolError,
    RpcTimeout,
    backoff_delay,
    decode_reply,
    encode_request,
)

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

COIN = 100_000_000
RPC_DESERIALIZATION_ERROR = -22

#: Otedama's network names -> the ``chain`` that ``getblockchaininfo`` reports.
CHAIN_NAMES: Mapping[str, str] = {
    "mainnet": "main",
    "testnet": "test",
    "testnet4": "testnet4",
    "signet": "signet",
    "regtest": "regtest",
    "devnet": "devnet",
}

#: Chains whose fresh node stays in "initial block download" until someone mines on it.
_LOCAL_CHAINS = frozenset({"regtest", "devnet"})

_HASH_HEX = re.compile(r"[0-9a-f]{64}")


def chain_name(network: str) -> str:
    """The ``getblockchaininfo`` chain name for a configured network name."""
    try:
        return CHAIN_NAMES[network]
    except KeyError:
        raise ValueError(
            f"unknown network {network!r}; expected one of {', '.join(CHAIN_NAMES)}"
        ) from None


class ChainMismatchError(NodeError):
    """The daemon runs a different chain than the configured network: refuse to start."""


@dataclass(frozen=True)
class BlockchainInfo:
    """The parts of ``getblockchaininfo`` the node uses."""

    chain: str
    blocks: int
    headers: int
    best_block_hash: str
    initial_block_download: bool
    verification_progress: Decimal | None

    @classmethod
    def from_rpc(cls, reply: Any) -> BlockchainInfo:
        """Check and convert a ``getblockchaininfo`` result."""
        if not isinstance(reply, dict):
            raise RpcProtocolError(f"getblockchaininfo: expected an object, got {reply!r}")
        chain = _field(reply, "chain", str, "getblockchaininfo")
        blocks = _field(reply, "blocks", int, "getblockchaininfo")
        progress = reply.get("verificationprogress")
        if progress is not None and (
            isinstance(progress, bool) or not isinstance(progress, int | Decimal)
        ):
            raise RpcProtocolError(
                f"getblockchaininfo field 'verificationprogress': not a number: {progress!r}"
            )
        return cls(
            chain=chain,
            blocks=blocks,
            headers=_field(reply, "headers", int, "getblockchaininfo", blocks),
            best_block_hash=_hash_hex(reply.get("bestblockhash"), "getblockchaininfo"),
            initial_block_download=_field(
                reply, "initialblockdownload", bool, "getblockchaininfo", False
            ),
            verification_progress=None if progress is None else Decimal(progress),
        )


class SubmitOutcome(Enum):
    """What ``submitblock`` said about a block."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    INCONCLUSIVE = "inconclusive"
    REJECTED = "rejected"


@dataclass(frozen=True)
class SubmitResult:
    """A ``submitblock`` verdict: ``outcome`` and Core's ``reason`` string (None if accepted).

    ``duplicate`` means the daemon already had this block; ``inconclusive`` that it is
    valid but not (yet) on the best chain; every other string is a rejection reason
    (``bad-txnmrklroot``, ``high-hash``, ...), and error -22 is rejected with Core's message.
    """

    outcome: SubmitOutcome
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        """True only when the daemon took the block as new (reply ``null``)."""
        return self.outcome is SubmitOutcome.ACCEPTED

    @classmethod
    def from_reply(cls, result: Any) -> SubmitResult:
        """Map a ``submitblock`` result (``null`` or a string) to its outcome."""
        if result is None:
            return cls(SubmitOutcome.ACCEPTED)
        if not isinstance(result, str):
            raise RpcProtocolError(f"submitblock: expected null or a string, got {result!r}")
        if result == "duplicate":
            return cls(SubmitOutcome.DUPLICATE, result)
        if result.startswith("inconclusive") or result == "duplicate-inconclusive":
            return cls(SubmitOutcome.INCONCLUSIVE, result)
        return cls(SubmitOutcome.REJECTED, result)


@dataclass(frozen=True)
class AddressCheck:
    """``validateaddress``: whether the daemon accepts ``address`` for its chain, its
    output script when valid, and Core's explanation when not."""

    address: str
    valid: bool
    script_pubkey: bytes | None
    error: str | None


def btc_to_satoshis(value: Any) -> int:
    """An exact amount in BTC from a reply (``Decimal`` or int) as integer satoshis."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise RpcProtocolError(f"expected an amount in BTC, got {value!r}")
    sats = Decimal(value).scaleb(8)
    if not sats.is_finite() or sats != sats.to_integral_value():
        raise RpcProtocolError(f"amount {value} BTC is not a whole number of satoshis")
    return int(sats)


@dataclass
class _EndpointState:
    endpoint: RpcEndpoint
    failures: int = 0
    retry_at: float = 0.0
    cookie_auth: bytes | None = None

    def authorization(self) -> bytes | None:
        if self.endpoint.cookie_file is None:
            return self.endpoint.static_authorization()
        if self.cookie_auth is None:
            self.cookie_auth = self.endpoint.read_cookie()
        return self.cookie_auth


def _quiet_client_factory() -> Any:
    from twisted.web.client import _HTTP11ClientFactory

    return type("_QuietClientFactory", (_HTTP11ClientFactory,), {"noisy": False})


_QuietClientFactory: Any = _quiet_client_factory()


class BitcoindClient:
    """JSON-RPC client for one or more bitcoind (or devnet) endpoints, in failover order.

    ``clock`` times the timeouts and back-offs; when ``http_client`` (a ``treq``
    ``HTTPClient``) is not given, ``clock`` must be the reactor, and a persistent
    connection pool is used. ``wallet`` names a loaded wallet (``/wallet/<name>``) for the
    wallet calls. Call :meth:`close` on shutdown to drop idle connections.
    """

    log = Logger()

    def __init__(
        self,
        endpoints: Sequence[RpcEndpoint],
        *,
        clock: IReactorTime,
        timeout: float = 30.0,
        http_client: Any = None,
        wallet: str | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        if not endpoints:
            raise ValueError("BitcoindClient needs at least one RPC endpoint")
        if timeout <= 0:
            raise ValueError(f"bitcoind RPC timeout must be positive, got {timeout!r}")
        self._states = [_EndpointState(e) for e in endpoints]
        # zope interfaces do not type-check method calls without the mypy-zope plugin
        self._clock: Any = clock
        self._timeout = timeout
        self._wallet_path = "" if wallet is None else "/wallet/" + quote(wallet, safe="")
        self._backoff = (backoff_initial, backoff_max)
        self._ids = itertools.count(1)
        self._active = 0
        self._chain: str | None = None
        self._pool: Any = None
        if http_client is None:
            http_client = self._default_http_client(clock)
        self._http = http_client

    def _default_http_client(self, reactor: Any) -> Any:
        from treq.client import HTTPClient
        from twisted.internet.interfaces import IReactorTCP
        from twisted.web.client import Agent, HTTPConnectionPool

        if not IReactorTCP.providedBy(reactor):
            raise TypeError(
                f"BitcoindClient: clock {reactor!r} cannot make connections; pass the reactor "
                "as clock, or an http_client"
            )
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 4
        # bitcoind closes idle connections after -rpcservertimeout (30 s by default);
        # drop ours first so a request never goes out on a connection being closed.
        pool.cachedConnectionTimeout = 20
        pool._factory = _QuietClientFactory  # no "Starting factory" line per connection
        self._pool = pool
        agent: Any = Agent(reactor, connectTimeout=self._timeout, pool=pool)
        return HTTPClient(agent)

    @property
    def endpoints(self) -> tuple[RpcEndpoint, ...]:
        """The endpoints in config (failover) order."""
        return tuple(s.endpoint for s in self._states)

    @property
    def active_url(self) -> str:
        """The URL of the endpoint that answered last."""
        return self._states[self._active].endpoint.url

    def close(self) -> Deferred[None]:
        """Close idle persistent connections (the node's shutdown calls this)."""
        if self._pool is None:
            return succeed(None)
        result: Deferred[None] = self._pool.closeCachedConnections()
        return result

    # -- calls ---------------------------------------------------------------------------

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        """Call ``method`` with failover; return its ``result`` or raise a :class:`NodeError`."""
        return await self._call(method, list(params), timeout=timeout)

    async def get_blockchain_info(self) -> BlockchainInfo:
        """``getblockchaininfo``; also tells the client which chain (and rules) to use."""
        info = BlockchainInfo.from_rpc(await self._call("getblockchaininfo", []))
        self._chain = info.chain
        return info

    async def wait_until_ready(
        self, expected_network: str, *, retry_initial: float = 1.0, retry_max: float = 60.0
    ) -> BlockchainInfo:
        """Start-up check: the daemon is reachable, on ``expected_network``, and synced.

        Waits (logging, backing off) while the daemon is unreachable, warming up or in
        initial block download; raises :class:`ChainMismatchError` when it runs another
        chain and :class:`RpcAuthError` for wrong credentials. Fresh regtest and devnet
        chains report initial block download until a block is mined, so they are not
        waited for.
        """
        want = chain_name(expected_network)
        attempt = 0
        while True:
            try:
                info = await self.get_blockchain_info()
            except (RpcAuthError, ChainMismatchError):
                raise
            except NodeError as e:
                if isinstance(e, RpcError) and e.code != RPC_IN_WARMUP:
                    raise
                attempt += 1
                delay = backoff_delay(attempt, retry_initial, retry_max)
                self.log.warn(
                    "bitcoind is not ready ({error}); retrying in {delay:g} s",
                    error=str(e),
                    delay=delay,
                )
                await deferLater(self._clock, delay)
                continue
            if info.chain != want:
                raise ChainMismatchError(
                    f"bitcoind at {self.active_url} runs chain {info.chain!r}, but the node is "
                    f"configured for network {expected_network!r} (chain {want!r}); point the "
                    "node at a daemon on that chain or change the network setting"
                )
            if info.initial_block_download and want not in _LOCAL_CHAINS:
                attempt += 1
                delay = backoff_delay(attempt, retry_initial, retry_max)
                self.log.info(
                    "bitcoind at {url} is in initial block download (block {blocks} of "
                    "{headers} headers, progress {progress}); waiting {delay:g} s",
                    url=self.active_url,
                    blocks=info.blocks,
                    headers=info.headers,
                    progress=info.verification_progress,
                    delay=delay,
                )
                await deferLater(self._clock, delay)
                continue
            await self._check_other_chains(want, expected_network)
            self.log.info(
                "bitcoind at {url} is ready: chain {chain}, height {blocks}",
                url=self.active_url,
                chain=info.chain,
                blocks=info.blocks,
            )
            return info

    async def _check_other_chains(self, want: str, network: str) -> None:
        """Refuse failover endpoints on another chain; warn about unreachable ones."""
        for index, state in enumerate(self._states):
            if index == self._active:
                continue
            url = state.endpoint.url
            try:
                reply = await self._exchange(state, "getblockchaininfo", [], self._timeout, "")
                chain = BlockchainInfo.from_rpc(reply).chain
            except NodeError as e:
                self.log.warn(
                    "failover bitcoind at {url} could not be checked ({error}); it will be "
                    "used only if it answers later",
                    url=url,
                    error=str(e),
                )
                continue
            if chain != want:
                raise ChainMismatchError(
                    f"failover bitcoind at {url} runs chain {chain!r}, but the node is "
                    f"configured for network {network!r} (chain {want!r})"
                )

    async def get_block_template(
        self, longpollid: str | None = None, *, timeout: float | None = None
    ) -> BlockTemplate:
        """``getblocktemplate`` with the segwit rule (and signet on signet).

        With ``longpollid`` the daemon holds the request until the tip or the mempool
        changes; a timeout then only means "no news" and does not count against the endpoint.
        """
        rules = ["segwit", "signet"] if self._chain == "signet" else ["segwit"]
        request: dict[str, Any] = {"rules": rules}
        if longpollid is not None:
            request["longpollid"] = longpollid
        result = await self._call(
            "getblocktemplate", [request], timeout=timeout, longpoll=longpollid is not None
        )
        try:
            return BlockTemplate.from_rpc(result)
        except TemplateError as e:
            raise RpcProtocolError(f"bitcoind at {self.active_url}: {e}") from None

    async def submit_block(self, block_bytes: bytes) -> SubmitResult:
        """``submitblock``: hand a solved block to the daemon and log its verdict."""
        if len(block_bytes) < 80:
            raise ValueError(f"submit_block needs a serialized block, got {len(block_bytes)} bytes")
        block_hash = sha256d(bytes(block_bytes[:80]))[::-1].hex()
        try:
            result = SubmitResult.from_reply(await self._call("submitblock", [block_bytes.hex()]))
        except RpcError as e:
            if e.code != RPC_DESERIALIZATION_ERROR:
                raise
            result = SubmitResult(SubmitOutcome.REJECTED, e.message)
        self._log_submit(block_hash, result)
        return result

    def _log_submit(self, block_hash: str, result: SubmitResult) -> None:
        url = self.active_url
        if result.outcome is SubmitOutcome.ACCEPTED:
            self.log.info(
                "block {block_hash} accepted by bitcoind at {url}", block_hash=block_hash, url=url
            )
        elif result.outcome is SubmitOutcome.DUPLICATE:
            self.log.info(
                "block {block_hash} was already known to bitcoind at {url} (duplicate)",
                block_hash=block_hash,
                url=url,
            )
        elif result.outcome is SubmitOutcome.INCONCLUSIVE:
            self.log.warn(
                "block {block_hash} is valid but not on the best chain of bitcoind at {url} "
                "({reason})",
                block_hash=block_hash,
                url=url,
                reason=result.reason,
            )
        else:
            self.log.error(
                "block {block_hash} REJECTED by bitcoind at {url}: {reason}",
                block_hash=block_hash,
                url=url,
                reason=result.reason,
            )

    async def get_block_hash(self, height: int) -> str:
        """``getblockhash``: the hash (display hex) of the best-chain block at ``height``."""
        _check_int(height, "height")
        return _hash_hex(await self._call("getblockhash", [height]), "getblockhash")

    async def get_best_block_hash(self) -> str:
        """``getbestblockhash``: the tip's hash in display hex."""
        return _hash_hex(await self._call("getbestblockhash", []), "getbestblockhash")

    async def get_block_count(self) -> int:
        """``getblockcount``: the tip's height."""
        count = await self._call("getblockcount", [])
        if not isinstance(count, int) or isinstance(count, bool):
            raise RpcProtocolError(f"getblockcount: expected an integer, got {count!r}")
        return count

    async def get_block_header(self, hash_hex: str, verbose: bool = True) -> Any:
        """``getblockheader``: a header object (or its hex when not ``verbose``)."""
        return await self._call("getblockheader", [_check_hash(hash_hex), verbose])

    async def get_block(self, hash_hex: str, verbosity: int = 1) -> Any:
        """``getblock``: hex (0), an object with txids (1) or with transactions (2)."""
        _check_int(verbosity, "verbosity")
        return await self._call("getblock", [_check_hash(hash_hex), verbosity])

    async def validate_address(self, address: str) -> AddressCheck:
        """``validateaddress``: the daemon's verdict on a payout address for its chain."""
        if not isinstance(address, str):
            raise TypeError(f"address must be a string, got {address!r}")
        reply = await self._call("validateaddress", [address])
        if not isinstance(reply, dict) or not isinstance(reply.get("isvalid"), bool):
            raise RpcProtocolError(f"validateaddress: unexpected reply {reply!r}")
        script = reply.get("scriptPubKey")
        error = reply.get("error")
        try:
            script_bytes = bytes.fromhex(script) if isinstance(script, str) else None
        except ValueError:
            raise RpcProtocolError(f"validateaddress: scriptPubKey {script!r} is not hex") from None
        return AddressCheck(
            address=address,
            valid=reply["isvalid"],
            script_pubkey=script_bytes,
            error=error if isinstance(error, str) else None,
        )

    # -- wallet --------------------------------------------------------------------------

    async def get_balance(self) -> int:
        """``getbalance``: the wallet's trusted balance in satoshis."""
        return btc_to_satoshis(await self._wallet_call("getbalance", []))

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
        txid = await self._wallet_call("sendmany", ["", outputs, 1, comment])
        txid = _hash_hex(txid, "sendmany")
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
        reply = await self._wallet_call("gettransaction", [_check_hash(txid)])
        if not isinstance(reply, dict):
            raise RpcProtocolError(f"gettransaction: expected an object, got {reply!r}")
        return reply

    async def list_transactions(self, count: int = 10, skip: int = 0) -> list[dict[str, Any]]:
        """``listtransactions "*" count skip``: recent wallet entries, oldest first."""
        _check_int(count, "count")
        _check_int(skip, "skip")
        reply = await self._wallet_call("listtransactions", ["*", count, skip])
        if not isinstance(reply, list) or not all(isinstance(e, dict) for e in reply):
            raise RpcProtocolError(f"listtransactions: expected a list of objects, got {reply!r}")
        return reply

    # -- transport -----------------------------------------------------------------------

    async def _wallet_call(self, method: str, params: list[Any]) -> Any:
        """A wallet call: first endpoint only, no failover, no automatic retry."""
        state = self._states[0]
        return await self._exchange(
            state, method, params, self._timeout, self._wallet_path, retry_lost=False
        )

    async def _call(
        self,
        method: str,
        params: list[Any],
        *,
        timeout: float | None = None,
        longpoll: bool = False,
    ) -> Any:
        limit = self._timeout if timeout is None else timeout
        now = self._clock.seconds()
        order = sorted(range(len(self._states)), key=lambda i: (self._states[i].retry_at > now, i))
        failure: NodeError | None = None
        for index in order:
            state = self._states[index]
            try:
                result = await self._exchange(state, method, params, limit, "")
            except RpcError:
                self._succeeded(index)
                raise
            except (RpcConnectionError, RpcTimeout, RpcProtocolError, RpcAuthError) as e:
                if longpoll and isinstance(e, RpcTimeout):
                    raise
                self._failed(index, e)
                failure = e
                continue
            self._succeeded(index)
            return result
        assert failure is not None
        raise failure

    def _succeeded(self, index: int) -> None:
        state = self._states[index]
        if state.failures and len(self._states) > 1:
            self.log.info("bitcoind at {url} answers again", url=state.endpoint.url)
        state.failures = 0
        state.retry_at = 0.0
        if index != self._active:
            self.log.warn(
                "bitcoind RPC switched from {previous} to {url}",
                previous=self._states[self._active].endpoint.url,
                url=state.endpoint.url,
            )
            self._active = index

    def _failed(self, index: int, error: NodeError) -> None:
        state = self._states[index]
        state.failures += 1
        delay = backoff_delay(state.failures, *self._backoff)
        state.retry_at = self._clock.seconds() + delay
        if state.failures == 1 and len(self._states) > 1:
            self.log.warn(
                "bitcoind at {url} failed ({error}); trying the other endpoints first for "
                "{delay:g} s",
                url=state.endpoint.url,
                error=str(error),
                delay=delay,
            )

    async def _exchange(
        self,
        state: _EndpointState,
        method: str,
        params: list[Any],
        timeout: float,
        path: str,
        *,
        retry_lost: bool = True,
    ) -> Any:
        """One request to one endpoint: re-reads a cookie after a 401 and retries a
        request whose connection closed before any reply (a stale pooled connection)."""
        endpoint = state.endpoint
        url = endpoint.url.rstrip("/") + path
        body = encode_request(method, params, next(self._ids))
        cookie_retried = False
        while True:
            try:
                status, content = await self._post(
                    url, method, body, state.authorization(), timeout
                )
            except RpcConnectionError as e:
                if retry_lost and e.request_sent and not e.response_started:
                    retry_lost = False
                    continue
                raise
            if status == 401 and endpoint.cookie_file is not None and not cookie_retried:
                cookie_retried = True
                previous, state.cookie_auth = state.cookie_auth, None
                if state.authorization() != previous:
                    self.log.info(
                        "bitcoind cookie file {path} changed; retrying with the new cookie",
                        path=endpoint.cookie_file,
                    )
                    continue
            return decode_reply(status, content, endpoint.url, method)

    async def _post(
        self, url: str, method: str, body: bytes, auth: bytes | None, timeout: float
    ) -> tuple[int, bytes]:
        headers = {b"Content-Type": [b"application/json"]}
        if auth is not None:
            headers[b"Authorization"] = [auth]
        timed_out = False
        exchange = Deferred.fromCoroutine(self._http_post(url, body, headers))

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            exchange.cancel()

        delayed = self._clock.callLater(timeout, expire)
        try:
            return await exchange
        except Exception as e:
            if timed_out:
                raise RpcTimeout(
                    f"bitcoind at {url} did not answer {method} within {timeout:g} s"
                ) from None
            if _is_cancellation(e):
                raise CancelledError() from None
            raise _connection_error(url, method, e) from None
        finally:
            if delayed.active():
                delayed.cancel()

    async def _http_post(
        self, url: str, body: bytes, headers: dict[bytes, list[bytes]]
    ) -> tuple[int, bytes]:
        response = await self._http.post(url, data=body, headers=headers, allow_redirects=False)
        content: bytes = await response.content()
        code: int = response.code
        return code, content


def _connection_error(url: str, method: str, error: Exception) -> RpcConnectionError:
    if isinstance(error, ResponseNeverReceived):
        reason = _reasons(error)
        return RpcConnectionError(
            f"bitcoind at {url} closed the connection before answering {method} ({reason})",
            request_sent=True,
        )
    if isinstance(error, ResponseFailed):
        return RpcConnectionError(
            f"bitcoind at {url} closed the connection while answering {method} ({_reasons(error)})",
            request_sent=True,
            response_started=True,
        )
    return RpcConnectionError(f"cannot reach bitcoind at {url}: {error}")


def _reasons(error: ResponseFailed) -> str:
    return "; ".join(str(f.value) for f in error.reasons) or type(error).__name__


def _is_cancellation(error: Exception) -> bool:
    if isinstance(error, CancelledError):
        return True
    if isinstance(error, ResponseFailed):
        return any(f.check(CancelledError) for f in error.reasons)
    return False


def _field(obj: dict[str, Any], key: str, kind: type, method: str, default: Any = None) -> Any:
    value = obj.get(key, default)
    if value is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RpcProtocolError(f"{method} field {key!r}: expected {kind.__name__}, got {value!r}")
    return value


def _hash_hex(value: Any, method: str) -> str:
    if not isinstance(value, str) or not _HASH_HEX.fullmatch(value):
        raise RpcProtocolError(f"{method}: expected a 64-digit hex hash, got {value!r}")
    return value


def _check_hash(value: str) -> str:
    if not isinstance(value, str) or not _HASH_HEX.fullmatch(value):
        raise ValueError(f"expected a 64-digit lowercase hex hash, got {value!r}")
    return value


def _check_int(value: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
