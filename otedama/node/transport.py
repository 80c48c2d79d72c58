"""The HTTP JSON-RPC transport to one or more daemons, with failover and cookie auth.

Calls go to the first endpoint in config order that is not backing off; an endpoint that
fails at the transport level (refused, timed out, a reply that is not JSON-RPC, refused
credentials) backs off and the call moves on to the next one, with a log line when the
transport switches. A JSON-RPC error reply is an answer, not a failure, and never moves
the call. ``call_first`` is for calls that must not move (the wallet's): first endpoint,
no failover, no retry. The chain view (``chainview.py``) and the wallet view
(``wallet.py``) speak through it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from otedama.node.rpc import (
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

__all__ = ["RpcTransport"]


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


class RpcTransport:
    """JSON-RPC over HTTP to one or more bitcoind (or devnet) endpoints, in failover order.

    ``clock`` times the timeouts and back-offs; when ``http_client`` (a ``treq``
    ``HTTPClient``) is not given, ``clock`` must be the reactor, and a persistent
    connection pool is used. Call :meth:`close` on shutdown to drop idle connections.
    """

    log = Logger()

    def __init__(
        self,
        endpoints: Sequence[RpcEndpoint],
        *,
        clock: IReactorTime,
        timeout: float = 30.0,
        http_client: Any = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        if not endpoints:
            raise ValueError("the RPC transport needs at least one endpoint")
        if timeout <= 0:
            raise ValueError(f"bitcoind RPC timeout must be positive, got {timeout!r}")
        self._states = [_EndpointState(e) for e in endpoints]
        # zope interfaces do not type-check method calls without the mypy-zope plugin
        self._clock: Any = clock
        self._timeout = timeout
        self._backoff = (backoff_initial, backoff_max)
        self._ids = itertools.count(1)
        self._active = 0
        self._recovery_listeners: list[Callable[[], object]] = []
        #: ``observer(url, seconds, error)`` after every exchange with one endpoint
        #: (``error`` None when it answered; the metrics hook). Never breaks a call.
        self.observers: list[Callable[[str, float, BaseException | None], object]] = []
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
                f"RpcTransport: clock {reactor!r} cannot make connections; pass the reactor "
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

    @property
    def active_index(self) -> int:
        """The position of the endpoint that answered last."""
        return self._active

    @property
    def timeout(self) -> float:
        """The per-call timeout in seconds."""
        return self._timeout

    @property
    def clock(self) -> Any:
        """The clock that times calls (the reactor in the node)."""
        return self._clock

    def on_recovery(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever an endpoint that was failing answers again (any
        call: the template source uses it to stop waiting out its back-off)."""
        self._recovery_listeners.append(callback)

    async def call_first(self, method: str, params: list[Any], *, path: str = "") -> Any:
        """A call that must not move: first endpoint only, no failover, no automatic retry
        (a wallet call whose outcome is unclear must be looked up, not sent again)."""
        return await self._exchange(
            self._states[0], method, params, self._timeout, path, retry_lost=False
        )

    async def call_endpoint(self, index: int, method: str, params: list[Any]) -> Any:
        """One call to the endpoint at ``index``, whatever its state (start-up checks)."""
        return await self._exchange(self._states[index], method, params, self._timeout, "")

    async def call(
        self,
        method: str,
        params: list[Any],
        *,
        timeout: float | None = None,
        longpoll: bool = False,
    ) -> Any:
        """Call ``method`` with failover; its ``result`` or the last :class:`NodeError`.

        With ``longpoll`` a timeout only means "no news": it is raised at once and does not
        count against the endpoint.
        """
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
        recovered = state.failures > 0
        if recovered and len(self._states) > 1:
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
        if recovered:
            for callback in list(self._recovery_listeners):
                try:
                    callback()
                except Exception:
                    self.log.failure("RPC recovery listener {callback!r} failed", callback=callback)

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
        """One observed request to one endpoint (see :attr:`observers`)."""
        if not self.observers:
            return await self._exchange_once(state, method, params, timeout, path, retry_lost)
        started = self._clock.seconds()
        error: BaseException | None = None
        try:
            return await self._exchange_once(state, method, params, timeout, path, retry_lost)
        except BaseException as e:
            error = e
            raise
        finally:
            seconds = max(0.0, self._clock.seconds() - started)
            for observer in self.observers:
                try:
                    observer(state.endpoint.url, seconds, error)
                except Exception:
                    self.log.failure("RPC exchange observer failed")

    async def _exchange_once(
        self,
        state: _EndpointState,
        method: str,
        params: list[Any],
        timeout: float,
        path: str,
        retry_lost: bool,
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
    """Our own cancel (a stop), in any of the shapes the HTTP client wraps it in: a
    ResponseFailed, a RequestTransmissionFailed (a list of Failures), a cancelled connect."""
    if isinstance(error, CancelledError | ConnectingCancelledError):
        return True
    reasons = getattr(error, "reasons", None)
    if isinstance(reasons, list):
        return any(
            isinstance(f, Failure) and f.check(CancelledError, ConnectingCancelledError)
            for f in reasons
        )
    return False
