"""JSON-RPC framing of the devnet, shaped like Bitcoin Core's HTTP server.

Pure functions: a request body in, ``(HTTP status, body)`` out, with the method calls
left to the caller. Core's conventions are kept (``src/rpc/request.cpp``, ``httprpc.cpp``):
a request without ``"jsonrpc": "2.0"`` is answered 1.0 style (``result`` and ``error``
always present; errors with HTTP 500, 404 for an unknown method, 400 for an invalid
request), a 2.0 request gets HTTP 200 and either ``result`` or ``error``; a request that is
itself invalid gets 400 in the style of the version it named. The ``id`` is echoed whenever
the request had one, also in the error for an invalid request, and left out when it had
none. A malformed body is HTTP 500 with -32700; batches are arrays answered with HTTP 200,
without replies to 2.0 notifications (valid or not). Amounts are written as BTC with
exactly 8 decimals (``Amount``, from ``otedama.chain.rpcjson``, shared with the daemon
client).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from otedama.chain.rpcjson import Amount, decode_json, encode_json

__all__ = [
    "RPC_DESERIALIZATION_ERROR",
    "RPC_INVALID_ADDRESS_OR_KEY",
    "RPC_INVALID_PARAMETER",
    "RPC_INVALID_REQUEST",
    "RPC_METHOD_NOT_FOUND",
    "RPC_MISC_ERROR",
    "RPC_PARSE_ERROR",
    "RPC_TYPE_ERROR",
    "RPC_VERIFY_ERROR",
    "RPC_VERIFY_REJECTED",
    "RPC_WALLET_INSUFFICIENT_FUNDS",
    "Amount",
    "BadCall",
    "RpcCall",
    "RpcFault",
    "encode_json",
    "error_reply",
    "parse_body",
    "result_reply",
]

# Bitcoin Core's RPC error codes (src/rpc/protocol.h).
RPC_INVALID_REQUEST = -32600
RPC_METHOD_NOT_FOUND = -32601
RPC_INVALID_PARAMS = -32602
RPC_PARSE_ERROR = -32700
RPC_MISC_ERROR = -1
RPC_TYPE_ERROR = -3
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_WALLET_INSUFFICIENT_FUNDS = -6
RPC_INVALID_PARAMETER = -8
RPC_DESERIALIZATION_ERROR = -22
RPC_VERIFY_ERROR = -25
RPC_VERIFY_REJECTED = -26


class RpcFault(Exception):
    """A JSON-RPC error reply with Core's code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class RpcCall:
    """One parsed request: method, params (list or dict), id, and its JSON-RPC style.

    ``has_id`` says whether the request carried an ``id`` at all (Core echoes it only
    then); a 2.0 request without one is a ``notification``."""

    method: str
    params: list[Any] | dict[str, Any]
    id: Any
    v2: bool
    notification: bool
    has_id: bool = True


@dataclass(frozen=True)
class BadCall:
    """A request Core refuses before running it, with what Core had read of it by then
    (``request.cpp`` reads the ``id`` first, then ``jsonrpc``, then method and params), so
    the error carries its id and its version's style."""

    fault: RpcFault
    id: Any = None
    v2: bool = False
    has_id: bool = True

    @property
    def notification(self) -> bool:
        return self.v2 and not self.has_id


def parse_body(body: bytes) -> tuple[list[RpcCall | BadCall], bool] | RpcFault:
    """Parse a request body.

    Returns ``(calls, is_batch)`` where an entry that is not a valid request is a
    ``BadCall`` with the ``RpcFault`` to answer it with, or a single ``RpcFault`` when
    the body is not JSON. Numbers with a fraction are read as ``Decimal`` so amounts stay
    exact; a number too long or too large for Core to have sent is a parse error
    (``decode_json``).
    """
    try:
        value = decode_json(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return RpcFault(RPC_PARSE_ERROR, "Parse error")
    if isinstance(value, list):
        return [_parse_call(item) for item in value], True
    if isinstance(value, dict):
        return [_parse_call(value)], False
    return RpcFault(RPC_PARSE_ERROR, "Top-level object parse error")


def _parse_call(value: Any) -> RpcCall | BadCall:
    if not isinstance(value, dict):
        return BadCall(RpcFault(RPC_INVALID_REQUEST, "Invalid Request object"))
    has_id = "id" in value
    call_id = value.get("id")

    def bad(message: str, v2: bool = False) -> BadCall:
        return BadCall(RpcFault(RPC_INVALID_REQUEST, message), call_id, v2, has_id)

    version = value.get("jsonrpc")
    if version is not None and not isinstance(version, str):
        return bad("jsonrpc field must be a string")
    if version is not None and version not in ("1.0", "2.0"):
        return bad("JSON-RPC version not supported")
    v2 = version == "2.0"
    method = value.get("method")
    if method is None:
        return bad("Missing method", v2)
    if not isinstance(method, str):
        return bad("Method must be a string", v2)
    params = value.get("params", [])
    if params is None:
        params = []
    if not isinstance(params, list | dict):
        return bad("Params must be an array or object", v2)
    return RpcCall(method, params, call_id, v2, v2 and not has_id, has_id)


def _with_id(reply: dict[str, Any], call: RpcCall | BadCall | None) -> dict[str, Any]:
    """Core's ``JSONRPCReplyObj``: the id last, and only when the request had one (a body
    that could not be read as a request at all is answered with ``"id": null``)."""
    if call is None:
        reply["id"] = None
    elif call.has_id:
        reply["id"] = call.id
    return reply


def result_reply(call: RpcCall, result: Any) -> dict[str, Any]:
    """The reply object for a successful call."""
    if call.v2:
        return _with_id({"jsonrpc": "2.0", "result": result}, call)
    return _with_id({"result": result, "error": None}, call)


def error_reply(fault: RpcFault, call: RpcCall | BadCall | None) -> tuple[int, dict[str, Any]]:
    """HTTP status and reply object for a failed call (``call`` None: unparsable body).

    A 2.0 call that ran and failed is HTTP 200; a 1.0 call, a request refused as invalid
    (``BadCall``, whatever its version) or an unparsable body get Core's HTTP error:
    400 for -32600, 404 for -32601, else 500. In a batch the caller keeps only the body.
    """
    error = {"code": fault.code, "message": fault.message}
    if call is not None and call.v2:
        body = _with_id({"jsonrpc": "2.0", "error": error}, call)
        if isinstance(call, RpcCall):
            return 200, body
    else:
        body = _with_id({"result": None, "error": error}, call)
    if fault.code == RPC_INVALID_REQUEST:
        status = 400
    elif fault.code == RPC_METHOD_NOT_FOUND:
        status = 404
    else:
        status = 500
    return status, body
