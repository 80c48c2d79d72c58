"""The ``otedama`` command for operators."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from twisted.python import usage

from otedama import __version__
from otedama.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    export_config,
    load_config,
    money_risks,
    reference_markdown,
)

#: Modules that add sub-commands through ``register(subparsers)``.
COMMAND_MODULES: list[str] = [
    "otedama.miner.commands",
    "otedama.bench.commands",
    "otedama.ledger.commands",
    "otedama.node.commands",
]


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config/-c FILE`` (default: $OTEDAMA_CONFIG, else /etc/otedama.yaml)."""
    parser.add_argument(
        "--config",
        "-c",
        default=None,
        metavar="FILE",
        help=f"config file (default: $OTEDAMA_CONFIG, else {DEFAULT_CONFIG_PATH})",
    )


def config_path(args: argparse.Namespace) -> str:
    return str(args.config or os.environ.get("OTEDAMA_CONFIG") or DEFAULT_CONFIG_PATH)


def load_or_report(args: argparse.Namespace) -> Config | None:
    """Load the config for a command; print every problem and return None if invalid."""
    path = config_path(args)
    try:
        return load_config(path)
    except ConfigError as error:
        print(f"{path}: invalid configuration:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otedama", description="Otedama mining pool node")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = subparsers.add_parser("version", help="print the version")
    version.set_defaults(func=lambda args: _print_version())

    serve = subparsers.add_parser("serve", help="run the node (same as twistd -n otedama)")
    add_config_argument(serve)
    serve.set_defaults(func=_serve)

    health = subparsers.add_parser(
        "health", help="ask a running node for its health report (exit 0 ok, 1 degraded, 2 down)"
    )
    add_config_argument(health)
    health.add_argument("--url", help="health URL (default: from monitoring.health)")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    health.set_defaults(func=_health)

    config = subparsers.add_parser("config", help="check and show the configuration")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION")
    config.set_defaults(func=lambda args: usage_of(config))
    validate = config_commands.add_parser("validate", help="check a config file")
    add_config_argument(validate)
    validate.set_defaults(func=_validate)
    export = config_commands.add_parser("export", help="print the effective config as YAML")
    add_config_argument(export)
    export.add_argument("--sanitize", action="store_true", help="mask passwords, tokens and keys")
    export.set_defaults(func=_export)
    test_db = config_commands.add_parser(
        "test-db", help="connect to the database and report version, schema and latency"
    )
    add_config_argument(test_db)
    test_db.set_defaults(func=_test_db)
    reference = config_commands.add_parser(
        "reference", help="print the key reference (Markdown) of docs/configuration.md"
    )
    reference.set_defaults(func=lambda args: print(reference_markdown(), end="") or 0)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _print_version() -> int:
    print(f"otedama {__version__}")
    return 0


def usage_of(parser: argparse.ArgumentParser) -> int:
    """A command group run without a sub-command: print its help, exit 2."""
    parser.print_help()
    return 2


def _validate(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return 1
    print(f"{config_path(args)}: valid")
    for risk in money_risks(config):
        print(f"  warning: {risk}" + (" (the node refuses to start)" if risk.refuse else ""))
    for warning in config.unused_warnings():
        print(f"  note: {warning}")
    return 0


def _export(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return 1
    sys.stdout.write(export_config(config, sanitize=args.sanitize))
    return 0


def _health(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.request

    url = args.url
    if url is None:
        config = load_or_report(args)
        if config is None:
            return 2
        settings = config.monitoring.health
        if not settings.enabled:
            print(
                f"{config_path(args)}: monitoring.health.enabled is false; "
                "enable it (and reload/restart the node) or pass --url",
                file=sys.stderr,
            )
            return 2
        host = settings.address.host
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        host = f"[{host}]" if ":" in host else host
        url = f"http://{host}:{settings.address.port}{settings.path}"
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
    return {"ok": 0, "degraded": 1}.get(report.get("status"), 2)


def _test_db(args: argparse.Namespace) -> int:
    from otedama.ledger.commands import test_db

    return test_db(args)


def _serve(args: argparse.Namespace) -> int:
    """Run the node through twistd's own runner, so it is the same tree as twistd."""
    if load_or_report(args) is None:
        return 1
    from twisted.scripts import twistd

    options = twistd.ServerOptions()  # type: ignore[attr-defined]
    try:
        options.parseOptions(["--nodaemon", "--pidfile=", "otedama", "--config", config_path(args)])
    except usage.UsageError as error:
        print(f"otedama serve: {error}", file=sys.stderr)
        return 1
    twistd.runApp(options)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
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
