"""JSON-RPC framing of the devnet, shaped like Bitcoin Core's HTTP server.

Pure functions: a request body in, ``(HTTP status, body)`` out, with the method calls
left to the caller. Core's conventions are kept: a request without ``"jsonrpc": "2.0"`` is
answered 1.0 style (``result``, ``error`` and ``id`` always present; errors with HTTP 500,
404 for an unknown method, 400 for an invalid request), a 2.0 request gets HTTP 200 and
either ``result`` or ``error``; a malformed body is HTTP 500 with -32700; batches are arrays
answered with HTTP 200. Amounts are written as BTC with exactly 8 decimals (``Amount``,
from ``otedama.chain.rpcjson``, shared with the daemon client).
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
    """One parsed request: method, params (list or dict), id, and its JSON-RPC style."""

    method: str
    params: list[Any] | dict[str, Any]
    id: Any
    v2: bool
    notification: bool


def parse_body(body: bytes) -> tuple[list[RpcCall | RpcFault], bool] | RpcFault:
    """Parse a request body.

    Returns ``(calls, is_batch)`` where an entry that is not a valid request is the
    ``RpcFault`` to answer it with, or a single ``RpcFault`` when the body is not JSON.
    Numbers with a fraction are read as ``Decimal`` so amounts stay exact; a number too
    long or too large for Core to have sent is a parse error (``decode_json``).
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


def _parse_call(value: Any) -> RpcCall | RpcFault:
    if not isinstance(value, dict):
        return RpcFault(RPC_INVALID_REQUEST, "Invalid Request object")
    version = value.get("jsonrpc")
    if version is not None and version not in ("1.0", "2.0"):
        return RpcFault(RPC_INVALID_REQUEST, "JSON-RPC version not supported")
    v2 = version == "2.0"
    method = value.get("method")
    if method is None:
        return RpcFault(RPC_INVALID_REQUEST, "Missing method")
    if not isinstance(method, str):
        return RpcFault(RPC_INVALID_REQUEST, "Method must be a string")
    params = value.get("params", [])
    if params is None:
        params = []
    if not isinstance(params, list | dict):
        return RpcFault(RPC_INVALID_REQUEST, "Params must be an array or object")
    return RpcCall(method, params, value.get("id"), v2, v2 and "id" not in value)


def result_reply(call: RpcCall, result: Any) -> dict[str, Any]:
    """The reply object for a successful call."""
    if call.v2:
        return {"jsonrpc": "2.0", "result": result, "id": call.id}
    return {"result": result, "error": None, "id": call.id}


def error_reply(fault: RpcFault, call: RpcCall | None) -> tuple[int, dict[str, Any]]:
    """HTTP status and reply object for a failed call (``call`` None: unparsable request)."""
    error = {"code": fault.code, "message": fault.message}
    if call is not None and call.v2:
        return 200, {"jsonrpc": "2.0", "error": error, "id": call.id}
    if fault.code == RPC_INVALID_REQUEST:
        status = 400
    elif fault.code == RPC_METHOD_NOT_FOUND:
        status = 404
    else:
        status = 500
    return status, {"result": None, "error": error, "id": None if call is None else call.id}
