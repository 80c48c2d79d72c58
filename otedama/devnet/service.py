"""The embedded devnet served over Bitcoin Core's JSON-RPC, as a Twisted service.

``DevnetResource`` is the HTTP JSON-RPC endpoint over a ``DevnetRpc``; ``DevnetService``
runs a ``DevnetNode`` and its listener inside a service tree; ``start_devnet`` starts one
for tests. See ``docs/devnet.md``.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from otedama.devnet.chain import DevnetChain
from otedama.devnet.jsonrpc import (
    RPC_MISC_ERROR,
    RpcCall,
    RpcFault,
    encode_json,
    error_reply,
    parse_body,
    result_reply,
)
from otedama.devnet.node import DevnetNode
from otedama.devnet.rpc import DevnetRpc

__all__ = ["DevnetHandle", "DevnetResource", "DevnetService", "start_devnet"]


class DevnetResource(Resource):
    """``POST /``: Bitcoin Core style JSON-RPC (single calls and batches) for the devnet."""

    isLeaf = True
    log = Logger()

    def __init__(self, rpc: DevnetRpc, credentials: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.rpc = rpc
        self.credentials = credentials

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"content-type", b"text/plain")
        return b"JSONRPC server handles only POST requests"

    def render_POST(self, request: Request) -> int | bytes:
        if self.credentials is not None and not self._authorized(request):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Basic realm="jsonrpc"')
            request.setHeader(b"content-type", b"text/html; charset=ISO-8859-1")
            return b""
        assert request.content is not None
        body = request.content.read()
        d = ensureDeferred(self._handle(body))
        gone: list[bool] = []

        def disconnected(_: Any) -> None:
            gone.append(True)
            d.cancel()

        request.notifyFinish().addErrback(disconnected)

        def write(reply: tuple[int, bytes]) -> None:
            status, payload = reply
            if gone or request.finished:
                return
            request.setResponseCode(status)
            if payload:
                request.setHeader(b"content-type", b"application/json")
            request.write(payload)
            request.finish()

        def failed(f: Any) -> None:
            if not f.check(CancelledError):
                self.log.failure("devnet RPC request failed", f)

        d.addCallback(write)
        d.addErrback(failed)
        return NOT_DONE_YET

    def _authorized(self, request: Request) -> bool:
        assert self.credentials is not None
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        if not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:].strip()).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        expected = f"{self.credentials[0]}:{self.credentials[1]}"
        return hmac.compare_digest(given.encode(), expected.encode())

    async def _handle(self, body: bytes) -> tuple[int, bytes]:
        parsed = parse_body(body)
        if isinstance(parsed, RpcFault):
            status, reply = error_reply(parsed, None)
            return status, (encode_json(reply) + "\n").encode()
        calls, batch = parsed
        replies: list[tuple[int, dict[str, Any] | None]] = []
        for call in calls:
            replies.append(await self._one(call))
        if not batch:
            status, single = replies[0]
            if single is None:
                return 204, b""
            return status, (encode_json(single) + "\n").encode()
        items = [reply for _, reply in replies if reply is not None]
        return 200, (encode_json(items) + "\n").encode()

    async def _one(self, call: RpcCall | RpcFault) -> tuple[int, dict[str, Any] | None]:
        if isinstance(call, RpcFault):
            return error_reply(call, None)
        try:
            result = await self.rpc.call(call.method, call.params)
        except RpcFault as fault:
            status, reply = error_reply(fault, call)
        except CancelledError:
            raise
        except Exception as e:
            self.log.failure("devnet RPC {method} failed", method=call.method)
            status, reply = error_reply(RpcFault(RPC_MISC_ERROR, str(e)), call)
        else:
            status, reply = 200, result_reply(call, result)
        return status, None if call.notification else reply


class _QuietSite(Site):
    """A site without the per-request access log (long polls and submits are frequent)."""

    def log(self, request: http.Request) -> None:
        return None


@dataclass
class DevnetHandle:
    """A running devnet: its port, URL, chain and node; ``stop()`` shuts it down."""

    port: int
    url: str
    chain: DevnetChain
    node: DevnetNode
    service: DevnetService

    def stop(self) -> Deferred[None]:
        """Stop listening and release the data directory."""
        result = self.service.stopService()
        return result if isinstance(result, Deferred) else succeed(None)


class DevnetService(Service):
    """Runs the devnet (chain, data dir, HTTP JSON-RPC listener) in a service tree."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        listen: str,
        difficulty: Fraction | int | str,
        data_dir: Path,
        wallet_address: str | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.reactor = reactor
        self.listen = listen
        self._node_args = (reactor, difficulty, Path(data_dir), wallet_address)
        self.node = self._make_node()
        self.credentials = credentials
        self.port: Any = None  # IListeningPort
        self.ready: Deferred[DevnetHandle] = Deferred()
        self._loaded = False

    def startService(self) -> None:
        super().startService()
        if self._loaded:
            # Started again after a stop: rebuild the chain from the data dir.
            self.node = self._make_node()
            self.ready = Deferred()
        self.node.load()
        self._loaded = True
        resource = DevnetResource(DevnetRpc(self.node), self.credentials)
        site = _QuietSite(resource)
        site.noisy = False
        d = serverFromString(self.reactor, self.listen).listen(site)
        d.addCallbacks(self._listening, self._listen_failed)

    def _make_node(self) -> DevnetNode:
        """A node whose block writes run on the reactor's thread pool."""
        threads = partial(deferToThreadPool, self.reactor, self.reactor.getThreadPool())
        return DevnetNode(*self._node_args, run_in_thread=threads)

    def whenReady(self) -> Deferred[DevnetHandle]:
        """Fires with the handle once the JSON-RPC port is bound (for the node's start order)."""
        return self.ready

    def _listening(self, port: Any) -> None:
        self.port = port
        address = port.getHost()
        host = getattr(address, "host", "127.0.0.1")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        number = int(getattr(address, "port", 0))
        shown = f"[{host}]" if ":" in host else host
        handle = DevnetHandle(number, f"http://{shown}:{number}/", self.node.chain, self.node, self)
        self.log.info(
            "devnet JSON-RPC listening on {url} (difficulty {difficulty}, data dir {dir})",
            url=handle.url,
            difficulty=str(self.node.chain.difficulty),
            dir=str(self.node.store.data_dir),
        )
        self.ready.callback(handle)

    def _listen_failed(self, failure: Any) -> None:
        self.node.close()
        self.ready.errback(failure)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self.port = self.port, None

        async def stop() -> None:
            if port is not None:
                await port.stopListening()
            await self.node.store.written()
            self.node.close()

        return Deferred.fromCoroutine(stop())


def start_devnet(
    reactor: Any,
    listen: str,
    difficulty: Fraction | int | str,
    data_dir: Path | str,
    wallet_address: str | None = None,
    credentials: tuple[str, str] | None = None,
) -> Deferred[DevnetHandle]:
    """Start a devnet listening on the endpoint string ``listen`` (e.g.
    ``"tcp:0:interface=127.0.0.1"``); fires with its ``DevnetHandle``."""
    try:
        service = DevnetService(
            reactor, listen, difficulty, Path(data_dir), wallet_address, credentials
        )
        service.startService()
    except Exception:
        return fail()
    return service.ready
