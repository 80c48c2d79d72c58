"""Stratum over TLS with a self-signed certificate made here; reload keeps miners on."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory

from otedama.config import load_config, refused_start
from otedama.ops.bans import DdosSettings
from otedama.ops.firewall import Firewall
from otedama.ops.guard import Guard, guarded
from otedama.ops.tls import TLSConfigError, check_tls_files, load_context, tls_context, tls_factory
from otedama.stratum.jobs import JobManager
from otedama.stratum.protocol import StratumFactory
from tests.guard.certs import self_signed
from tests.stratum.conftest import (
    ADDRESS,
    RecordingSink,
    make_template,
    payout_outputs,
    regtest_settings,
)
from tests.stratum.test_tcp import LineClient


def tls_config(directory: Path, cert: Path, key: Path) -> Any:
    return load_config(
        data={
            "app": {"data_dir": str(directory)},
            "security": {"enable_tls": True, "cert_file": str(cert), "key_file": str(key)},
        },
        env={},
    )


async def tls_miner(port: int, cert: Path) -> LineClient:
    from twisted.internet import reactor

    trust = ssl.Certificate.loadPEM(cert.read_bytes())
    options = ssl.optionsForClientTLS("localhost", trustRoot=trust)
    endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    client: LineClient = await endpoint.connect(Factory.forProtocol(LineClient))
    return client


async def mine_one(client: LineClient, nonce: int, first: bool) -> dict[str, Any]:
    """Subscribe and authorize (first time), then submit one share; its reply."""
    if first:
        client.send(1, "mining.subscribe", ["tls-test/1"])
        client.send(2, "mining.authorize", [ADDRESS + ".tls", "x"])
        await client.wait_lines(4)  # 2 replies, set_difficulty, notify
    notify = [line for line in client.lines if line.get("method") == "mining.notify"][-1]
    job = notify["params"]
    before = len(client.lines)
    msg_id = 100 + nonce
    client.send(
        msg_id, "mining.submit", [ADDRESS + ".tls", job[0], "00" * 8, job[7], f"{nonce:08x}"]
    )
    await client.wait_lines(before + 1)
    return next(line for line in client.lines if line.get("id") == msg_id)


def peer_serial(client: LineClient) -> int:
    transport: Any = client.transport
    return int(transport.getPeerCertificate().get_serial_number())


@pytest_twisted.ensureDeferred
async def test_a_miner_over_tls_mines_and_stays_on_through_a_certificate_reload(
    tmp_path: Path,
) -> None:
    from twisted.internet import reactor

    cert1, key1 = self_signed(tmp_path, "one")
    cert2, key2 = self_signed(tmp_path, "two")
    config = tls_config(tmp_path, cert1, key1)
    tls = tls_context(config)
    assert tls is not None
    jobs = JobManager(payout_outputs, clock=reactor)
    jobs.on_template(make_template())
    stratum = StratumFactory(
        jobs,
        RecordingSink(),
        regtest_settings(start_difficulty=Fraction(1, 2**32), min_difficulty=Fraction(1, 2**32)),
        reactor,
    )
    guard = Guard(Firewall(), DdosSettings(), reactor)
    factory = guarded(guard, tls_factory(tls, stratum, reactor), "stratum-tls", lines=False)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    clients: list[LineClient] = []
    try:
        miner = await tls_miner(port.getHost().port, cert1)
        clients.append(miner)
        reply = await mine_one(miner, 1, first=True)
        assert reply["result"] is True, reply
        first_serial = peer_serial(miner)

        # SIGHUP: the node's reload hook re-reads the files named by the new config.
        hook = tls.reload_hook(reactor)
        swapped = await hook(config, tls_config(tmp_path, cert2, key2))
        assert swapped and tls.reloads == 1

        reply = await mine_one(miner, 2, first=False)
        assert reply["result"] is True, reply
        assert not miner.closed.called
        assert peer_serial(miner) == first_serial

        newcomer = await tls_miner(port.getHost().port, cert2)
        clients.append(newcomer)
        reply = await mine_one(newcomer, 3, first=True)
        assert reply["result"] is True, reply
        # It trusts only the new certificate: the handshake itself proves the swap.
        assert peer_serial(newcomer) != first_serial
        assert len(stratum.server.sessions) == 2
    finally:
        for client in clients:
            assert client.transport is not None
            client.transport.loseConnection()
        await port.stopListening()  # type: ignore[misc]


@pytest_twisted.ensureDeferred
async def test_a_bad_file_at_reload_keeps_the_current_certificate(tmp_path: Path) -> None:
    from twisted.internet import reactor

    cert, key = self_signed(tmp_path, "one")
    tls = tls_context(tls_config(tmp_path, cert, key))
    assert tls is not None
    context = tls.context
    assert await tls.reload(reactor, cert, tmp_path / "missing.key") is False
    assert tls.context is context and tls.cert_file == cert


def test_a_missing_or_unreadable_key_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "one")
    missing = tmp_path / "nope.key"
    config = tls_config(tmp_path, cert, missing)
    assert check_tls_files(config) == [
        f"security.key_file: cannot read {missing}: No such file or directory"
    ]
    assert any(str(missing) in problem for problem in refused_start(config))
    key.chmod(0)
    try:
        problems = check_tls_files(tls_config(tmp_path, cert, key))
    finally:
        key.chmod(0o600)
    import os

    if os.geteuid() != 0:
        assert problems == [f"security.key_file: cannot read {key}: Permission denied"]
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    with pytest.raises(TLSConfigError, match=f"security.key_file: {garbage} is not a valid"):
        load_context(cert, garbage)
    _other_cert, other_key = self_signed(tmp_path, "two")
    with pytest.raises(TLSConfigError, match="does not match the certificate"):
        load_context(cert, other_key)
    assert check_tls_files(tls_config(tmp_path, cert, key)) == []
