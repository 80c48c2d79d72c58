"""The Stratum server's settings, one frozen value built by ``tap.py`` from the config."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from otedama.chain.params import NetworkParams
from otedama.stratum.numbers import NumberError, bounded_decimal

__all__ = ["StratumSettings"]


def _difficulty(name: str, value: object) -> Fraction:
    """A positive difficulty as an exact Fraction (a float means its shortest decimal)."""
    result: Fraction | None = None
    if isinstance(value, bool):
        result = None
    elif isinstance(value, Fraction | int | Decimal):
        result = Fraction(value)
    elif isinstance(value, float) and math.isfinite(value):
        result = Fraction(repr(value))
    elif isinstance(value, str):
        try:
            result = bounded_decimal(value.strip())
        except NumberError:
            result = None
    if result is None or result <= 0:
        raise ValueError(f"stratum {name} must be a positive number, got {value!r}")
    return result


@dataclass(frozen=True, slots=True)
class StratumSettings:
    """Everything the Stratum server needs besides jobs, a sink and a clock.

    Difficulties are exact ``Fraction``s (below 1 allowed). ``max_connections`` is
    ``stratum.max_workers``; ``version_mask`` is the BIP310 mask the server allows miners
    to roll; ``network`` decides which payout addresses ``mining.authorize`` accepts.

    Bounds on what one connection may cost: ``authorize_timeout`` seconds from connecting
    to a first authorized worker; ``idle_timeout`` without a complete line;
    ``max_unsent_bytes`` written while the transport's own buffer is full (the miner does
    not read), or ``stall_timeout`` seconds of a full buffer, before it is dropped; ``close_grace`` seconds for a closing connection to
    flush before it is aborted; ``max_share_rate`` submits per second on average (bursts
    of ``share_burst``) before submits are refused unchecked; a ``suggest_difficulty``
    changes a working connection's difficulty at most once per ``suggest_interval``.
    Refused connections and authorized workers are logged as a summary every
    ``log_interval`` seconds; refused authorizations and authorized miners' disconnects
    one line each for the first 20 of an interval, the rest in the summary.
    """

    network: NetworkParams
    start_difficulty: Fraction = Fraction(1)
    vardiff: bool = True
    target_share_interval: float = 10.0
    min_difficulty: Fraction = Fraction(1, 10000)
    max_difficulty: Fraction = Fraction(2**40)
    retarget_interval: float = 60.0
    extranonce2_size: int = 8
    max_connections: int = 50000
    max_connections_per_ip: int = 256
    subscribe_timeout: float = 30.0
    idle_timeout: float = 600.0
    max_line_bytes: int = 16 * 1024
    abuse_threshold: int = 10
    version_mask: int = 0x1FFFE000
    sweep_interval: float = 5.0
    authorize_timeout: float = 60.0
    max_unsent_bytes: int = 1024 * 1024
    close_grace: float = 5.0
    stall_timeout: float = 60.0
    max_share_rate: float = 20.0
    share_burst: int = 100
    suggest_interval: float = 60.0
    log_interval: float = 30.0

    def __post_init__(self) -> None:
        for name in ("start_difficulty", "min_difficulty", "max_difficulty"):
            object.__setattr__(self, name, _difficulty(name, getattr(self, name)))
        if self.min_difficulty > self.max_difficulty:
            raise ValueError(
                f"stratum min_difficulty {self.min_difficulty} is above "
                f"max_difficulty {self.max_difficulty}"
            )
        if not self.min_difficulty <= self.start_difficulty <= self.max_difficulty:
            raise ValueError(
                f"stratum start_difficulty {self.start_difficulty} is outside "
                f"[{self.min_difficulty}, {self.max_difficulty}]"
            )
        for name in (
            "target_share_interval",
            "retarget_interval",
            "subscribe_timeout",
            "idle_timeout",
            "sweep_interval",
            "authorize_timeout",
            "close_grace",
            "stall_timeout",
            "max_share_rate",
            "suggest_interval",
            "log_interval",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"stratum {name} must be positive seconds, got {value!r}")
        if not 2 <= self.extranonce2_size <= 16:
            raise ValueError(
                f"stratum extranonce2_size must be 2..16 bytes, got {self.extranonce2_size!r}"
            )
        for name in ("max_connections", "max_connections_per_ip", "abuse_threshold", "share_burst"):
            if getattr(self, name) < 1:
                raise ValueError(f"stratum {name} must be at least 1, got {getattr(self, name)!r}")
        if self.max_unsent_bytes < 4096:
            raise ValueError(
                f"stratum max_unsent_bytes must be >= 4096, got {self.max_unsent_bytes!r}"
            )
        if self.max_line_bytes < 256:
            raise ValueError(f"stratum max_line_bytes must be >= 256, got {self.max_line_bytes!r}")
        if not 0 <= self.version_mask <= 0xFFFFFFFF:
            raise ValueError(f"stratum version_mask must be 32 bits, got {self.version_mask:#x}")
