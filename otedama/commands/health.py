"""``otedama health``: ask a running node for its health report."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from otedama.commands.common import add_config_argument, config_path, load_or_report

__all__ = ["health", "register"]


def register(subparsers: Any) -> None:
    """Add ``health``."""
    parser = subparsers.add_parser(
        "health", help="ask a running node for its health report (exit 0 ok, 1 degraded, 2 down)"
    )
    add_config_argument(parser)
    parser.add_argument("--url", help="health URL (default: from monitoring.health)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    parser.set_defaults(func=health)


def health_url(args: argparse.Namespace) -> str | None:
    """``--url``, else the URL ``monitoring.health`` serves; None (after saying why) if none."""
    if args.url is not None:
        return str(args.url)
    config = load_or_report(args)
    if config is None:
        return None
    settings = config.monitoring.health
    if not settings.enabled:
        print(
            f"{config_path(args)}: monitoring.health.enabled is false; "
            "enable it (and reload/restart the node) or pass --url",
            file=sys.stderr,
        )
        return None
    host = settings.address.host
    host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.address.port}{settings.path}"


def health(args: argparse.Namespace) -> int:
    """Print the node's report; exit 0 ok, 1 degraded, 2 down or unreachable."""
    url = health_url(args)
    if url is None:
        return 2
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as reply:
            body = reply.read()
    except urllib.error.HTTPError as error:
        body = error.read()
    except (urllib.error.URLError, OSError) as error:
        print(f"{url}: no answer ({getattr(error, 'reason', error)}); is the node running?")
        return 2
    try:
        report = json.loads(body)
    except ValueError:
        print(f"{url}: not a health report: {body[:200]!r}")
        return 2
    print(json.dumps(report, indent=2, sort_keys=True))
    code: int = {"ok": 0, "degraded": 1}.get(report.get("status"), 2)
    return code
