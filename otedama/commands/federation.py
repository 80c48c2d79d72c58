"""``otedama federation status``: ask the running node for its federation view.

Like ``otedama health``, it reads the node's ``/health`` report (``monitoring.health``):
the ``federation`` component carries the whole operator view under ``status``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from otedama.commands.common import add_config_argument, read_health_report
from otedama.commands.health import health_url

__all__ = ["format_status", "register", "status"]


def register(subparsers: Any) -> None:
    """Add ``federation status``."""
    group = subparsers.add_parser("federation", help="the federation as the running node sees it")
    commands = group.add_subparsers(dest="federation_command", required=True)
    parser = commands.add_parser(
        "status", help="this node, the window, the share target and every known peer"
    )
    add_config_argument(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--url", help="health URL (default: from monitoring.health)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    parser.set_defaults(func=status)


def fetch_status(url: str, timeout: float) -> dict[str, Any] | str:
    """The federation view from the node's health report, or why there is none."""
    report = read_health_report(url, timeout)
    if isinstance(report, str):
        return report
    component = report.get("checks", {}).get("federation")
    if not isinstance(component, dict) or not isinstance(component.get("status"), dict):
        return (
            f"{url}: the node reports no federation; set federation.enabled: true "
            "(and restart the node)"
        )
    view: dict[str, Any] = component["status"]
    return view


def status(args: argparse.Namespace) -> int:
    """Print the view; exit 0, or 2 when the node cannot tell."""
    url = health_url(args)
    if url is None:
        return 2
    view = fetch_status(url, args.timeout)
    if isinstance(view, str):
        print(view, file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(view, sort_keys=True))
    else:
        print(format_status(view, time.time()))
    return 0


def _ago(last_seen: float, now: float) -> str:
    if not last_seen:
        return "never"
    return f"{max(0.0, now - last_seen):.0f} s ago"


def format_status(view: dict[str, Any], now: float) -> str:
    """The view as text for people: this node, its window, then a row per peer."""
    window = view.get("window", {})
    lines = [
        f"node:           {view.get('label') or '(no label)'} {view.get('node_id')}",
        f"public key:     {view.get('public_key')}",
        f"listening on:   {view.get('listen_address')} (TCP gossip, UDP DHT; "
        f"TLS {view.get('tls', 'off')})",
        f"payout address: {view.get('payout_address')}",
        f"window:         {window.get('shares', 0)} shares, total difficulty "
        f"{window.get('total_difficulty', 0):.6g}, this node {window.get('own_part', 0):.2%} "
        f"({window.get('own_shares', 0)} shares)",
        f"share target:   {view.get('share_target')}",
        "",
    ]
    peers = view.get("peers", [])
    header = f"{'node id':<40}  {'label':<16}  {'address':<21}  rep.   window  linked  tls  seen"
    lines.append(header)
    for peer in peers:
        lines.append(
            f"{peer.get('node_id', ''):<40}  {str(peer.get('label', ''))[:16]:<16}  "
            f"{peer.get('address', ''):<21}  {peer.get('reputation', 0):.3f}  "
            f"{peer.get('window_share', 0):6.1%}  {'yes' if peer.get('connected') else 'no':<6}  "
            f"{'yes' if peer.get('tls') else 'no':<3}  {_ago(peer.get('last_seen', 0), now)}"
        )
    if not peers:
        lines.append("(no peer known yet)")
    return "\n".join(lines)
