"""Sans-IO Stratum V1 codec: newline-delimited JSON framing, parsing and encoding.

Used by both sides: the server parses requests and encodes replies and notifications; a
client (the built-in miner, the benchmark) encodes requests and parses replies and
notifications. Nothing here touches a socket or a clock.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from otedama.stratum.numbers import json_int

__all__ = [
    "DEFAULT_MAX_LINE",
    "MAX_ERROR_CHARS",
    "MAX_ID_CHARS",
    "CodecError",
    "LineFramer",
    "LineTooLong",
    "Message",
    "Notification",
    "Request",
    "Response",
    "encode_error",
    "encode_id",
    "encode_notification",
    "encode_request",
    "encode_response",
    "encode_result_false",
    "encode_result_true",
    "parse_message",
]

DEFAULT_MAX_LINE = 16 * 1024
"""Longest accepted line in bytes, without the newline."""

MAX_ID_CHARS = 64
"""Longest string id accepted (and so echoed in a reply); longer lines are refused."""

MAX_ERROR_CHARS = 256
"""Error messages are cut to this length so a reply never echoes a miner's bulk."""

JsonId = int | str | None

_decoder = json.JSONDecoder(parse_int=json_int)
_decode = _decoder.decode
# typeshed types make_scanner's argument as itself; it takes the decoder.
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_decoder)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line longer than the framer's limit was received and discarded."""

    length: int


class LineFramer:
    """Split a byte stream into lines, enforcing a maximum line length.

    ``feed(data)`` returns the complete lines (without ``\\n`` or a trailing ``\\r``) and a
    ``LineTooLong`` marker in place of each over-long line, which is skipped up to its
    newline. Empty lines are dropped.
    """

    __slots__ = ("_buffer", "_discarded", "_discarding", "max_line")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be positive, got {max_line!r}")
        self.max_line = max_line
        self._buffer = b""
        self._discarding = False
        self._discarded = 0

    def feed(self, data: bytes) -> list[bytes | LineTooLong]:
        """Add received bytes; return the lines they complete."""
        if not self._buffer and not self._discarding:
            # The usual read: one whole line and its newline, nothing held back.
            end = data.find(b"\n")
            if end == len(data) - 1 and end <= self.max_line + 1:
                line = data[:end]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) <= self.max_line and line and not line.isspace():
                    return [line]
            buf = data
        else:
            buf = self._buffer + data
        out: list[bytes | LineTooLong] = []
        start = 0
        max_line = self.max_line
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            if self._discarding:
                out.append(LineTooLong(self._discarded + end - start))
                self._discarding = False
                self._discarded = 0
            else:
                line = buf[start:end]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) > max_line:
                    out.append(LineTooLong(len(line)))
                elif line.strip():
                    out.append(line)
            start = end + 1
        rest = buf[start:]
        if self._discarding:
            self._discarded += len(rest)
            rest = b""
        elif len(rest) > max_line:
            self._discarding = True
            self._discarded = len(rest)
            rest = b""
        self._buffer = rest
        return out

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line held back."""
        return len(self._buffer)


class CodecError(ValueError):
    """A line that is not a valid Stratum JSON message; ``id`` is set when it was readable."""

    def __init__(self, message: str, msg_id: JsonId = None) -> None:
        super().__init__(message)
        self.msg_id = msg_id


@dataclass(frozen=True, slots=True)
class Request:
    """A method call with an id expecting a reply (``mining.submit`` and friends)."""

    id: JsonId
    method: str
    params: list[Any]


@dataclass(frozen=True, slots=True)
class Notification:
    """A method call with ``id: null`` (``mining.notify``, ``mining.set_difficulty``)."""

    method: str
    params: list[Any]


@dataclass(frozen=True, slots=True)
class Response:
    """A reply: ``result`` or ``error`` (``[code, message, traceback]`` in Stratum V1)."""

    id: JsonId
    result: Any
    error: Any


Message = Request | Notification | Response


def _check_id(value: Any) -> JsonId:
    if value is None:
        return value
    if isinstance(value, str):
        if len(value) > MAX_ID_CHARS:
            raise CodecError(f"message id of {len(value)} characters exceeds {MAX_ID_CHARS}")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise CodecError(f"message id must be a number, a string or null, got {type(value).__name__}")


def parse_message(line: bytes | str) -> Message:
    """Parse one JSON line into a ``Request``, ``Notification`` or ``Response``.

    Raises ``CodecError`` for invalid JSON or a shape that is neither a call nor a reply.
    """
    try:
        text = line.decode() if isinstance(line, bytes) else line
        try:
            # A line that is one JSON value with no surrounding whitespace (what miners
            # send) goes to the scanner directly; anything else, errors included, through
            # the decoder, which says what is wrong.
            obj, end = _scan(text, 0)
            if end != len(text):
                raise StopIteration(end)
        except StopIteration:
            obj = _decode(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise CodecError("invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise CodecError(f"a Stratum message must be a JSON object, got {type(obj).__name__}")
    msg_id = _check_id(obj.get("id"))
    method = obj.get("method")
    if method is not None:
        if not isinstance(method, str):
            raise CodecError(f"method must be a string, got {method!r}", msg_id)
        params = obj.get("params", [])
        if params is None:
            params = []
        elif not isinstance(params, list):
            raise CodecError(f"params of {method} must be a JSON array, got {params!r}", msg_id)
        if msg_id is None:
            return Notification(method, params)
        return Request(msg_id, method, params)
    if "result" in obj or "error" in obj:
        return Response(msg_id, obj.get("result"), obj.get("error"))
    raise CodecError("message has neither a method nor a result", msg_id)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def encode_id(msg_id: JsonId) -> bytes:
    """JSON text of a message id (fast path for the usual small integers)."""
    if type(msg_id) is int:
        return str(msg_id).encode()
    return json.dumps(msg_id).encode()


def encode_request(msg_id: JsonId, method: str, params: Sequence[Any]) -> bytes:
    """One request line (client side): ``{"id":…,"method":…,"params":[…]}``."""
    return _dumps({"id": msg_id, "method": method, "params": list(params)})


def encode_notification(method: str, params: Sequence[Any]) -> bytes:
    """One server notification line with ``id: null``."""
    return _dumps({"id": None, "method": method, "params": list(params)})


def encode_response(msg_id: JsonId, result: Any, error: Any = None) -> bytes:
    """One reply line ``{"id":…,"result":…,"error":…}``."""
    return _dumps({"id": msg_id, "result": result, "error": error})


def encode_error(msg_id: JsonId, code: int, message: str) -> bytes:
    """An error reply in ckpool's form: ``result: null``, ``error: [code, message, null]``.

    ``message`` is cut to ``MAX_ERROR_CHARS``."""
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    return _dumps({"id": msg_id, "result": None, "error": [code, message, None]})


def encode_result_true(msg_id: JsonId) -> bytes:
    """``{"id":…,"result":true,"error":null}`` without going through ``json.dumps``."""
    return b'{"id":' + encode_id(msg_id) + b',"result":true,"error":null}\n'


def encode_result_false(msg_id: JsonId, error_array: bytes) -> bytes:
    """A rejected submit: ``result: false`` with a pre-encoded ``[code,"message",null]``."""
    return b'{"id":' + encode_id(msg_id) + b',"result":false,"error":' + error_array + b"}\n"
