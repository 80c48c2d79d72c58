"""``otedama version`` and ``otedama serve`` (the node, the same tree as ``twistd -n otedama``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from otedama import __version__
from otedama.commands.common import add_config_argument, config_path, load_or_report

__all__ = ["register", "serve"]


def register(subparsers: Any) -> None:
    """Add ``version`` and ``serve``."""
    version = subparsers.add_parser("version", help="print the version")
    version.set_defaults(func=print_version)
    serve_parser = subparsers.add_parser("serve", help="run the node (same as twistd -n otedama)")
    add_config_argument(serve_parser)
    serve_parser.set_defaults(func=serve)


def print_version(args: argparse.Namespace) -> int:
    """``otedama version``."""
    print(f"otedama {__version__}")
    return 0


def serve(args: argparse.Namespace) -> int:
    """Run the node through twistd's own runner, so it is the same tree as twistd."""
    if load_or_report(args) is None:
        return 1
    from twisted.python import usage
    from twisted.scripts import twistd

    options = twistd.ServerOptions()  # type: ignore[attr-defined]
    try:
        options.parseOptions(["--nodaemon", "--pidfile=", "otedama", "--config", config_path(args)])
    except usage.UsageError as error:
        print(f"otedama serve: {error}", file=sys.stderr)
        return 1
    twistd.runApp(options)
    return 0
