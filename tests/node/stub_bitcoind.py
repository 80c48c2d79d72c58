"""A stub bitcoind for tests: a twisted.web resource on 127.0.0.1 that replays recorded
replies byte for byte (status, reason, headers, body), checks Basic auth like Core, can hold
a request forever (timeouts) and holds long polls until the test releases a new template.

Reusable by any test that needs a daemon: ``StubBitcoind`` is the resource, ``serve`` puts
it on a port, ``Reply.recorded`` turns a case from ``VECTORS/bitcoind/*.json`` into a reply.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, formatEvent
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
"""The real-node test vectors: ``tests/vectors``, the repository's copy of the team's
``shared/vectors`` (so that a clone needs nothing from outside)."""

if not (VECTORS / "bitcoind").is_dir():
    raise RuntimeError(
        f"test vectors folder {VECTORS / 'bitcoind'} is missing; the node tests replay "
        "Bitcoin Core's recorded replies from it"
    )


def load_vector(relative: str) -> Any:
    """A vector file parsed as JSON (fails loudly when it is missing)."""
    return json.loads((VECTORS / relative).read_text())


RPC_ERRORS = load_vector("bitcoind/rpc-errors.json")["cases"]
UNAUTHORIZED = RPC_ERRORS["wrong_password"]


@dataclass(frozen=True)
class Reply:
    """One HTTP reply exactly as the stub sends it."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    reason: str | None = None
    complete: bool = True
    """False: send the headers and this body, announce more, then stall."""

    @classmethod
    def recorded(cls, case: Mapping[str, Any]) -> Reply:
        """Core's recorded reply (``http_status``, ``http_reason``, headers, raw body)."""
        return cls(
            status=case["http_status"],
            body=case["response_body"].encode("utf-8"),
            headers=dict(case.get("response_headers", {"Content-Type": "application/json"})),
            reason=case.get("http_reason"),
        )

    @classmethod
    def result(cls, result: Any, raw: str | None = None) -> Reply:
        """A JSON-RPC 2.0 success like Core's (``raw`` puts a literal JSON value in)."""
        value = json.dumps(result, separators=(",", ":")) if raw is None else raw
        return cls(200, f'{{"jsonrpc":"2.0","result":{value},"id":1}}\n'.encode())

    @classmethod
    def error(cls, code: int, message: str) -> Reply:
        """A JSON-RPC 2.0 error reply (HTTP 200) like Core's."""
        error = json.dumps({"code": code, "message": message}, separators=(",", ":"))
        return cls(200, f'{{"jsonrpc":"2.0","error":{error},"id":1}}\n'.encode())


DROP = Reply(0, b"")
"""Close the connection without answering (what a restarting daemon does)."""


@dataclass(frozen=True)
class Received:
    """One request as the stub saw it."""

    path: str
    method: str
    params: Any
    body: bytes
    authorization: str | None
    client_port: int = 0


Handler = Callable[[Received], "Reply | Deferred[Reply]"]


class StubBitcoind(Resource):
    """The stub daemon. ``on(method, reply_or_handler)`` sets an answer; a handler may
    return a ``Deferred`` (never fired: the request hangs). ``credentials`` ("user:pass")
    makes it answer other credentials with Core's recorded 401."""

    isLeaf = True

    def __init__(self, credentials: str | None = None) -> None:
        super().__init__()
        self.credentials = credentials
        self.answers: dict[str, Reply | Handler | list[Reply]] = {}
        self.received: list[Received] = []
        self.lost: list[Received] = []
        self._arrivals: list[Deferred[Received]] = []
        self._open: list[Request] = []
        self.template: dict[str, Any] | None = None
        self._held: list[tuple[Received, Deferred[Reply]]] = []
        self._hold_waiters: list[Deferred[Received]] = []
        self._lost_waiters: list[Deferred[Received]] = []

    def on(self, method: str, answer: Reply | Handler | list[Reply]) -> None:
        """Answer ``method`` with a reply, a handler, or a list of replies in turn."""
        self.answers[method] = answer

    def hang(self, method: str) -> None:
        """Never answer ``method`` (for timeouts)."""
        self.on(method, lambda _received: Deferred())

    def next_request(self) -> Deferred[Received]:
        """Fires with the next request to arrive."""
        d: Deferred[Received] = Deferred()
        self._arrivals.append(d)
        return d

    def next_lost(self) -> Deferred[Received]:
        """Fires when the client drops a request the stub is still holding."""
        d: Deferred[Received] = Deferred()
        self._lost_waiters.append(d)
        return d

    def _request_lost(self, received: Received) -> None:
        self.lost.append(received)
        waiters, self._lost_waiters = self._lost_waiters, []
        for d in waiters:
            d.callback(received)

    def methods(self) -> list[str]:
        """Methods received so far, in order."""
        return [r.method for r in self.received]

    # -- long polling --------------------------------------------------------------------

    def serve_templates(self, template: dict[str, Any]) -> None:
        """Answer ``getblocktemplate`` with ``template``; a long poll naming its
        ``longpollid`` is held until :meth:`release_template`."""
        self.template = template
        self.on("getblocktemplate", self._getblocktemplate)

    def release_template(self, template: dict[str, Any]) -> int:
        """Make ``template`` current and answer every held long poll with it."""
        self.template = template
        held, self._held = self._held, []
        for _received, d in held:
            d.callback(Reply.result(template))
        return len(held)

    @property
    def held(self) -> int:
        """How many long polls are being held."""
        return len(self._held)

    def held_arrival(self) -> Deferred[Received]:
        """Fires when the next long poll is being held."""
        d: Deferred[Received] = Deferred()
        self._hold_waiters.append(d)
        return d

    def _getblocktemplate(self, received: Received) -> Reply | Deferred[Reply]:
        assert self.template is not None
        request = received.params[0] if received.params else {}
        if request.get("longpollid") == self.template.get("longpollid"):
            d: Deferred[Reply] = Deferred()
            self._held.append((received, d))
            waiters, self._hold_waiters = self._hold_waiters, []
            for w in waiters:
                w.callback(received)
            return d
        return Reply.result(self.template)

    # -- HTTP ----------------------------------------------------------------------------

    def render_POST(self, request: Request) -> int | bytes:
        body = request.content.read() if request.content is not None else b""
        try:
            call = json.loads(body)
            method, params = call.get("method", ""), call.get("params", [])
        except ValueError:
            method, params = "", []
        auth = request.getHeader("authorization")
        user_password = None
        if auth is not None and auth.startswith("Basic "):
            user_password = base64.b64decode(auth[6:]).decode()
        peer = request.getClientAddress()
        received = Received(
            request.path.decode(), method, params, body, user_password, getattr(peer, "port", 0)
        )
        self.received.append(received)
        arrivals, self._arrivals = self._arrivals, []
        for d in arrivals:
            d.callback(received)
        if self.credentials is not None and user_password != self.credentials:
            return self._write(request, Reply.recorded(UNAUTHORIZED))
        answer = self.answers.get(method)
        if answer is None:
            return self._write(request, Reply.recorded(RPC_ERRORS["unknown_method"]["jsonrpc_2.0"]))
        if isinstance(answer, list):
            reply: Reply | Deferred[Reply] = answer.pop(0) if len(answer) > 1 else answer[0]
        elif isinstance(answer, Reply):
            reply = answer
        else:
            reply = answer(received)
        if reply is DROP:
            request.loseConnection()
            return NOT_DONE_YET
        if isinstance(reply, Reply) and not reply.complete:
            request.setHeader("Content-Length", str(len(reply.body) + 100))
            request.write(self._write(request, reply))
            self._open.append(request)
            request.notifyFinish().addErrback(lambda _: self._request_lost(received))
            return NOT_DONE_YET
        if isinstance(reply, Reply):
            return self._write(request, reply)
        self._open.append(request)
        request.notifyFinish().addErrback(lambda _: self._request_lost(received))
        reply.addCallback(lambda r: self._finish_later(request, r))
        return NOT_DONE_YET

    def _finish_later(self, request: Request, reply: Reply) -> None:
        if request in self._open:
            self._open.remove(request)
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.write(self._write(request, reply))
        request.finish()

    def _write(self, request: Request, reply: Reply) -> bytes:
        if reply.reason is not None:
            request.setResponseCode(reply.status, reply.reason.encode())
        else:
            request.setResponseCode(reply.status)
        for name, value in reply.headers.items():
            request.setHeader(name, value)
        return reply.body

    def close_open_requests(self) -> None:
        """Drop the connections of requests still hanging (test teardown)."""
        for request in self._open:
            request.loseConnection()
        self._open = []


class Harness:
    """Stub daemons on 127.0.0.1 and clients for them: real sockets, a ``task.Clock`` for
    the client's timeouts and back-offs, and the client's log lines in ``logs``."""

    def __init__(self, clock: Any) -> None:
        from treq.client import HTTPClient
        from twisted.internet import reactor
        from twisted.web.client import Agent, HTTPConnectionPool

        self.clock = clock
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.http = HTTPClient(Agent(reactor, pool=self.pool))
        self.logs = LogCatcher()
        self._served: list[Served] = []

    def daemon(self, credentials: str | None = None) -> Served:
        """A new stub daemon, listening."""
        served = serve(StubBitcoind(credentials))
        self._served.append(served)
        return served

    def client(self, *endpoints: Any, timeout: float = 5.0, **options: Any) -> Any:
        """A ``BitcoindClient`` over real sockets whose log goes to ``logs``."""
        from twisted.logger import Logger

        from otedama.node.bitcoind import BitcoindClient
        from otedama.node.rpc import RpcEndpoint

        resolved = [RpcEndpoint(e) if isinstance(e, str) else e for e in endpoints]
        client = BitcoindClient(
            resolved, clock=self.clock, timeout=timeout, http_client=self.http, **options
        )
        logger = Logger(observer=self.logs)
        for part in (client, client.transport, client.wallet, client.wallet.transport):
            part.log = logger
        return client

    async def close(self) -> None:
        """Stop every stub and drop pooled connections."""
        for served in self._served:
            await served.stop()
        await self.pool.closeCachedConnections()


@dataclass
class Served:
    """A stub listening on 127.0.0.1: its ``url`` and how to stop it."""

    stub: StubBitcoind
    port: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"

    async def stop(self) -> None:
        self.stub.close_open_requests()
        await self.port.stopListening()


def serve(stub: StubBitcoind) -> Served:
    """Listen on an ephemeral port of 127.0.0.1 with ``stub``."""
    from twisted.internet import reactor

    site = Site(stub)
    site.noisy = False
    return Served(stub, reactor.listenTCP(0, site, interface="127.0.0.1"))


def closed_port_url() -> str:
    """The URL of a 127.0.0.1 port that was just closed (connections are refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@implementer(ILogObserver)
class LogCatcher:
    """Collects formatted log lines; ``wait_for(text)`` fires when one contains ``text``."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._waiters: list[tuple[str, Deferred[str]]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        line = formatEvent(event)
        self.events.append(event)
        self.lines.append(line)
        from twisted.internet import reactor

        for waiter in list(self._waiters):
            if waiter[0] in line:
                self._waiters.remove(waiter)
                # Fire on a later turn: the code that logged has not finished its step yet
                # (e.g. it logs "waiting" before it starts waiting).
                reactor.callLater(0, waiter[1].callback, line)

    def wait_for(self, text: str) -> Deferred[str]:
        """Fires with the first line (already logged or to come) that contains ``text``."""
        for line in self.lines:
            if text in line:
                d: Deferred[str] = Deferred()
                d.callback(line)
                return d
        d = Deferred()
        self._waiters.append((text, d))
        return d

    def count(self, text: str) -> int:
        """How many lines contain ``text``."""
        return sum(text in line for line in self.lines)
