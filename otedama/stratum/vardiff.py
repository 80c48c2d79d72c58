"""Variable difficulty: aim each connection at one share per ``target_interval`` seconds.

Pure: the caller passes ``now``. A connection keeps a tiny ``VardiffWindow``; ``Vardiff``
decides when the observed share rate left the hysteresis band ``[0.5x, 2x]`` of the
target and proposes the new difficulty, rounded to three significant digits so the number
a miner reads from ``mining.set_difficulty`` is exactly the one shares are judged at.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["Vardiff", "VardiffWindow", "clamp_difficulty", "round_difficulty"]


def round_difficulty(value: float | Fraction) -> Fraction:
    """``value`` rounded to three significant digits, exact as a Fraction."""
    if value <= 0:
        raise ValueError(f"difficulty must be positive, got {value!r}")
    return Fraction(f"{float(value):.3g}")


def clamp_difficulty(value: Fraction, low: Fraction, high: Fraction) -> Fraction:
    """``value`` limited to ``[low, high]``."""
    if value < low:
        return low
    if value > high:
        return high
    return value


class VardiffWindow:
    """Shares counted since the window opened at ``start``."""

    __slots__ = ("count", "start")

    def __init__(self, now: float) -> None:
        self.start = now
        self.count = 0

    def reset(self, now: float) -> None:
        """Open a new window."""
        self.start = now
        self.count = 0


class Vardiff:
    """The retarget policy shared by every connection.

    A window closes when ``retarget_interval`` seconds passed or ``max_window_shares``
    shares arrived (so a fast miner at a low start difficulty ramps up within seconds).
    The difficulty changes only when the average seconds per share is below half or above
    twice ``target_interval``; it then moves by the observed ratio (at most
    ``max_factor`` per step), within ``[low, high]``.
    """

    __slots__ = ("max_factor", "max_window_shares", "retarget_interval", "target_interval")

    def __init__(
        self,
        target_interval: float = 10.0,
        retarget_interval: float = 60.0,
        max_window_shares: int = 30,
        max_factor: float = 256.0,
    ) -> None:
        if target_interval <= 0:
            raise ValueError(f"target share interval must be positive, got {target_interval!r}")
        if retarget_interval <= 0:
            raise ValueError(f"retarget interval must be positive, got {retarget_interval!r}")
        if max_window_shares < 2:
            raise ValueError(f"max_window_shares must be at least 2, got {max_window_shares!r}")
        if max_factor <= 1:
            raise ValueError(f"max_factor must be above 1, got {max_factor!r}")
        self.target_interval = target_interval
        self.retarget_interval = retarget_interval
        self.max_window_shares = max_window_shares
        self.max_factor = max_factor

    def on_share(
        self, window: VardiffWindow, now: float, current: Fraction, low: Fraction, high: Fraction
    ) -> Fraction | None:
        """Count a share; return a new difficulty when a retarget is due, else None."""
        window.count += 1
        if window.count >= self.max_window_shares or now - window.start >= self.retarget_interval:
            return self._retarget(window, now, current, low, high)
        return None

    def on_idle(
        self, window: VardiffWindow, now: float, current: Fraction, low: Fraction, high: Fraction
    ) -> Fraction | None:
        """Periodic check without a share: lowers the difficulty of a miner gone quiet."""
        elapsed = now - window.start
        if elapsed < self.retarget_interval:
            return None
        # Count the share that has not arrived yet, so no shares reads as "slower than
        # one per elapsed" rather than as infinitely slow.
        if window.count == 0 and elapsed < 2 * self.target_interval:
            return None
        return self._retarget(
            window, now, current, low, high, pending=1 if window.count == 0 else 0
        )

    def _retarget(
        self,
        window: VardiffWindow,
        now: float,
        current: Fraction,
        low: Fraction,
        high: Fraction,
        pending: int = 0,
    ) -> Fraction | None:
        elapsed = max(now - window.start, 1e-3)
        shares = window.count + pending
        window.reset(now)
        interval = elapsed / shares
        target = self.target_interval
        if 0.5 * target <= interval <= 2 * target:
            return None
        factor = min(max(target / interval, 1 / self.max_factor), self.max_factor)
        proposed = clamp_difficulty(round_difficulty(float(current) * factor), low, high)
        if proposed == current:
            return None
        return proposed
