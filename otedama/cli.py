"""The ``otedama`` command for operators: builds the parser and dispatches.

Every command lives in ``otedama/commands/`` (one module per command group, listed in
``otedama.commands.COMMAND_MODULES``); this module only puts them together.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from otedama.commands import COMMAND_MODULES

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``otedama`` parser with every command group's sub-commands."""
    parser = argparse.ArgumentParser(prog="otedama", description="Otedama mining pool node")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``otedama`` command; its exit code (2 for no command)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        code: int = func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`otedama stats | head`): stop quietly, no traceback, and
        # keep the interpreter's final flush from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
