"""The lean asyncio reactor (``otedama.ops.reactor``), in a process of its own: pytest's
process runs on the reactor pytest-twisted installs, so a child installs this one.

Checked: the entry points get it; TCP works both ways through it; a ``doRead`` that raises
is logged and its connection dropped while others are served; an error escaping the
disconnect path (a ``connectionLost`` that raises) is logged with the connection's prefix
and the reactor goes on; Twisted's own asyncio reactor, installed first, is accepted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent(
    """
    import json, sys
    from otedama.ops.reactor import LeanAsyncioReactor, install_asyncio_reactor
    reactor = install_asyncio_reactor()
    from twisted.internet import protocol
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
    from twisted.logger import globalLogPublisher

    logged = []
    globalLogPublisher.addObserver(
        lambda e: logged.append(e.get("log_format") or "") if e.get("log_failure") else None
    )
    seen = {"lost": [], "echo": b""}

    class Server(protocol.Protocol):
        def dataReceived(self, data):
            if data.startswith(b"boom"):
                raise RuntimeError("doRead failed on purpose")
            if data.startswith(b"lost-raises"):
                self.raise_on_lost = True
                self.transport.loseConnection()
                return
            self.transport.write(data.upper())
        def connectionLost(self, reason):
            seen["lost"].append(reason.type.__name__)
            if getattr(self, "raise_on_lost", False):
                raise RuntimeError("connectionLost failed on purpose")

    class Client(protocol.Protocol):
        def __init__(self, send):
            self.send = send
            self.got = b""
        def connectionMade(self):
            self.transport.write(self.send)
        def dataReceived(self, data):
            self.got += data

    async def main():
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            protocol.Factory.forProtocol(Server)
        )
        number = port.getHost().port
        clients = []
        for send in (b"boom", b"lost-raises", b"hello"):
            client = Client(send)
            await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", number), client)
            clients.append(client)
        from twisted.internet.task import deferLater
        for _ in range(100):
            await deferLater(reactor, 0.02, lambda: None)
            if clients[2].got == b"HELLO" and len(seen["lost"]) >= 2:
                break
        seen["echo"] = clients[2].got.decode()
        await port.stopListening()

    def run():
        from twisted.internet.defer import Deferred
        d = Deferred.fromCoroutine(main())
        d.addBoth(lambda r: (print(json.dumps({
            "reactor": type(reactor).__name__,
            "lean": isinstance(reactor, LeanAsyncioReactor),
            "echo": seen["echo"],
            "lost": sorted(seen["lost"]),
            "logged": logged,
            "error": None if not hasattr(r, "getTraceback") else r.getTraceback(),
        })), reactor.stop()))
    reactor.callWhenRunning(run)
    reactor.run()
    """
)


def run(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_lean_reactor_serves_tcp_and_logs_what_fails_without_stopping() -> None:
    result = run(SCENARIO)
    assert result["error"] is None
    assert result["reactor"] == "LeanAsyncioReactor" and result["lean"] is True
    # The healthy connection was served beside the two that failed.
    assert result["echo"] == "HELLO"
    # The raising doRead dropped its connection (the error is its reason); the raising
    # connectionLost ran.
    assert "RuntimeError" in result["lost"] and len(result["lost"]) >= 2  # type: ignore[arg-type]
    logged = result["logged"]
    assert "{what} of {prefix} failed" in logged  # type: ignore[operator]
    assert "unhandled error serving {prefix}" in logged  # type: ignore[operator]


def test_twisteds_own_asyncio_reactor_installed_first_is_accepted() -> None:
    code = (
        "from twisted.internet import asyncioreactor; asyncioreactor.install()\n"
        "import json\n"
        "from otedama.ops.reactor import install_asyncio_reactor\n"
        "r = install_asyncio_reactor()\n"
        "print(json.dumps({'reactor': type(r).__name__}))\n"
    )
    assert run(code) == {"reactor": "AsyncioSelectorReactor"}


def test_another_reactor_installed_first_is_refused_with_the_way_out() -> None:
    code = (
        "from twisted.internet import selectreactor; selectreactor.install()\n"
        "import json\n"
        "from otedama.ops.reactor import WrongReactor, install_asyncio_reactor\n"
        "try:\n    install_asyncio_reactor()\nexcept WrongReactor as e:\n"
        "    print(json.dumps({'refused': str(e)}))\n"
    )
    refused = str(run(code)["refused"])
    assert "--reactor=asyncio" in refused and "selectreactor" in refused
