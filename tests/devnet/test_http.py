"""The devnet's HTTP as Bitcoin Core's: framing, keep-alive, statuses and authentication,
checked by a raw-socket client that reads replies by ``Content-Length`` only (as ckpool's
and other simple RPC clients do). The client runs in a thread so the reactor serves it."""

from __future__ import annotations

import base64
import json
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from otedama.chain.target import target_to_difficulty
from otedama.devnet.service import DevnetHandle, start_devnet

T = TypeVar("T")


@dataclass
class Reply:
    status_line: str
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """One TCP connection; sends requests and reads replies by Content-Length only."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(
        self,
        body: bytes = b"",
        method: str = "POST",
        path: str = "/",
        version: str = "HTTP/1.1",
        headers: tuple[str, ...] = (),
        eol: bytes = b"\r\n",
    ) -> Reply:
        lines = [f"{method} {path} {version}", "Host: 127.0.0.1", *headers]
        if method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        head = eol.join(line.encode() for line in lines) + eol + eol
        self.sock.sendall(head + body)
        return self.read_reply()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.buffer += data

    def read_reply(self) -> Reply:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"header {name} twice"
            headers[name.lower()] = value.strip()
        status = int(status_line.split(" ")[1])
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Reply(status_line, status, headers, body)

    def server_closed(self) -> bool:
        """True when the server closes the connection (reads until EOF or timeout)."""
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def exchange(port: int, *requests: dict[str, Any]) -> list[Reply]:
    """Send ``requests`` (``RawClient.send`` arguments) in turn on one connection."""
    client = RawClient(port)
    try:
        return [client.send(**request) for request in requests]
    finally:
        client.close()


def call(method: str, *params: Any, id: Any = 1, **extra: Any) -> bytes:
    return json.dumps({"method": method, "params": list(params), "id": id, **extra}).encode()


async def in_thread(work: Callable[[], T]) -> T:
    result: T = await deferToThread(work)
    return result


async def devnet(tmp_path: Path, **options: Any) -> DevnetHandle:
    return await start_devnet(
        reactor, "tcp:0:interface=127.0.0.1", Fraction(1, 10**9), tmp_path, **options
    )


def basic(user: str, password: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def assert_core_framing(reply: Reply) -> None:
    """What every Core reply with a body has: Content-Length, never chunked, no Server."""
    assert "transfer-encoding" not in reply.headers
    assert int(reply.headers["content-length"]) == len(reply.body)
    assert "server" not in reply.headers


@pytest_twisted.ensureDeferred
async def test_replies_have_content_length_and_one_socket_serves_many_requests(
    tmp_path: Path,
) -> None:
    handle = await devnet(tmp_path)

    def session() -> list[Reply]:
        client = RawClient(handle.port)
        try:
            replies = [
                client.send(call("getblockcount")),
                client.send(call("getbestblockhash", id="two")),
                client.send(b"[" + call("getblockcount") + b"," + call("getdifficulty") + b"]"),
                client.send(call("getblockhash", 0), eol=b"\n"),  # ckpool's bare-LF headers
            ]
            client.sock.settimeout(0.5)
            assert not client.server_closed()
            return replies
        finally:
            client.close()

    try:
        replies = await in_thread(session)
    finally:
        await handle.stop()
    for reply in replies:
        assert reply.status_line == "HTTP/1.1 200 OK"
        assert_core_framing(reply)
        assert reply.headers["content-type"] == "application/json"
        assert reply.body.endswith(b"\n") and reply.body.count(b"\n") == 1
    assert replies[0].json() == {"result": 0, "error": None, "id": 1}
    assert replies[1].json()["id"] == "two"
    difficulty = float(target_to_difficulty(handle.chain.target))
    assert [item["result"] for item in replies[2].json()] == [0, difficulty]
    assert replies[3].json()["result"] == handle.chain.genesis.hash[::-1].hex()


@pytest_twisted.ensureDeferred
async def test_connection_close_and_http_1_0_keep_alive_as_libevent_does(
    tmp_path: Path,
) -> None:
    handle = await devnet(tmp_path)

    def session() -> tuple[Reply, bool, Reply, Reply, bool, Reply, bool]:
        closing = RawClient(handle.port)
        old_alive = RawClient(handle.port)
        old = RawClient(handle.port)
        try:
            r1 = closing.send(call("getblockcount"), headers=("Connection: close",))
            closed1 = closing.server_closed()
            r2 = old_alive.send(
                call("getblockcount"), version="HTTP/1.0", headers=("Connection: keep-alive",)
            )
            r3 = old_alive.send(
                call("getblockcount"), version="HTTP/1.0", headers=("Connection: keep-alive",)
            )
            old_alive.sock.settimeout(0.5)
            alive = not old_alive.server_closed()
            r4 = old.send(call("getblockcount"), version="HTTP/1.0")
            closed4 = old.server_closed()
            return r1, closed1, r2, r3, alive, r4, closed4
        finally:
            for c in (closing, old_alive, old):
                c.close()

    try:
        r1, closed1, r2, r3, alive, r4, closed4 = await in_thread(session)
    finally:
        await handle.stop()
    assert r1.status == 200 and r1.headers["connection"] == "close" and closed1
    assert_core_framing(r1)
    assert r2.status_line == "HTTP/1.0 200 OK" and r2.headers["connection"] == "keep-alive"
    assert r3.json()["result"] == 0 and alive
    assert r4.status == 200 and r4.json()["result"] == 0 and closed4
    assert_core_framing(r4)


@pytest_twisted.ensureDeferred
async def test_statuses_and_error_codes_are_cores(tmp_path: Path) -> None:
    handle = await devnet(tmp_path)
    unknown_hash = "11" * 32

    requests = {
        "not found path": {"body": call("getblockcount"), "path": "/rest/chaininfo.json"},
        "wallet path": {"body": call("getblockcount"), "path": "/wallet/main"},
        "get": {"method": "GET"},
        "unknown http method": {"method": "PATCH"},
        "parse": {"body": b"{not json"},
        "top level": {"body": b"42"},
        "invalid request": {"body": b'{"params": [], "id": 3}'},
        "method not found": {"body": call("getwork")},
        "out of range": {"body": call("getblockhash", 999)},
        "block not found": {"body": call("getblock", unknown_hash)},
        "type error": {"body": call("getblockhash", "zero")},
        "missing argument": {"body": call("submitblock")},
        "2.0 error": {"body": call("nosuch", jsonrpc="2.0")},
        "2.0 notification": {"body": b'{"jsonrpc": "2.0", "method": "getblockcount"}'},
        "after all that": {"body": call("getblockcount")},
    }
    try:
        replies = await in_thread(lambda: exchange(handle.port, *requests.values()))
    finally:
        await handle.stop()
    r = dict(zip(requests, replies, strict=True))
    for name in ("not found path", "unknown http method"):
        assert r[name].status == 404 if name == "not found path" else r[name].status == 405
        assert r[name].body == b"" and r[name].headers["content-length"] == "0", name
    assert r["wallet path"].json()["result"] == 0
    assert r["get"].status == 405
    assert r["get"].body == b"JSONRPC server handles only POST requests"
    assert_core_framing(r["get"])
    expected = {
        "parse": (500, -32700, "Parse error"),
        "top level": (500, -32700, "Top-level object parse error"),
        "invalid request": (400, -32600, "Missing method"),
        "method not found": (404, -32601, "Method not found"),
        "out of range": (500, -8, "Block height out of range"),
        "block not found": (500, -5, "Block not found"),
        "type error": (500, -3, "JSON value of type string is not of expected type number"),
    }
    for name, (status, code, message) in expected.items():
        reply = r[name]
        assert reply.status == status, name
        assert_core_framing(reply)
        assert reply.json()["error"] == {"code": code, "message": message}, name
        assert reply.json()["result"] is None
    assert r["invalid request"].json()["id"] == 3  # Core reads the id before the method
    missing = r["missing argument"]
    assert missing.status == 500 and missing.json()["error"]["code"] == -1
    assert missing.json()["error"]["message"].startswith("submitblock")
    assert r["2.0 error"].status == 200
    assert r["2.0 error"].json() == {
        "jsonrpc": "2.0",
        "error": {"code": -32601, "message": "Method not found"},
        "id": 1,
    }
    notification = r["2.0 notification"]
    assert notification.status == 204 and notification.body == b""
    assert "content-type" not in notification.headers
    assert r["after all that"].json()["result"] == 0


@pytest_twisted.ensureDeferred
async def test_invalid_requests_keep_their_id_and_version_as_in_core(tmp_path: Path) -> None:
    """Core's ``interface_rpc.py`` cases: the error for an invalid request echoes its id
    (in 2.0 style once it said 2.0) with HTTP 400; no ``id`` in, none out; a batch leaves
    out 2.0 notifications, invalid ones too, and is 204 when nothing is left."""
    handle = await devnet(tmp_path)
    bodies = {
        "missing method": b'{"params": [], "id": 3}',
        "2.0 missing method": b'{"jsonrpc": "2.0", "id": 6}',
        "jsonrpc not a string": b'{"jsonrpc": 2, "method": "getblockcount"}',
        "unknown version": b'{"jsonrpc": "3.0", "method": "getblockcount", "id": 4}',
        "2.0 invalid notification": b'{"jsonrpc": "2.0"}',
        "no id": b'{"method": "getblockcount"}',
        "batch of notifications": b'[{"jsonrpc": "2.0", "pizza": 1},'
        b' {"jsonrpc": "2.0", "method": "getblockcount"}]',
        "mixed batch": b'[{"jsonrpc": "2.0", "pizza": 1}, {"pizza": 2, "id": 9},'
        b' {"jsonrpc": "2.1", "id": 10}, {"method": "getblockcount"}]',
    }
    try:
        replies = await in_thread(
            lambda: exchange(handle.port, *({"body": body} for body in bodies.values()))
        )
    finally:
        await handle.stop()
    r = dict(zip(bodies, replies, strict=True))
    for name, reply in r.items():
        if name != "batch of notifications":
            assert_core_framing(reply)

    def invalid(message: str) -> dict[str, Any]:
        return {"code": -32600, "message": message}

    expected: dict[str, tuple[int, Any]] = {
        "missing method": (400, {"result": None, "error": invalid("Missing method"), "id": 3}),
        "2.0 missing method": (
            400,
            {"jsonrpc": "2.0", "error": invalid("Missing method"), "id": 6},
        ),
        "jsonrpc not a string": (
            400,
            {"result": None, "error": invalid("jsonrpc field must be a string")},
        ),
        "unknown version": (
            400,
            {"result": None, "error": invalid("JSON-RPC version not supported"), "id": 4},
        ),
        "2.0 invalid notification": (400, {"jsonrpc": "2.0", "error": invalid("Missing method")}),
        "no id": (200, {"result": 0, "error": None}),
        "mixed batch": (
            200,
            [
                {"result": None, "error": invalid("Missing method"), "id": 9},
                {"result": None, "error": invalid("JSON-RPC version not supported"), "id": 10},
                {"result": 0, "error": None},
            ],
        ),
    }
    for name, (status, body) in expected.items():
        assert (r[name].status, r[name].json()) == (status, body), name
    batch = r["batch of notifications"]
    assert batch.status == 204 and batch.body == b"" and "content-length" not in batch.headers


@pytest_twisted.ensureDeferred
async def test_rpcuser_and_rpcpassword_are_required_when_set(tmp_path: Path) -> None:
    handle = await devnet(tmp_path, credentials=("alice", "s3cret:with colon"))
    body = call("getblockcount")
    headers = [
        (),
        (basic("alice", "wrong"),),
        ("Authorization: Bearer x",),
        ("Authorization: Basic !!!",),
        (basic("alice", "s3cret:with colon"),),
    ]
    try:
        replies = await in_thread(
            lambda: exchange(handle.port, *({"body": body, "headers": h} for h in headers))
        )
    finally:
        await handle.stop()
    for reply in replies[:4]:
        assert reply.status == 401
        assert reply.headers["www-authenticate"] == 'Basic realm="jsonrpc"'
        assert reply.body == b"" and reply.headers["content-length"] == "0"
    assert replies[4].status == 200 and replies[4].json()["result"] == 0


@pytest_twisted.ensureDeferred
async def test_cookie_file_is_written_at_start_and_removed_at_stop(tmp_path: Path) -> None:
    handle = await devnet(tmp_path, cookie=True, credentials=("bob", "pw"))
    cookie = tmp_path / ".cookie"
    try:
        text = cookie.read_text()
        mode = stat.S_IMODE(cookie.stat().st_mode)
        user, _, password = text.partition(":")

        body = call("getblockcount")
        headers = [(), (basic(user, password),), (basic("bob", "pw"),), (basic(user, "0" * 64),)]
        replies = await in_thread(
            lambda: exchange(handle.port, *({"body": body, "headers": h} for h in headers))
        )
    finally:
        await handle.stop()
    assert user == "__cookie__" and len(password) == 64 and int(password, 16) >= 0
    assert mode == 0o600
    assert [r.status for r in replies] == [401, 200, 200, 401]
    assert not cookie.exists()


@pytest_twisted.ensureDeferred
async def test_a_body_beyond_cores_32_mib_is_refused_with_413(tmp_path: Path) -> None:
    handle = await devnet(tmp_path)
    too_long = 0x02000000 + 1

    def announced() -> tuple[Reply, bool]:
        client = RawClient(handle.port)
        try:
            client.sock.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\n" + f"Content-Length: {too_long}\r\n\r\n".encode()
            )
            return client.read_reply(), client.server_closed()
        finally:
            client.close()

    def chunked() -> tuple[Reply, bool]:
        client = RawClient(handle.port)
        try:
            client.sock.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + f"{too_long:x}\r\n".encode()
            )
            piece = b" " * 1_048_576
            for _ in range(too_long // len(piece)):
                client.sock.sendall(piece)
            client.sock.sendall(b" ")  # the byte too many: the server has read all we sent
            return client.read_reply(), client.server_closed()
        finally:
            client.close()

    try:
        first, first_closed = await in_thread(announced)
        second, second_closed = await in_thread(chunked)
        [after] = await in_thread(lambda: exchange(handle.port, {"body": call("getblockcount")}))
    finally:
        await handle.stop()
    for reply, closed in ((first, first_closed), (second, second_closed)):
        assert reply.status == 413 and reply.body == b"" and closed
    assert after.json()["result"] == 0


def test_wrong_passwords_are_answered_late_and_logged_once_a_minute(tmp_path: Path) -> None:
    """An outsider sets the pace of wrong passwords: 401 comes after 250 ms, and the log
    gets one line per minute with the count, not one per attempt."""
    from twisted.internet.task import Clock
    from twisted.logger import Logger
    from twisted.web.test.requesthelper import DummyRequest

    from otedama.devnet.auth import RpcAuth
    from otedama.devnet.service import DevnetResource

    clock = Clock()
    events: list[dict[str, Any]] = []
    resource = DevnetResource(None, RpcAuth([("alice", "pw")]), clock)  # type: ignore[arg-type]
    resource.log = Logger(observer=events.append)

    def attempt() -> Any:
        request = DummyRequest([b""])
        request.uri, request.method, request.channel = b"/", b"POST", object()
        wrong = base64.b64encode(b"alice:guess")
        request.requestHeaders.setRawHeaders(b"authorization", [b"Basic " + wrong])
        resource.render(request)
        return request

    first = attempt()
    assert first.finished == 0  # not yet: the answer waits
    clock.advance(0.25)
    assert first.responseCode == 401 and first.finished == 1
    assert first.responseHeaders.getRawHeaders(b"www-authenticate") == [b'Basic realm="jsonrpc"']
    for _ in range(4):
        attempt()
        clock.advance(1)
    clock.advance(60)
    attempt()
    assert [e["count"] for e in events] == [1, 5]
