"""``otedama devnet``: run the devnet chain on its own, for several nodes to share.

It reads the ``chain.devnet`` section of the config (``listen``, ``difficulty``,
``data_dir``; ``rpc_user``/``rpc_password``/``rpc_cookie`` for Core's authentication,
``zmq_pub_*`` for Core's ZMQ notifications, ``chain_name``, ``reported_connections``) and ``pool.wallet_address``
(the address its wallet owns), and serves Bitcoin Core's JSON-RPC subset until
interrupted. Nodes use it with ``chain.backend: bitcoind`` and a ``chain.rpc`` entry
pointing at ``listen``; other pools and miners as a regtest bitcoind (docs/devnet.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from otedama.commands.common import add_config_argument, begin_logging, load_or_report

__all__ = ["register", "run_devnet"]


def register(subparsers: Any) -> None:
    """Add the ``devnet`` command."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "devnet",
        help="run the devnet chain alone (Bitcoin Core JSON-RPC on chain.devnet.listen)",
        description="Run the embedded devnet chain as its own process so that several "
        "Otedama nodes, or other pools and miners, can mine on one chain as on a regtest "
        "bitcoind. Reads chain.devnet (listen, difficulty, data_dir, rpc_user, rpc_password, "
        "rpc_cookie, zmq_pub_*, chain_name, reported_connections) and pool.wallet_address from the config. "
        "Stop with Ctrl-C.",
    )
    add_config_argument(parser)
    parser.set_defaults(func=run_devnet)


def run_devnet(args: argparse.Namespace) -> int:
    """Serve the devnet until interrupted; 2 for a bad config, 1 when it cannot start."""
    config = load_or_report(args)
    if config is None:
        return 2
    from otedama.ops.reactor import install_asyncio_reactor
    from otedama.tap import devnet_service

    reactor = install_asyncio_reactor()
    try:
        service = devnet_service(config, reactor)
    except ValueError as e:
        print(f"otedama devnet: {e}", file=sys.stderr)
        return 2
    begin_logging()
    outcome = {"code": 0}

    def failed(reason: Any) -> None:
        message = reason.getErrorMessage() if hasattr(reason, "getErrorMessage") else reason
        print(f"otedama devnet: cannot start: {message}", file=sys.stderr)
        outcome["code"] = 1
        reactor.stop()

    def start() -> None:
        try:
            service.startService()
        except Exception as e:
            failed(e)
            return
        service.ready.addErrback(failed)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return outcome["code"]
