"""The twisted.web edge of the API: dispatch, JSON errors, CORS, auth and rate limits.

:class:`ApiResource` serves ``/api/v1/…`` from the routes of an
:class:`~otedama.api.endpoints.ApiRegistry`: it matches the path, answers 405 for a
known path with another method, checks parameters with the route's own definitions,
applies the rate limits and (for admin routes) the bearer token, runs the handler (whose
database reads go to the ledger's thread pool) and writes JSON. Every error is JSON:
``{"error": {"status": 400, "message": "address: …"}}``.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from urllib.parse import unquote

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from otedama.api import tokens
from otedama.api.endpoints import ApiRegistry, Conflict, NotFound, Registered
from otedama.api.ratelimit import (
    IP_BURST,
    IP_RATE,
    TOKEN_BURST,
    TOKEN_RATE,
    RateLimiter,
    retry_after,
)
from otedama.api.routes import PREFIX, ApiRequest, BadParameter, openapi, parse_params

if TYPE_CHECKING:
    from otedama.ops.redis import LimitStore

LOCALHOST = ("127.0.0.1", "::1")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


#: The route label of a request that matched no route (one label, not the raw path).
UNMATCHED = "unmatched"


@dataclass
class Served:
    """Which route a request reached and when it arrived (for the response observers)."""

    started: float
    operation: str = UNMATCHED
    pattern: str = UNMATCHED


#: ``observer(operation, pattern, status, seconds)``: the route's operationId and path
#: pattern (``/api/v1/miners/{address}``, never the raw path), the HTTP status, and the
#: seconds from the request's arrival to its answer.
Observer = Callable[[str, str, int, float], None]


@dataclass
class ApiPolicy:
    """The ``api`` section's switches, as the resource applies them."""

    auth_enabled: bool = True
    rate_limiting: bool = True
    cors_origins: tuple[str, ...] = ()
    ip_rate: float = IP_RATE
    ip_burst: int = IP_BURST
    token_rate: float = TOKEN_RATE
    token_burst: int = TOKEN_BURST
    #: Public GET answers are reused for this many seconds (0: no reuse).
    cache_ttl: float = 0.0


class Kept(NamedTuple):
    """A kept answer, with the route it came from (for the response observers)."""

    status: int
    body: bytes
    operation: str
    pattern: str


class AnswerCache:
    """Public read answers, kept for ``ttl`` seconds; concurrent misses share one read.

    At thousands of requests a second most of them ask the same few questions (the pool,
    the status, the first page of blocks): each is answered from the ledger once per
    ``ttl`` and the encoded bytes are reused, so a request costs HTTP parsing and a
    write, not a database read and a JSON encoding. Answers are keyed by the request's
    ``Host`` and URI as sent. At most ``limit`` answers are kept (least recently used go
    first) and URIs longer than ``MAX_KEY`` are never kept, so arbitrary requests cannot
    grow memory.
    """

    MAX_KEY = 512

    def __init__(self, ttl: float, clock: Any, limit: int = 2048) -> None:
        self.ttl = ttl
        self.clock = clock
        self.limit = limit
        self._answers: OrderedDict[bytes, tuple[float, Kept]] = OrderedDict()
        self._pending: dict[bytes, list[Deferred[Kept]]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._answers)

    def peek(self, key: bytes) -> Kept | None:
        """The kept answer for ``key`` if it is still fresh (counted as a hit)."""
        found = self._answers.get(key)
        if found is None or found[0] <= self.clock.seconds():
            return None
        self._answers.move_to_end(key)
        self.hits += 1
        return found[1]

    async def answer(self, key: bytes, produce: Callable[[], Awaitable[Kept]]) -> Kept:
        """The fresh answer for ``key``, produced at most once at a time."""
        kept = self.peek(key)
        if kept is not None:
            return kept
        if len(key) > self.MAX_KEY:
            self.misses += 1
            return await produce()
        waiting = self._pending.get(key)
        if waiting is not None:
            self.hits += 1
            shared: Deferred[Kept] = Deferred()
            waiting.append(shared)
            return await shared
        self.misses += 1
        waiters: list[Deferred[Kept]] = []
        self._pending[key] = waiters
        try:
            kept = await produce()
        except BaseException as error:
            del self._pending[key]
            for waiter in waiters:
                waiter.errback(Failure(error))
            raise
        del self._pending[key]
        self._answers[key] = (self.clock.seconds() + self.ttl, kept)
        self._answers.move_to_end(key)
        while len(self._answers) > self.limit:
            self._answers.popitem(last=False)
        for waiter in waiters:
            waiter.callback(kept)
        return kept


def json_body(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def _finite(data: Any) -> Any:
    """Replace non-finite floats (never expected) by None, so the JSON stays valid."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_finite(v) for v in data]
    return data


def _status_of(error: BaseException) -> int:
    """The HTTP status an exception from a handler answers with."""
    if isinstance(error, HttpError):
        return error.status
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    return 500


class ApiResource(Resource):
    """``/api/v1``: every path below is dispatched from the registry (``ws`` aside)."""

    log = Logger()
    isLeaf = True

    def __init__(
        self,
        registry: ApiRegistry,
        store: Any,
        clock: Any,
        policy: ApiPolicy,
        limits: LimitStore | None = None,
        audit: Any = None,
    ) -> None:
        """``limits``: where the request buckets live when several nodes share them
        (:class:`otedama.ops.redis.SharedState` with Redis); None keeps them in memory.
        ``audit``: the node's :class:`~otedama.ops.audit.AuditLog`; every admin call
        (refused ones too) is a line in it before its answer is written."""
        super().__init__()
        self.audit = audit
        self.limits = limits
        self.registry = registry
        self.store = store
        self.clock = clock
        self.policy = policy
        self.ip_limits = RateLimiter(policy.ip_rate, policy.ip_burst)
        self.token_limits = RateLimiter(policy.token_rate, policy.token_burst)
        self._document: bytes | None = None
        self.cache = AnswerCache(policy.cache_ttl, clock) if policy.cache_ttl > 0 else None
        #: Called for every answer (the metrics hook): see :data:`Observer`.
        self.observers: list[Observer] = []

    # -- helpers ----------------------------------------------------------------------

    def document(self) -> bytes:
        if self._document is None:
            self._document = json_body(openapi(self.registry.routes))
        return self._document

    def _cors(self, request: Request) -> None:
        origin = request.getHeader("origin")
        allowed = self.policy.cors_origins
        if origin is None or not allowed:
            return
        if "*" in allowed:
            request.setHeader(b"access-control-allow-origin", b"*")
        elif origin in allowed:
            request.setHeader(b"access-control-allow-origin", origin.encode())
            request.setHeader(b"vary", b"Origin")
        else:
            return
        request.setHeader(b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS")
        request.setHeader(b"access-control-allow-headers", b"Authorization, Content-Type")
        request.setHeader(b"access-control-max-age", b"600")

    def _segments(self, request: Request) -> list[str]:
        path = unquote(request.path.decode("latin-1"), errors="replace")
        rest = path[len(PREFIX) :] if path.startswith(PREFIX) else path
        return rest.strip("/").split("/") if rest.strip("/") else []

    @staticmethod
    def _cache_key(request: Request) -> bytes:
        return (request.getHeader(b"host") or b"") + b" " + request.uri

    def _kept(self, request: Request, kept: Kept, served: Served) -> tuple[int, bytes]:
        """A kept answer served at once (no coroutine, no read), after the IP limit."""
        served.operation = kept.operation
        served.pattern = kept.pattern
        if self.policy.rate_limiting:
            try:
                self._limit_here(self._client(request), self.ip_limits)
            except HttpError as error:
                return self._failed(Failure(error), request)
        return kept.status, kept.body

    def _client(self, request: Request) -> str:
        peer = request.getClientAddress()
        return str(getattr(peer, "host", "unknown"))

    async def _limit(self, kind: str, key: str, limiter: RateLimiter) -> None:
        """Take a token from ``key``'s bucket (shared through ``limits`` when set)."""
        if self.limits is None:
            self._limit_here(key, limiter)
            return
        now = self.clock.seconds()
        decision = await self.limits.take(f"api:{kind}:{key}", limiter.rate, limiter.burst, now)
        if not decision.allowed:
            self._too_many(decision.retry_after)

    def _limit_here(self, key: str, limiter: RateLimiter) -> None:
        self._too_many(limiter.take(key, self.clock.seconds()))

    @staticmethod
    def _too_many(wait: float) -> None:
        if wait > 0:
            after = retry_after(wait)
            raise HttpError(
                429,
                f"too many requests; retry after {after} s",
                {"retry-after": str(after)},
            )

    def _bearer(self, request: Request) -> str | None:
        header = request.getHeader("authorization")
        if header is None:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise HttpError(401, "Authorization must be 'Bearer <token>'")
        return value.strip()

    def refuse_websocket(self, request: Request, full: bool) -> bytes | None:
        """The JSON refusal of a WebSocket upgrade (rate limited, or too many open), or None."""
        try:
            if self.policy.rate_limiting:
                # The upgrade cannot wait for Redis: this node's own buckets.
                self._limit_here(self._client(request), self.ip_limits)
            if full:
                raise HttpError(503, "too many WebSocket connections; try again later")
        except HttpError as error:
            status, body = self._failed(Failure(error), request)
            request.setResponseCode(status)
            request.setHeader(b"content-type", b"application/json")
            return body
        return None

    # -- rendering --------------------------------------------------------------------

    def render(self, request: Request) -> bytes | int:
        self._cors(request)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        method = (request.method or b"GET").decode("latin-1")
        if method == "OPTIONS":
            request.setResponseCode(204)
            return b""
        served = Served(self.clock.seconds())
        if self.cache is not None and method in ("GET", "HEAD") and self.limits is None:
            kept = self.cache.peek(self._cache_key(request))
            if kept is not None:
                self._write(self._kept(request, kept, served), request, served)
                return NOT_DONE_YET
        d = Deferred.fromCoroutine(self._answer(request, method, served))
        d.addErrback(self._failed, request)
        d.addCallback(self._write, request, served)
        return NOT_DONE_YET

    async def _answer(self, request: Request, method: str, served: Served) -> tuple[int, bytes]:
        segments = self._segments(request)
        client = self._client(request)
        if self.policy.rate_limiting:
            await self._limit("ip", client, self.ip_limits)
        if segments == ["openapi.json"] and method in ("GET", "HEAD"):
            served.operation = "openapi"
            served.pattern = f"{PREFIX}/openapi.json"
            return 200, self.document()
        entry, path_params = self._match(segments, method)
        served.operation = entry.route.operation
        served.pattern = PREFIX + entry.route.path
        try:
            params = parse_params(entry.route, path_params, request.args or {})
        except BadParameter as e:
            raise HttpError(400, str(e)) from None
        host = (request.getRequestHostname() or b"localhost").decode("latin-1")
        if entry.route.admin:
            return await self._admin(request, entry, ApiRequest(params, client, host))
        call = ApiRequest(params, client, host)
        if self.cache is None or entry.route.admin or entry.route.method != "GET":
            return 200, json_body(_finite(await entry.handler(call)))
        # The Host header is part of the key: answers name the Stratum URL by it.
        kept = await self.cache.answer(
            self._cache_key(request), partial(self._produce, entry, call, served)
        )
        return kept.status, kept.body

    async def _admin(
        self, request: Request, entry: Registered, call: ApiRequest
    ) -> tuple[int, bytes]:
        """An admin call: the token, the handler, and its audit line before the answer."""
        status = 200
        try:
            call = replace(call, token_name=await self._authorize(request, call.client))
            return status, json_body(_finite(await entry.handler(call)))
        except BaseException as error:
            status = _status_of(error)
            raise
        finally:
            await self._audit(request, entry, call, status)

    async def _audit(
        self, request: Request, entry: Registered, call: ApiRequest, status: int
    ) -> None:
        if self.audit is None:
            return
        path = request.path.decode("latin-1", errors="replace")[:200]
        detail = (
            {"status": status, "params": dict(call.params)} if call.params else {"status": status}
        )
        try:
            await self.audit.record(
                call.actor,
                f"api.{entry.route.operation}",
                path,
                "ok" if status == 200 else "refused" if status < 500 else "failed",
                detail,
            )
        except OSError:
            raise HttpError(
                500,
                "the audit log could not be written (see the node's log); the call's "
                "outcome is not confirmed",
            ) from None

    @staticmethod
    async def _produce(entry: Registered, call: ApiRequest, served: Served) -> Kept:
        """A public answer to keep: the JSON, or the 404 of an unknown miner."""
        try:
            status, body = 200, json_body(_finite(await entry.handler(call)))
        except NotFound as missing:
            status, body = 404, ApiResource._error_body(404, str(missing))
        return Kept(status, body, served.operation, served.pattern)

    def _match(self, segments: list[str], method: str) -> tuple[Registered, dict[str, str]]:
        allowed: list[str] = []
        for entry in self.registry.entries:
            found = entry.route.match(segments)
            if found is None:
                continue
            if entry.route.method == method or (method == "HEAD" and entry.route.method == "GET"):
                return entry, found
            allowed.append(entry.route.method)
        if allowed:
            raise HttpError(
                405,
                f"method {method} not allowed here; use {', '.join(sorted(set(allowed)))}",
                {"allow": ", ".join(sorted({*allowed, "OPTIONS"}))},
            )
        raise HttpError(404, f"no such endpoint: {PREFIX}/{'/'.join(segments)}")

    async def _authorize(self, request: Request, client: str) -> str | None:
        if not self.policy.auth_enabled:
            if client not in LOCALHOST:
                raise HttpError(403, "admin endpoints answer only localhost while api.auth is off")
            return None
        token = self._bearer(request)
        if token is None:
            raise HttpError(401, "this endpoint needs a bearer token (otedama api token create)")
        if len(token) > 200:
            raise HttpError(401, "unknown token")
        name, why = await self.store.run(
            partial(tokens.verify_token, token=token, now=self.clock.seconds())
        )
        if name is None:
            raise HttpError(401, why)
        if self.policy.rate_limiting:
            await self._limit("token", name, self.token_limits)
        return cast(str, name)

    def _failed(self, failure: Failure, request: Request) -> tuple[int, bytes]:
        error = failure.value
        if isinstance(error, HttpError):
            for name, value in error.headers.items():
                request.setHeader(name.encode(), value.encode())
            if error.status == 401:
                request.setHeader(b"www-authenticate", b'Bearer realm="otedama"')
            return error.status, self._error_body(error.status, error.message)
        if isinstance(error, NotFound | Conflict):
            status = _status_of(error)
            return status, self._error_body(status, str(error))
        self.log.failure("API request {path} failed", failure, path=request.path)
        return 500, self._error_body(500, "internal error; see the node's log")

    @staticmethod
    def _error_body(status: int, message: str) -> bytes:
        return json_body({"error": {"status": status, "message": message}})

    def _write(self, answer: tuple[int, bytes], request: Request, served: Served) -> None:
        status, body = answer
        seconds = max(0.0, self.clock.seconds() - served.started)
        for observer in self.observers:
            try:
                observer(served.operation, served.pattern, status, seconds)
            except Exception:
                self.log.failure("API response observer failed")
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(status)
        request.setHeader(b"content-length", str(len(body)).encode())
        if request.method != b"HEAD":
            request.write(body)
        request.finish()
