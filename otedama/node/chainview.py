"""The chain view of a daemon: templates, block submission, chain queries, readiness.

What the pool core, the template source and the block tracker need from bitcoind (or the
devnet, which speaks the same subset), over an ``RpcTransport`` with failover.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from twisted.internet.task import deferLater
from twisted.logger import Logger

from otedama.chain.hashing import sha256d
from otedama.chain.template import BlockTemplate, TemplateError
from otedama.node.rpc import (
    RPC_IN_WARMUP,
    NodeError,
    RpcAuthError,
    RpcError,
    RpcProtocolError,
    backoff_delay,
)
from otedama.node.transport import RpcTransport

__all__ = [
    "CHAIN_NAMES",
    "AddressCheck",
    "BlockchainInfo",
    "ChainMismatchError",
    "ChainView",
    "SubmitOutcome",
    "SubmitResult",
    "chain_name",
    "check_hash",
    "check_int",
    "hash_result",
]

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
            best_block_hash=hash_result(reply.get("bestblockhash"), "getblockchaininfo"),
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


class ChainView:
    """The chain side of a daemon over ``transport`` (failover across its endpoints)."""

    log = Logger()

    def __init__(self, transport: RpcTransport) -> None:
        self.transport = transport
        self._chain: str | None = None

    @property
    def endpoints(self) -> tuple[Any, ...]:
        """The endpoints in config (failover) order."""
        return self.transport.endpoints

    @property
    def active_url(self) -> str:
        """The URL of the endpoint that answered last."""
        return self.transport.active_url

    def close(self) -> Any:
        """Close idle connections (the node's shutdown calls this)."""
        return self.transport.close()

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        """Call ``method`` with failover; return its ``result`` or raise a :class:`NodeError`."""
        return await self.transport.call(method, list(params), timeout=timeout)

    async def get_blockchain_info(self) -> BlockchainInfo:
        """``getblockchaininfo``; also tells the client which chain (and rules) to use."""
        info = BlockchainInfo.from_rpc(await self.transport.call("getblockchaininfo", []))
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
                await deferLater(self.transport.clock, delay)
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
                await deferLater(self.transport.clock, delay)
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
        for index, endpoint in enumerate(self.transport.endpoints):
            if index == self.transport.active_index:
                continue
            url = endpoint.url
            try:
                reply = await self.transport.call_endpoint(index, "getblockchaininfo", [])
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
        result = await self.transport.call(
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
            result = SubmitResult.from_reply(
                await self.transport.call("submitblock", [block_bytes.hex()])
            )
        except RpcError as e:
            if e.code != RPC_DESERIALIZATION_ERROR:
                raise
            result = SubmitResult(SubmitOutcome.REJECTED, e.message)
        self._log_submit(block_hash, result)
        return result

    def _log_submit(self, block_hash: str, result: SubmitResult) -> None:
        url = self.active_url
        # Debug only: the pool core logs the one line of a found block with the verdict.
        self.log.debug(
            "submitblock {block_hash} to bitcoind at {url}: {outcome}{reason}",
            block_hash=block_hash,
            url=url,
            outcome=result.outcome.name.lower(),
            reason=f" ({result.reason})" if result.reason else "",
        )

    async def get_block_hash(self, height: int) -> str:
        """``getblockhash``: the hash (display hex) of the best-chain block at ``height``."""
        check_int(height, "height")
        return hash_result(await self.transport.call("getblockhash", [height]), "getblockhash")

    async def get_best_block_hash(self) -> str:
        """``getbestblockhash``: the tip's hash in display hex."""
        return hash_result(await self.transport.call("getbestblockhash", []), "getbestblockhash")

    async def get_block_count(self) -> int:
        """``getblockcount``: the tip's height."""
        count = await self.transport.call("getblockcount", [])
        if not isinstance(count, int) or isinstance(count, bool):
            raise RpcProtocolError(f"getblockcount: expected an integer, got {count!r}")
        return count

    async def get_block_header(self, hash_hex: str, verbose: bool = True) -> Any:
        """``getblockheader``: a header object (or its hex when not ``verbose``)."""
        return await self.transport.call("getblockheader", [check_hash(hash_hex), verbose])

    async def get_block(self, hash_hex: str, verbosity: int = 1) -> Any:
        """``getblock``: hex (0), an object with txids (1) or with transactions (2)."""
        check_int(verbosity, "verbosity")
        return await self.transport.call("getblock", [check_hash(hash_hex), verbosity])

    async def validate_address(self, address: str) -> AddressCheck:
        """``validateaddress``: the daemon's verdict on a payout address for its chain."""
        if not isinstance(address, str):
            raise TypeError(f"address must be a string, got {address!r}")
        reply = await self.transport.call("validateaddress", [address])
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


def _field(obj: dict[str, Any], key: str, kind: type, method: str, default: Any = None) -> Any:
    value = obj.get(key, default)
    if value is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RpcProtocolError(f"{method} field {key!r}: expected {kind.__name__}, got {value!r}")
    return value


def hash_result(value: Any, method: str) -> str:
    """A hash (display hex) from ``method``'s reply, or :class:`RpcProtocolError`."""
    if not isinstance(value, str) or not _HASH_HEX.fullmatch(value):
        raise RpcProtocolError(f"{method}: expected a 64-digit hex hash, got {value!r}")
    return value


def check_hash(value: str) -> str:
    """A hash argument: 64 lowercase hex digits, or ``ValueError``."""
    if not isinstance(value, str) or not _HASH_HEX.fullmatch(value):
        raise ValueError(f"expected a 64-digit lowercase hex hash, got {value!r}")
    return value


def check_int(value: int, name: str) -> None:
    """An integer argument (not a bool), or ``TypeError``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
