"""DDoS limits and bans (``security.ddos_protection``): pure, clock-free, bounded.

Everything here takes ``now`` (seconds since the epoch: bans outlive the process, so the
node passes its reactor's wall clock) and keeps at most ``max_tracked`` hosts per table;
the least recently seen host is forgotten first, so a flood of spoofed or rotating
addresses costs a bounded amount of memory.

- :class:`TokenBuckets`: per-host token buckets (new connections, messages).
- :class:`WorkTally`: per-host valid/invalid work over a tumbling window; a host is
  banned only when its invalid work is both at least ``invalid_min`` items and at least
  ``invalid_ratio`` of all its work in the window: never for one bad share.
- :class:`BanList`: who is banned, until when, why and by whom; listeners hear each
  change (the guard drops a banned host's connections; the ban store persists it).
- :class:`BanStore`: where bans are kept: :class:`JsonBanFile` (``bans.json`` in the data
  dir, written off the reactor thread); a Redis store that shares bans between nodes
  implements the same Protocol.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

__all__ = [
    "Ban",
    "BanList",
    "BanStore",
    "DdosSettings",
    "JsonBanFile",
    "TokenBuckets",
    "WorkTally",
]


@dataclass(frozen=True)
class DdosSettings:
    """Limits per peer IP address, from ``security.ddos_protection``.

    ``message_rate``/``message_burst`` are the guide's ``rate_limit``/``burst_limit``
    (messages per second; a message is a line received, at least one per read);
    ``connection_rate``/``connection_burst`` bound new connections per second;
    ``max_connections_per_ip`` open connections on one listener. A host whose invalid work
    in ``invalid_window`` seconds reaches ``invalid_min`` items and ``invalid_ratio`` of its
    work is banned for ``ban_duration`` seconds. ``enabled: false`` keeps only operator bans
    and the firewall lists.
    """

    enabled: bool = True
    message_rate: float = 1000.0
    message_burst: int = 2000
    connection_rate: float = 10.0
    connection_burst: int = 100
    max_connections_per_ip: int = 256
    ban_duration: float = 3600.0
    invalid_window: float = 300.0
    invalid_ratio: float = 0.5
    invalid_min: int = 50
    max_tracked: int = 100_000

    def __post_init__(self) -> None:
        for name in ("message_rate", "connection_rate", "ban_duration", "invalid_window"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"ddos_protection.{name} must be positive, got {getattr(self, name)!r}"
                )
        for name in ("message_burst", "connection_burst", "max_connections_per_ip", "invalid_min"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"ddos_protection.{name} must be at least 1, got {getattr(self, name)!r}"
                )
        if not 0 < self.invalid_ratio <= 1:
            raise ValueError(
                f"ddos_protection.invalid_ratio must be in (0, 1], got {self.invalid_ratio!r}"
            )
        if self.max_tracked < 16:
            raise ValueError(f"ddos_protection.max_tracked must be >= 16, got {self.max_tracked!r}")


class TokenBuckets:
    """One token bucket per key (``rate`` tokens a second, at most ``burst``), bounded:
    past ``max_keys`` the least recently used bucket is dropped (its key starts full)."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: int, max_keys: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float, count: int = 1) -> bool:
        """Spend ``count`` tokens of ``key``'s bucket; False (nothing spent) when short."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = [float(self.burst), now]
            buckets[key] = bucket
            if len(buckets) > self.max_keys:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
            elapsed = now - bucket[1]
            if elapsed > 0:
                bucket[0] = min(float(self.burst), bucket[0] + elapsed * self.rate)
                bucket[1] = now
        if bucket[0] < count:
            return False
        bucket[0] -= count
        return True


class WorkTally:
    """Valid and invalid work per host over a tumbling window of ``window`` seconds."""

    __slots__ = ("_tallies", "max_keys", "minimum", "ratio", "window")

    def __init__(self, window: float, ratio: float, minimum: int, max_keys: int) -> None:
        self.window = window
        self.ratio = ratio
        self.minimum = minimum
        self.max_keys = max_keys
        # host -> [window start, valid, invalid]
        self._tallies: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tallies)

    def note(self, host: str, valid: bool, now: float) -> bool:
        """Count one piece of work; True when ``host`` has crossed the ban threshold."""
        tallies = self._tallies
        tally = tallies.get(host)
        if tally is None or now - tally[0] >= self.window:
            tally = [now, 0.0, 0.0]
            tallies[host] = tally
            if len(tallies) > self.max_keys:
                tallies.popitem(last=False)
        tallies.move_to_end(host)
        tally[1 if valid else 2] += 1
        invalid = tally[2]
        if valid or invalid < self.minimum:
            return False
        return invalid >= self.ratio * (tally[1] + invalid)

    def forget(self, host: str) -> None:
        self._tallies.pop(host, None)


@dataclass(frozen=True)
class Ban:
    """One banned host: ``until`` and ``since`` are seconds since the epoch."""

    host: str
    until: float
    reason: str
    actor: str
    since: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Ban:
        if not isinstance(data, dict):
            raise ValueError(f"a ban must be an object, got {data!r}")
        return cls(
            host=str(data["host"]),
            until=float(data["until"]),
            reason=str(data.get("reason", "")),
            actor=str(data.get("actor", "")),
            since=float(data.get("since", 0.0)),
        )


BanListener = Callable[[str, "Ban | None"], object]
"""Told ``(host, ban)`` when a host is banned, ``(host, None)`` when it is unbanned."""


class BanList:
    """The bans in force. Expired bans are dropped when looked up or pruned; at most
    ``max_bans`` are kept (past it, the ban that ends soonest is dropped)."""

    log = Logger()

    def __init__(self, max_bans: int = 100_000) -> None:
        self.max_bans = max_bans
        self._bans: dict[str, Ban] = {}
        self.listeners: list[BanListener] = []

    def __len__(self) -> int:
        return len(self._bans)

    def _tell(self, host: str, ban: Ban | None) -> None:
        for listener in list(self.listeners):
            try:
                listener(host, ban)
            except Exception:
                self.log.failure("a ban listener failed for {host}", host=host)

    def ban(self, host: str, now: float, duration: float, reason: str, actor: str) -> Ban:
        """Ban ``host`` for ``duration`` seconds (a longer existing ban is kept)."""
        current = self._bans.get(host)
        ban = Ban(host=host, until=now + duration, reason=reason, actor=actor, since=now)
        if current is not None and current.until >= ban.until:
            return current
        if current is None and len(self._bans) >= self.max_bans:
            soonest = min(self._bans.values(), key=lambda b: b.until)
            del self._bans[soonest.host]
        self._bans[host] = ban
        self._tell(host, ban)
        return ban

    def unban(self, host: str) -> Ban | None:
        """Lift ``host``'s ban; the ban lifted, or None when there was none."""
        ban = self._bans.pop(host, None)
        if ban is not None:
            self._tell(host, None)
        return ban

    def banned(self, host: str, now: float) -> Ban | None:
        """``host``'s ban in force at ``now``, or None."""
        ban = self._bans.get(host)
        if ban is None:
            return None
        if ban.until <= now:
            del self._bans[host]
            return None
        return ban

    def active(self, now: float) -> list[Ban]:
        """Bans in force, soonest to end first."""
        self.prune(now)
        return sorted(self._bans.values(), key=lambda b: (b.until, b.host))

    def prune(self, now: float) -> int:
        """Drop expired bans (silently: they ended by themselves); how many."""
        expired = [host for host, ban in self._bans.items() if ban.until <= now]
        for host in expired:
            del self._bans[host]
        return len(expired)

    def restore(self, bans: Iterable[Ban], now: float) -> int:
        """Put back bans loaded from a store (without telling listeners); how many."""
        count = 0
        for ban in bans:
            if ban.until > now and len(self._bans) < self.max_bans:
                current = self._bans.get(ban.host)
                if current is None or current.until < ban.until:
                    self._bans[ban.host] = ban
                    count += 1
        return count


class BanStore(Protocol):
    """Where bans outlive the process (and, with Redis, reach the other nodes).

    ``load`` is awaited once at start, before any listener accepts; ``save`` is called
    after every change with the full list in force and must not block the reactor.
    A shared store (Redis) also calls ``BanList.ban``/``unban`` for changes made on other
    nodes, with ``actor`` naming the node.
    """

    def load(self) -> Deferred[list[Ban]]: ...

    def save(self, bans: list[Ban]) -> Deferred[None]: ...


class JsonBanFile:
    """Bans in one JSON file (``DATA_DIR/bans.json``), rewritten whole on each change in a
    thread: write to a temporary file, fsync, rename over. Saves coalesce: while one is
    being written, only the newest of the lists asked for meanwhile is written next."""

    log = Logger()

    def __init__(self, path: Path, reactor: Any, threadpool: Any = None) -> None:
        self.path = path
        self.reactor = reactor
        self.threadpool = threadpool if threadpool is not None else reactor.getThreadPool()
        self._writing: Deferred[None] | None = None
        self._next: list[Ban] | None = None
        self._waiters: list[Deferred[None]] = []

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self.reactor, self.threadpool, fn, *args)

    def load(self) -> Deferred[list[Ban]]:
        return self._in_thread(read_bans, self.path)

    def save(self, bans: list[Ban]) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        self._next = list(bans)
        if self._writing is None:
            self._write_next()
        return waiter

    def _write_next(self) -> None:
        bans, self._next = self._next, None
        waiters, self._waiters = self._waiters, []
        if bans is None:
            self._writing = None
            return
        writing = self._in_thread(write_bans, self.path, bans)
        self._writing = writing

        def done(result: Any) -> None:
            for waiter in waiters:
                waiter.callback(None)
            self._write_next()

        def failed(failure: Any) -> None:
            self.log.failure("writing bans to {path} failed", failure, path=str(self.path))
            done(None)

        writing.addCallbacks(done, failed)


def read_bans(path: Path) -> list[Ban]:
    """The bans in ``path`` (none when it does not exist); a bad entry is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    data = json.loads(text) if text.strip() else {}
    entries = data.get("bans", []) if isinstance(data, dict) else []
    bans = []
    for entry in entries:
        try:
            bans.append(Ban.from_json(entry))
        except (KeyError, TypeError, ValueError):
            continue
    return bans


def write_bans(path: Path, bans: list[Ban]) -> None:
    """Replace ``path`` atomically with ``bans`` (temp file, fsync, rename, fsync dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    payload = json.dumps({"bans": [ban.to_json() for ban in bans]}, indent=1, sort_keys=True)
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(payload + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
