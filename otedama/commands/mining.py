"""``otedama mining status``: what each Stratum port of the running node is doing.

The node's ``/health`` report carries, in its ``stratum`` check, one entry per listening
port (algorithm, miners, workers, hashrate, difficulty range, template, last block); this
command asks for it and prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from otedama.commands.common import add_config_argument, load_or_report, usage_of
from otedama.commands.stats import format_hashrate
from otedama.commands.system import fetch_health

__all__ = ["format_status", "mining_status", "register"]


def register(subparsers: Any) -> None:
    """Add ``mining status``."""
    mining = subparsers.add_parser("mining", help="what the running node's Stratum ports do")
    mining.set_defaults(func=lambda args: usage_of(mining))
    commands = mining.add_subparsers(dest="mining_command", metavar="COMMAND")
    status = commands.add_parser(
        "status", help="per port: algorithm, miners, workers, hashrate, difficulty, template"
    )
    add_config_argument(status)
    status.add_argument("--format", choices=("table", "json"), default="table")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    status.set_defaults(func=mining_status)


def mining_status(args: argparse.Namespace) -> int:
    """Exit 0 with the status, 2 when the node cannot be asked."""
    config = load_or_report(args)
    if config is None:
        return 2
    report = fetch_health(config, args.timeout)
    if isinstance(report, str):
        print(report, file=sys.stderr)
        return 2
    stratum = report.get("checks", {}).get("stratum")
    if not isinstance(stratum, dict) or not isinstance(stratum.get("ports"), dict):
        print("the node reports no Stratum port (stratum.enable is false?)", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(stratum["ports"], indent=2, sort_keys=True))
    else:
        print(format_status(stratum["ports"], report.get("status", "?"), time.time()))
    return 0


def _difficulty(value: Any) -> str:
    if not value:
        return "-"
    low, high = value
    return f"{low:g}" if low == high else f"{low:g} - {high:g}"


def format_status(ports: dict[str, Any], node_status: str, now: float) -> str:
    """The human-readable status: one block per port."""
    lines = [f"node {node_status}"]
    for port, entry in sorted(ports.items()):
        template = entry.get("template") or {}
        shown_template = (
            f"height {template['height']}, {template['age']:g} s old"
            if template.get("height") is not None
            else "none yet"
        )
        block = entry.get("last_block")
        shown_block = (
            f"height {block['height']} {block['hash']} by {block['worker']} "
            f"({block['outcome']}, {max(0.0, now - block['time']):.0f} s ago)"
            if block
            else "none since start"
        )
        lines += [
            f"port {port} ({entry.get('algorithm', '?')})",
            f"  miners      {entry.get('miners', 0)}",
            f"  workers     {entry.get('workers', 0)}",
            f"  hashrate    {format_hashrate(float(entry.get('hashrate', 0.0)))}",
            f"  shares      {entry.get('accepted', 0)} accepted, {entry.get('rejected', 0)} rejected",
            f"  difficulty  {_difficulty(entry.get('difficulty'))}",
            f"  template    {shown_template}",
            f"  last block  {shown_block}",
        ]
    return "\n".join(lines)
