"""The fuzz targets: each one feeds bytes to one of the node's parsers of outside input.

Every target is a :class:`harness.Target`: the function and the exceptions that mean
"refused cleanly". Everything else is a crash. The corpus of each lives in
``corpus/<name>/``.
"""

from __future__ import annotations

import json
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

from harness import Target
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from otedama.chain.address import address_to_script
from otedama.chain.params import get_network
from otedama.chain.serialize import TxOut
from otedama.chain.target import bits_to_target
from otedama.chain.template import BlockTemplate, TemplateError
from otedama.config import ConfigError, load_config
from otedama.node.rpc import NodeError, decode_reply
from otedama.stratum.codec import CodecError, LineFramer, LineTooLong, parse_message
from otedama.stratum.jobs import JobManager
from otedama.stratum.protocol import StratumFactory
from otedama.stratum.settings import StratumSettings
from otedama.stratum.share import Share

CORPUS = Path(__file__).resolve().parent / "corpus"
ADDRESS = "bcrt1qsv2hexjrhpa8qwxr4la2nmmkmdh8hxkje996rc"
START_TIME = 1_795_490_000


# -- Stratum codec ---------------------------------------------------------------------


def stratum_codec(data: bytes) -> None:
    """Frame ``data`` (split in two at a point the input chooses) and parse every line."""
    framer = LineFramer(max_line=512)
    cut = data[0] % (len(data) + 1) if data else 0
    items = framer.feed(data[:cut]) + framer.feed(data[cut:])
    assert framer.buffered <= 512 + 1, framer.buffered
    for item in items:
        if isinstance(item, LineTooLong):
            continue
        assert len(item) <= 512 and b"\n" not in item
        try:
            parse_message(item)
        except CodecError:
            pass


# -- Stratum session -------------------------------------------------------------------


class _Sink:
    def share_accepted(self, share: Share) -> None:
        pass

    def block_found(self, block: bytes, share: Share) -> Deferred[Any]:
        return succeed(None)


def _template() -> BlockTemplate:
    bits = 0x207FFFFF
    return BlockTemplate(
        version=0x20000000,
        prev_hash=b"\x11" * 32,
        height=200,
        bits=bits,
        target=bits_to_target(bits),
        curtime=START_TIME,
        mintime=START_TIME - 600,
        coinbase_value=5_000_000_000,
        transactions=(),
        default_witness_commitment=None,
        longpollid=None,
        rules=("segwit",),
    )


#: A miner's usual opening, put before the input when its first byte is odd, so that the
#: input reaches the authorized session's handlers (submit, suggest, configure…).
OPENING = (
    b'{"id":1,"method":"mining.subscribe","params":["fuzz/1"]}\n'
    b'{"id":2,"method":"mining.authorize","params":["' + ADDRESS.encode() + b'.rig","x"]}\n'
)


def stratum_session(data: bytes) -> None:
    """A Stratum server on a manual clock gets ``data`` from one miner, in two chunks.

    Whatever the bytes, the server must answer with well-formed JSON lines (or close the
    connection) and never raise or log a failure.
    """
    clock = task.Clock()
    clock.advance(START_TIME)
    network = get_network("regtest")
    settings = StratumSettings(
        network=network,
        start_difficulty=Fraction(1, 100),
        min_difficulty=Fraction(1, 10000),
        vardiff=True,
    )
    script = address_to_script(ADDRESS, network)
    jobs = JobManager(
        lambda template: [TxOut(template.coinbase_value, script)],
        clock=clock,
        extranonce2_size=settings.extranonce2_size,
    )
    factory = StratumFactory(jobs, _Sink(), settings, clock)
    factory.doStart()
    jobs.startService()
    try:
        jobs.on_template(_template())
        address = IPv4Address("TCP", "10.0.0.1", 40000)
        transport = StringTransport(peerAddress=address)
        protocol = factory.buildProtocol(address)
        assert protocol is not None
        protocol.makeConnection(transport)
        stream = (OPENING if data[:1] and data[0] & 1 else b"") + data
        cut = len(stream) // 2
        protocol.dataReceived(stream[:cut])
        clock.advance(1)
        protocol.dataReceived(stream[cut:])
        clock.advance(1)
        for line in transport.value().splitlines():
            if line.strip():
                json.loads(line)
        protocol.connectionLost(Failure(ConnectionError("fuzz input done")))
        clock.advance(3600)
    finally:
        jobs.stopService()
        factory.doStop()


# -- config loader ---------------------------------------------------------------------


def config_file(data: bytes) -> None:
    """``data`` as a config file: it loads, or a ConfigError lists the problems."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "otedama.yaml"
        path.write_bytes(data)
        load_config(path, env={})


def config_data(data: bytes) -> None:
    """``data`` as JSON for the loaded mapping (structure without YAML's own parser)."""
    try:
        mapping = json.loads(data)
    except (ValueError, RecursionError):
        return
    load_config(data=mapping, env={})


# -- RPC replies -----------------------------------------------------------------------

_STATUSES = (200, 401, 403, 404, 500)


def rpc_reply(data: bytes) -> None:
    """An HTTP status (chosen by the first byte) and a body from a daemon."""
    status = _STATUSES[data[0] % len(_STATUSES)] if data else 200
    decode_reply(status, data[1:], "http://127.0.0.1:8332/", "getblocktemplate")


def block_template(data: bytes) -> None:
    """A ``getblocktemplate`` reply body: parsed as the node does, then checked."""
    try:
        reply = decode_reply(200, data, "http://127.0.0.1:8332/", "getblocktemplate")
    except NodeError:
        return
    if isinstance(reply, dict):
        BlockTemplate.from_rpc(reply)


TARGETS = {
    target.name: target
    for target in (
        Target("stratum_codec", stratum_codec),
        Target("stratum_session", stratum_session),
        Target("config_file", config_file, (ConfigError,)),
        Target("config_data", config_data, (ConfigError,)),
        Target("rpc_reply", rpc_reply, (NodeError,)),
        Target("block_template", block_template, (TemplateError,)),
    )
}
