"""The embedded devnet served over Bitcoin Core's JSON-RPC, as a Twisted service.

``DevnetResource`` is the HTTP JSON-RPC endpoint over a ``DevnetRpc``; ``DevnetService``
runs a ``DevnetNode`` and its listener inside a service tree; ``start_devnet`` starts one
for tests. See ``docs/devnet.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from otedama.devnet.auth import COOKIE_NAME, RpcAuth, remove_cookie, write_cookie
from otedama.devnet.chain import DevnetChain
from otedama.devnet.jsonrpc import (
    RPC_MISC_ERROR,
    BadCall,
    RpcCall,
    RpcFault,
    encode_json,
    error_reply,
    parse_body,
    result_reply,
)
from otedama.devnet.node import DevnetNode
from otedama.devnet.rpc import DevnetRpc
from otedama.devnet.zmqpub import ZmqNotifier, ZmqPublisher

__all__ = ["DevnetHandle", "DevnetResource", "DevnetService", "start_devnet"]


KNOWN_METHODS = frozenset({b"GET", b"POST", b"HEAD", b"PUT"})
"""HTTP methods Core's server knows (``HTTPRequest::GetRequestMethod``); any other is
refused early with 405 and no body."""

POST_ONLY = b"JSONRPC server handles only POST requests"
AUTH_FAILURE_DELAY = 0.25
"""Seconds before a wrong password is answered, as Core deters brute-forcing (without
blocking: other requests are served meanwhile)."""

AUTH_LOG_INTERVAL = 60.0
"""Wrong passwords are logged at most once per this many seconds, with their count."""

MAX_BODY = 0x02000000
"""Core's limit on a request body (``MAX_SIZE``, 32 MiB): libevent answers more with 413."""

TOO_LARGE = (
    b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)

LIBEVENT_CONTENT_TYPE = b"text/html; charset=ISO-8859-1"
"""The Content-Type libevent gives a reply that sets none (Core's 401, 404, 405)."""


def rpc_path(uri: bytes) -> bool:
    """Whether Core serves JSON-RPC at ``uri``: exactly ``/``, or under ``/wallet/``."""
    return uri == b"/" or uri.startswith(b"/wallet/")


class DevnetResource(Resource):
    """Bitcoin Core's HTTP JSON-RPC endpoint (single calls and batches) for the devnet.

    Statuses, headers and bodies are Core's (``httpserver.cpp``/``httprpc.cpp``): 404 with
    no body outside ``/`` and ``/wallet/…``; 405 for other methods; 401 with
    ``WWW-Authenticate: Basic realm="jsonrpc"`` and no body when ``auth`` is set and the
    request has no or wrong credentials; JSON replies with ``Content-Length`` always
    (never chunked), 204 for notifications.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self, rpc: DevnetRpc, auth: RpcAuth | None = None, clock: IReactorTime | None = None
    ) -> None:
        super().__init__()
        self.rpc = rpc
        self.auth = auth
        self.clock: Any = clock
        self._bad_passwords = 0
        self._bad_logged_at: float | None = None

    def render(self, request: Request) -> int:
        request.responseHeaders.removeHeader(b"server")
        method = request.method
        if method not in KNOWN_METHODS:
            send_reply(request, 405, b"")
        elif not rpc_path(request.uri):
            send_reply(request, 404, b"")
        elif method != b"POST":
            send_reply(request, 405, POST_ONLY)
        elif self.auth is not None and request.getHeader(b"authorization") is None:
            _unauthorized(request)
        elif self.auth is not None and not self.auth.check(
            request.getHeader(b"authorization") or b""
        ):
            self._note_bad_password(request)
            if self.clock is None:
                _unauthorized(request)
            else:
                self.clock.callLater(AUTH_FAILURE_DELAY, _unauthorized, request)
        else:
            self._serve(request)
        return NOT_DONE_YET

    def _note_bad_password(self, request: Request) -> None:
        """Log wrong passwords summarised per ``AUTH_LOG_INTERVAL`` (an outsider sets the pace)."""
        self._bad_passwords += 1
        now = self.clock.seconds() if self.clock is not None else None
        last = self._bad_logged_at
        if now is not None and last is not None and now - last < AUTH_LOG_INTERVAL:
            return
        self.log.warn(
            "devnet RPC: {count} incorrect password attempt(s), the last from {peer}",
            count=self._bad_passwords,
            peer=str(request.getClientAddress()),
        )
        self._bad_passwords = 0
        self._bad_logged_at = now

    def _serve(self, request: Request) -> None:
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
            send_reply(request, status, payload, b"application/json" if payload else None)

        def failed(f: Any) -> None:
            if not f.check(CancelledError):
                self.log.failure("devnet RPC request failed", f)

        d.addCallback(write)
        d.addErrback(failed)

    async def _handle(self, body: bytes) -> tuple[int, bytes]:
        parsed = parse_body(body)
        if isinstance(parsed, RpcFault):
            status, reply = error_reply(parsed, None)
            return status, (encode_json(reply) + "\n").encode()
        calls, batch = parsed
        replies: list[tuple[int, dict[str, Any] | None]] = []
        for call in calls:
            replies.append(await self._one(call, batch))
        if not batch:
            status, single = replies[0]
            if single is None:
                return 204, b""
            return status, (encode_json(single) + "\n").encode()
        items = [reply for _, reply in replies if reply is not None]
        if not items and calls:
            return 204, b""  # a batch of notifications only
        return 200, (encode_json(items) + "\n").encode()

    async def _one(self, call: RpcCall | BadCall, batch: bool) -> tuple[int, dict[str, Any] | None]:
        """Status and reply for one call; None for a notification (in a batch, an invalid
        2.0 notification is not answered either; alone, Core answers it with its error)."""
        if isinstance(call, BadCall):
            status, reply = error_reply(call.fault, call)
            return status, None if batch and call.notification else reply
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


def send_reply(
    request: Request, status: int, body: bytes, content_type: bytes | None = None
) -> None:
    """Finish ``request`` as libevent does for Core: ``Content-Length`` on every reply that
    has a body (so HTTP/1.1 is never chunked), libevent's default Content-Type, and for
    204 neither."""
    if request.finished or request.channel is None:
        return
    request.setResponseCode(status)
    if status not in http.NO_BODY_CODES:
        request.setHeader(b"content-type", content_type or LIBEVENT_CONTENT_TYPE)
        request.setHeader(b"content-length", b"%d" % len(body))
        if body:
            request.write(body)
    request.finish()


def _unauthorized(request: Request) -> None:
    request.setHeader(b"www-authenticate", b'Basic realm="jsonrpc"')
    send_reply(request, 401, b"")


class _CoreChannel(http.HTTPChannel):
    """An HTTP channel that keeps connections as libevent does for Core: HTTP/1.1 stays
    open unless the client says ``Connection: close``; HTTP/1.0 stays open when the client
    says ``Connection: keep-alive`` (and is told so). Header lines may end in a bare LF,
    as libevent allows and ckpool sends."""

    delimiter = b"\n"
    refused = False

    def lineReceived(self, line: bytes) -> None:
        if not self.refused:
            super().lineReceived(line[:-1] if line.endswith(b"\r") else line)

    def rawDataReceived(self, data: bytes) -> None:
        if not self.refused:
            super().rawDataReceived(data)

    def allHeadersReceived(self) -> None:
        length = self.length
        if length is not None and length > MAX_BODY:
            self.refuse_too_large()
        else:
            super().allHeadersReceived()

    def refuse_too_large(self) -> None:
        """Answer 413 and close, reading nothing more (a body beyond ``MAX_BODY``)."""
        if not self.refused:
            self.refused = True
            transport: Any = self.transport  # zope interfaces do not type-check here
            transport.write(TOO_LARGE)
            transport.loseConnection()

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        if version == b"HTTP/1.0":
            header = request.requestHeaders.getRawHeaders(b"connection") or [b""]
            tokens = [t.strip().lower() for t in header[0].split(b",")]
            if b"keep-alive" in tokens:
                request.responseHeaders.setRawHeaders(b"connection", [b"keep-alive"])
                return True
            return False
        result: bool = super().checkPersistence(request, version)
        return result


class _CoreRequest(Request):
    """A request whose chunked body is cut off at ``MAX_BODY`` too."""

    received = 0

    def handleContentChunk(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > MAX_BODY:
            channel = self.channel
            if isinstance(channel, _CoreChannel):
                channel.refuse_too_large()
            return
        super().handleContentChunk(data)


class _CoreSite(Site):
    """A site with Core's connection handling and without the per-request access log
    (long polls and submits are frequent)."""

    protocol = _CoreChannel  # type: ignore[assignment]
    requestFactory = _CoreRequest

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
        cookie: bool = False,
        zmq: Mapping[str, str] | None = None,
        chain_name: str | None = None,
        connections: int = 0,
    ) -> None:
        """``credentials`` (rpcuser, rpcpassword) and ``cookie`` (write a ``.cookie`` in the
        data dir) turn on Core's authentication; neither: no authentication. ``zmq`` maps
        Core's topics (``hashblock``, ``rawblock``, …) to the addresses to publish them on.
        ``chain_name`` is the ``chain`` the RPC reports (default ``devnet``), ``connections``
        the peer count (default 0)."""
        self.reactor = reactor
        self.listen = listen
        self._node_args = (reactor, difficulty, Path(data_dir), wallet_address)
        self.node = self._make_node()
        self.credentials = credentials
        self.cookie = cookie
        self.zmq = ZmqPublisher(zmq or {})
        self.chain_name = chain_name
        self.connections = connections
        self.notifier: ZmqNotifier | None = None
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
        try:
            auth = self._start_auth()
            self._start_zmq()
        except BaseException:
            self._stop_extras()
            self.node.close()
            raise
        resource = DevnetResource(
            DevnetRpc(self.node, self.chain_name, self.connections), auth, self.reactor
        )
        site = _CoreSite(resource)
        site.noisy = False
        d = serverFromString(self.reactor, self.listen).listen(site)
        d.addCallbacks(self._listening, self._listen_failed)

    def _start_auth(self) -> RpcAuth | None:
        pairs: list[tuple[str, str]] = []
        if self.credentials is not None:
            pairs.append(self.credentials)
        if self.cookie:
            pairs.append(write_cookie(self.node.store.data_dir))
            self.log.info(
                "devnet RPC cookie written to {path}",
                path=str(self.node.store.data_dir / COOKIE_NAME),
            )
        return RpcAuth(pairs) if pairs else None

    def _start_zmq(self) -> None:
        if not self.zmq.endpoints:
            return
        self.zmq.start()
        self.notifier = ZmqNotifier(self.node.chain, self.zmq, self.reactor)
        self.node.listeners.append(self.notifier.changed)
        for topic, address in sorted(self.zmq.endpoints.items()):
            self.log.info(
                "devnet ZMQ {topic} notifications on {address}", topic=topic, address=address
            )

    def _stop_extras(self) -> None:
        if self.notifier is not None:
            if self.notifier.changed in self.node.listeners:
                self.node.listeners.remove(self.notifier.changed)
            self.notifier.stop()
            self.notifier = None
        self.zmq.stop()
        if self.cookie:
            remove_cookie(self.node.store.data_dir)

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
        self._stop_extras()
        self.node.close()
        self.ready.errback(failure)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self.port = self.port, None

        async def stop() -> None:
            if port is not None:
                await port.stopListening()
            self._stop_extras()
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
    cookie: bool = False,
    zmq: Mapping[str, str] | None = None,
    chain_name: str | None = None,
    connections: int = 0,
) -> Deferred[DevnetHandle]:
    """Start a devnet listening on the endpoint string ``listen`` (e.g.
    ``"tcp:0:interface=127.0.0.1"``); fires with its ``DevnetHandle``."""
    try:
        service = DevnetService(
            reactor,
            listen,
            difficulty,
            Path(data_dir),
            wallet_address,
            credentials,
            cookie,
            zmq,
            chain_name,
            connections,
        )
        service.startService()
    except Exception:
        return fail()
    return service.ready
