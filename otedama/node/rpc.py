"""JSON-RPC over HTTP to bitcoind: endpoints, credentials, errors and reply decoding.

Everything here is pure (no reactor, no sockets) so that the framing rules can be tested
bytes in, values out; ``bitcoind.py`` does the I/O. Bitcoin Core answers in two styles and
both are understood: JSON-RPC 1.0 (``result`` and ``error`` always present, errors with
HTTP 500 or 404) and JSON-RPC 2.0 (HTTP 200 with either ``result`` or ``error``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from otedama.chain.rpcjson import decode_json, encode_json

__all__ = [
    "RPC_IN_WARMUP",
    "NodeError",
    "RpcAuthError",
    "RpcConnectionError",
    "RpcEndpoint",
    "RpcError",
    "RpcProtocolError",
    "RpcTimeout",
    "backoff_delay",
    "decode_reply",
    "encode_request",
]

#: Core's "Loading block index..." / "Verifying blocks..." while it starts.
RPC_IN_WARMUP = -28

_AUTH_HINT = (
    "check rpcuser/rpcpassword (or rpcauth) in bitcoin.conf against the node's bitcoind "
    "settings, or the cookie file path"
)


class NodeError(Exception):
    """Base of every failure talking to a block source; none of them should stop the node."""


class RpcError(NodeError):
    """The daemon answered with a JSON-RPC error object (``code``, ``message``)."""

    def __init__(self, code: int, message: str, method: str | None = None) -> None:
        where = f" to {method}" if method else ""
        super().__init__(f"bitcoind error {code}{where}: {message}")
        self.code = code
        self.message = message
        self.method = method


class RpcAuthError(NodeError):
    """The daemon refused our credentials (HTTP 401) or our address (HTTP 403)."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"bitcoind at {url} refused the request: {detail}")
        self.url = url


class RpcConnectionError(NodeError):
    """No complete HTTP exchange: refused, unreachable, or the connection dropped.

    ``request_sent`` is True when the request may have reached the daemon (so a wallet
    call's outcome is unknown); ``response_started`` when part of a reply had arrived.
    """

    def __init__(
        self, message: str, *, request_sent: bool = False, response_started: bool = False
    ) -> None:
        super().__init__(message)
        self.request_sent = request_sent
        self.response_started = response_started


class RpcTimeout(NodeError):
    """The daemon did not answer within the timeout."""


class RpcProtocolError(NodeError):
    """The reply was not a JSON-RPC response (not JSON, wrong shape, HTTP 5xx page)."""


@dataclass(frozen=True)
class RpcEndpoint:
    """One daemon: its URL and either user/password, a cookie file, or no credentials.

    The cookie file is what bitcoind writes to its data dir (``.cookie``); it is read when
    first needed and again after a 401, because bitcoind writes a new one on each start.
    """

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    cookie_file: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"bitcoind RPC url {self.url!r}: expected http://host:port or https://host:port"
            )
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                f"bitcoind RPC url {parts.scheme}://…@{parts.hostname}: put the credentials in "
                "user/password or cookie_file, not in the url"
            )
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError(f"bitcoind RPC url {self.url!r}: the port is not a number") from None
        if (self.user is None) != (self.password is None):
            raise ValueError(
                f"bitcoind RPC endpoint {self.url}: give both user and password, or neither"
            )
        if self.cookie_file is not None and self.user is not None:
            raise ValueError(
                f"bitcoind RPC endpoint {self.url}: give user/password or cookie_file, not both"
            )

    def static_authorization(self) -> bytes | None:
        """The ``Authorization`` header for user/password (None for cookie or no auth)."""
        if self.user is None or self.password is None:
            return None
        return basic_authorization(f"{self.user}:{self.password}")

    def read_cookie(self) -> bytes:
        """Read the cookie file and return its ``Authorization`` header.

        A missing file is a :class:`RpcConnectionError` (bitcoind has not started yet, or
        the path is wrong: the message names it); a malformed one an :class:`RpcAuthError`.
        """
        if self.cookie_file is None:
            raise ValueError(f"bitcoind RPC endpoint {self.url} has no cookie file")
        try:
            text = Path(self.cookie_file).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise RpcConnectionError(
                f"bitcoind cookie file {self.cookie_file} does not exist (is bitcoind running "
                "with that data dir, and is the path right?)"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise RpcAuthError(
                self.url, f"cannot read cookie file {self.cookie_file}: {e}"
            ) from None
        if ":" not in text:
            raise RpcAuthError(
                self.url, f"cookie file {self.cookie_file} does not hold user:password"
            )
        return basic_authorization(text)


def basic_authorization(user_password: str) -> bytes:
    """``Basic base64(user:password)`` for an HTTP ``Authorization`` header."""
    return b"Basic " + base64.b64encode(user_password.encode("utf-8"))


def encode_request(method: str, params: list[Any], request_id: int) -> bytes:
    """A JSON-RPC 2.0 request body; ``Decimal`` and ``Amount`` values stay exact numbers."""
    return encode_json(
        {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    ).encode("utf-8")


def decode_reply(status: int, body: bytes, url: str, method: str) -> Any:
    """The ``result`` of a JSON-RPC reply, or the error it stands for.

    HTTP 401/403 are :class:`RpcAuthError`; a JSON-RPC error object (whatever the HTTP
    status: Core uses 200, 404 and 500) is :class:`RpcError`; anything that is not a
    JSON-RPC reply is :class:`RpcProtocolError`. Fractions parse as ``Decimal``; a number
    longer than ``MAX_NUMBER_CHARS`` or beyond ``10**±MAX_EXPONENT`` makes the reply a
    protocol error before it becomes an exact number (``chain.rpcjson.decode_json``).
    """
    if status == 401:
        raise RpcAuthError(url, f"wrong credentials (HTTP 401); {_AUTH_HINT}")
    if status == 403:
        raise RpcAuthError(
            url, "forbidden (HTTP 403); check rpcallowip in bitcoin.conf allows this host"
        )
    try:
        reply = decode_json(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        reply = None
    if not isinstance(reply, dict) or ("result" not in reply and "error" not in reply):
        raise RpcProtocolError(
            f"bitcoind at {url} answered {method} with HTTP {status} that is not a JSON-RPC "
            f"reply: {_snippet(body)}"
        )
    error = reply.get("error")
    if error is not None:
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(message, str):
            raise RpcProtocolError(
                f"bitcoind at {url} answered {method} with a malformed error object: {error!r}"
            )
        raise RpcError(code, message, method)
    return reply.get("result")


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): doubling, capped."""
    if attempt < 1:
        return 0.0
    return float(min(maximum, initial * 2 ** min(attempt - 1, 62)))


def _snippet(body: bytes, limit: int = 120) -> str:
    if not body:
        return "(empty body)"
    text = body[:limit].decode("utf-8", "replace")
    return repr(text + ("…" if len(body) > limit else ""))
