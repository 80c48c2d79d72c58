"""``otedama debug bundle --output FILE.tar.gz``: what support needs, without secrets.

The archive holds the sanitized config, the system report, the running node's health and
the ledger's stats, and the last lines of the node's log file. Every secret the config
holds (passwords, URL passwords, the RPC cookie) is also scrubbed from every file, so a
secret that reached a log line does not leave the machine in the bundle.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from otedama.commands.common import (
    add_config_argument,
    config_path,
    fail,
    load_or_report,
    usage_of,
)
from otedama.commands.system import fetch_health, ledger_stats, system_report
from otedama.config import Config, export_config
from otedama.configschema import MASK, dump_section

__all__ = ["debug_bundle", "register", "secrets_of", "tail_lines"]

#: Log lines put in the bundle (the newest).
LOG_LINES = 2000
#: At most this much of the log file's end is read.
LOG_TAIL_BYTES = 4 * 1024 * 1024
#: Shorter values are not scrubbed (masking "1" everywhere would ruin the bundle).
MIN_SECRET_LENGTH = 4


def register(subparsers: Any) -> None:
    """Add ``debug bundle``."""
    debug = subparsers.add_parser("debug", help="collect what support needs")
    commands = debug.add_subparsers(dest="debug_command", metavar="COMMAND")
    debug.set_defaults(func=lambda args: usage_of(debug))
    bundle = commands.add_parser(
        "bundle", help="sanitized config, system report, health, stats and recent log lines"
    )
    add_config_argument(bundle)
    bundle.add_argument("--output", "-o", required=True, metavar="FILE.tar.gz")
    bundle.add_argument("--timeout", type=float, default=5.0, help="seconds per network check")
    bundle.add_argument("--lines", type=int, default=LOG_LINES, help="log lines to include")
    bundle.set_defaults(func=debug_bundle)


def _walk(data: Any) -> list[tuple[str, Any]]:
    if isinstance(data, dict):
        return [(f"{k}.{sub}" if sub else str(k), v) for k, value in data.items()
                for sub, v in _walk(value)]  # fmt: skip
    if isinstance(data, list):
        return [(f"[{i}]{sub}", v) for i, item in enumerate(data) for sub, v in _walk(item)]
    return [("", data)]


def secrets_of(config: Config) -> set[str]:
    """Every secret value in ``config``: what sanitizing masks, URL passwords, RPC cookies."""
    raw = dict(_walk(dump_section(config, sanitize=False)))
    masked = dict(_walk(dump_section(config, sanitize=True)))
    found = {str(value) for key, value in raw.items() if masked.get(key) == MASK and value}
    for key, value in raw.items():
        if not isinstance(value, str):
            continue
        if key.endswith("url") and "://" in value:
            password = urlsplit(value).password
            if password:
                found.update({password, unquote(password)})
        if key.endswith("cookie_file") and value:
            try:
                cookie = Path(value).read_text(encoding="utf-8").strip()
            except OSError:
                continue
            found.add(cookie)
            found.add(cookie.split(":", 1)[-1])
    return {secret for secret in found if len(secret) >= MIN_SECRET_LENGTH}


def scrub(text: str, secrets: set[str]) -> str:
    """``text`` with every secret replaced by the mask (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of ``path`` (reading at most its last few MB)."""
    with path.open("rb") as file:
        file.seek(0, io.SEEK_END)
        size = file.tell()
        file.seek(max(0, size - LOG_TAIL_BYTES))
        data = file.read()
    lines = data.decode("utf-8", "replace").splitlines()
    if size > LOG_TAIL_BYTES and lines:
        lines = lines[1:]  # the first one is cut
    return lines[-count:] if count > 0 else []


def _log_text(config: Config, count: int) -> str:
    path = config.monitoring.logging.file
    if path is None:
        return (
            "monitoring.logging.file is not set: the node logs to stdout only "
            "(under systemd: journalctl -u otedama -n 2000 > otedama.log, and attach it)\n"
        )
    try:
        return "\n".join(tail_lines(Path(path), count)) + "\n"
    except OSError as error:
        return f"cannot read {path}: {error.strerror}\n"


def debug_bundle(args: argparse.Namespace) -> int:
    """Write the bundle; exit 0, or 1 when the config is invalid or the file cannot be written."""
    config = load_or_report(args)
    if config is None:
        return 1
    secrets = secrets_of(config)
    files = {
        "config.yaml": export_config(config, sanitize=True),
        "system-report.txt": system_report(args),
        "health.json": _json(fetch_health(config, args.timeout)),
        "stats.json": _json(ledger_stats(config)),
        "otedama.log": _log_text(config, args.lines),
        "README.txt": (
            f"Otedama debug bundle made {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
            f" from {config_path(args)}. Secrets are masked as {MASK}.\n"
        ),
    }
    output = Path(args.output)
    try:
        # Created 0600 from the start: the bundle describes the node's setup.
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with (
            os.fdopen(descriptor, "wb") as file,
            tarfile.open(fileobj=file, mode="w:gz") as archive,
        ):
            now = time.time()
            for name, text in files.items():
                data = scrub(text, secrets).encode("utf-8")
                info = tarfile.TarInfo(f"otedama-debug/{name}")
                info.size = len(data)
                info.mtime = int(now)
                info.mode = 0o600
                archive.addfile(info, io.BytesIO(data))
        output.chmod(0o600)
    except OSError as error:
        return fail(f"cannot write {output}: {error.strerror or error}")
    print(f"wrote {output} ({', '.join(files)})")
    return 0


def _json(value: dict[str, Any] | str) -> str:
    if isinstance(value, str):
        return json.dumps({"unavailable": value}, indent=2) + "\n"
    return json.dumps(value, indent=2, sort_keys=True) + "\n"
