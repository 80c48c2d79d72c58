"""The ``otedama`` operator commands, one module per command group.

Each module here has ``register(subparsers)``, which adds its command (or group) to the
``otedama`` parser and sets ``func(args) -> exit code`` on every leaf. ``otedama/cli.py``
only builds the parser from :data:`COMMAND_MODULES` and dispatches. Domain packages
(``chain``, ``node``, ``ledger``, ``stratum`` …) never import this package: a command
imports the domain, not the other way round.
"""

from __future__ import annotations

__all__ = ["COMMAND_MODULES"]

#: The command-group modules, in the order ``otedama --help`` lists them.
COMMAND_MODULES: list[str] = [
    "otedama.commands.serve",
    "otedama.commands.health",
    "otedama.commands.config",
    "otedama.commands.mine",
    "otedama.commands.bench",
    "otedama.commands.migrate",
    "otedama.commands.stats",
    "otedama.commands.ban",
    "otedama.commands.devnet",
    "otedama.commands.mining",
    "otedama.commands.system",
    "otedama.commands.debug",
    "otedama.commands.api",
    "otedama.commands.federation",
]
