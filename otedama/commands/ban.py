"""``otedama ban list|add|remove``: the running node's bans, through its admin socket.

The node listens on ``DATA_DIR/admin.sock`` (a unix socket, mode 600: only the node's
own user and root can use it). Each command sends one JSON line and prints the reply;
``add`` and ``remove`` return once the node has applied the change and written its
audit line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import socket
from pathlib import Path
from typing import Any

from otedama.commands.common import add_config_argument, fail, load_or_report, usage_of
from otedama.configschema import Invalid, duration
from otedama.ops.audit import command_actor

__all__ = ["ask_node", "register"]


def register(subparsers: Any) -> None:
    """Add the ``ban`` group."""
    parser = subparsers.add_parser("ban", help="list, add or remove bans on the running node")
    actions = parser.add_subparsers(dest="ban_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: usage_of(parser))

    def leaf(name: str, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help)
        add_config_argument(sub)
        sub.add_argument("--socket", help="the node's admin socket (default: DATA_DIR/admin.sock)")
        sub.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")
        return sub

    listing = leaf("list", "the bans in force")
    listing.add_argument("--json", action="store_true", help="print the node's JSON reply")
    listing.set_defaults(func=ban_list)
    add = leaf("add", "ban an IP address now (its connections are dropped)")
    add.add_argument("host", help="IPv4 or IPv6 address")
    add.add_argument("--duration", help="e.g. 1h, 30m, 86400 (default: ban_duration)")
    add.add_argument("--reason", default="banned by an operator", help="kept with the ban")
    add.set_defaults(func=ban_add)
    remove = leaf("remove", "lift a ban")
    remove.add_argument("host", help="IPv4 or IPv6 address")
    remove.set_defaults(func=ban_remove)


def socket_path(args: argparse.Namespace) -> Path | None:
    if args.socket:
        return Path(args.socket)
    config = load_or_report(args)
    if config is None:
        return None
    return Path(config.app.data_dir) / "admin.sock"


def ask_node(path: Path, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the node's admin socket; its reply. ``OSError`` when the node
    is not there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data) if data.strip() else {"ok": False, "error": "no reply"}
    if not isinstance(reply, dict):
        raise ValueError(f"unexpected reply {reply!r}")
    return reply


def _run(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any] | int:
    path = socket_path(args)
    if path is None:
        return 2
    try:
        reply = ask_node(path, request, args.timeout)
    except (OSError, ValueError) as error:
        return fail(f"{path}: no answer ({error}); is the node running with this data_dir?")
    if not reply.get("ok"):
        return fail(f"the node refused: {reply.get('error')}")
    return reply


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def ban_list(args: argparse.Namespace) -> int:
    reply = _run(args, {"action": "list"})
    if isinstance(reply, int):
        return reply
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))
        return 0
    bans = reply.get("bans", [])
    if not bans:
        print("no bans in force")
    for ban in bans:
        print(f"{ban['host']}  until {_when(ban['until'])}  by {ban['actor']}: {ban['reason']}")
    return 0


def ban_add(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {
        "action": "add",
        "host": args.host,
        "reason": args.reason,
        "actor": command_actor("otedama ban"),
    }
    if args.duration is not None:
        try:
            request["duration"] = duration(args.duration)
        except Invalid as error:
            return fail(f"--duration: {error}")
    reply = _run(args, request)
    if isinstance(reply, int):
        return reply
    ban = reply["ban"]
    print(f"banned {ban['host']} until {_when(ban['until'])}")
    return 0


def ban_remove(args: argparse.Namespace) -> int:
    reply = _run(
        args, {"action": "remove", "host": args.host, "actor": command_actor("otedama ban")}
    )
    if isinstance(reply, int):
        return reply
    if reply.get("removed") is None:
        print(f"{args.host} was not banned")
    else:
        print(f"unbanned {args.host}")
    return 0
