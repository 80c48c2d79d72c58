"""The ``otedama`` command for operators."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from otedama import __version__

#: Modules that add sub-commands through ``register(subparsers)``.
COMMAND_MODULES: list[str] = [
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otedama", description="Otedama mining pool node")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = subparsers.add_parser("version", help="print the version")
    version.set_defaults(func=lambda args: _print_version())
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _print_version() -> int:
    print(f"otedama {__version__}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    code: int = func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
