"""Running per-address totals of the PPLNS window, so a found block reads no shares.

``window_totals`` plus the pending ``window_deltas`` hold, for every address, the exact
sum of the difficulties of its shares created after ``window_state.start`` (NULL: every
share), so they always equal a sum over the shares table that nobody has to run.

Weights are integers in units of 2**-128 of a difficulty (``UNITS``): every float
difficulty of about 1e-22 or more is a whole number of them, so sums are exact. They
outgrow BIGINT: PostgreSQL keeps them as ``numeric`` (exact; a fold sums them on the
server), SQLite as decimal text (summed in Python). A share whose difficulty is not a whole
number of units marks the totals invalid (``valid = 0``): blocks are then weighed by the
full scan, as before, and ``otedama stats --verify-window --rebuild`` rebuilds them.

Writes, without contention between share batches:

* Each batch (:func:`add_batch`, called by :func:`otedama.ledger.shares.insert_batch` in
  the batch's transaction) appends one ``window_deltas`` row: the per-address sums of its
  shares after the start it read. Batches share a lock (PostgreSQL: a shared advisory
  transaction lock, taken before the batch reads the start and held to its commit), so
  they never wait for each other, only for a fold.
* :func:`fold`, run by the share writer after 10 batches or a second, does its work
  under the same lock shared (batches go on): it counts the shares leaving the window
  (``newest share - window``) and adds them, negated, and the deltas committed so far to
  the totals, in one statement. Then it takes the lock exclusively (the batches between
  reading the start and committing finish first; new ones wait) only to move the start,
  relabelling the deltas committed meanwhile to it: exact, as none of their shares is
  behind it (else, a late batch, the leaving shares are counted again and those deltas
  added). A batch that commits after the fold reads the start the fold left: those of
  its shares (inserted before the fold) behind it are in neither the fold's count nor
  its delta. All in one transaction.

A block's window ``(start, end]`` is read (:func:`window_weights`) under the shared lock
(batches go on; no fold moves the start meanwhile) in one statement, so one snapshot:
the totals plus the pending deltas and two small corrections, each an index range scan
on ``shares.created_at`` counted per address and difficulty: the shares between the
window's start and the totals' start (added back or taken out), and the shares after
the block (taken out). A batch commits its shares and its delta together, so the
snapshot has both or neither. When those corrections would cover more than the window
itself (a block recorded long after it was found, a PROP round), the full scan is used
instead. Either way the result equals :func:`scan_weights` exactly; the property tests
and the check mode (:func:`verify_totals`, the same single-statement read against a
recount) hold it to that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, case, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from otedama.ledger.rewards import ScaledWeights, aggregate_weights
from otedama.ledger.tables import shares, window_deltas, window_state, window_totals

if TYPE_CHECKING:
    from otedama.ledger.shares import ShareRecord

__all__ = [
    "FOLD_BATCHES",
    "FOLD_INTERVAL",
    "UNITS",
    "FoldResult",
    "WindowCheck",
    "WindowState",
    "add_batch",
    "fold",
    "read_state",
    "rebuild_totals",
    "scan_weights",
    "verify_totals",
    "window_weights",
]

#: A weight of 1 (difficulty 1) in the totals' integer units.
UNITS = 1 << 128
#: Seconds between folds of the pending deltas into the totals (by the share writer)...
FOLD_INTERVAL = 1.0
#: ...or share batches, whichever comes first.
FOLD_BATCHES = 10
_STATE_ID = 1
#: PostgreSQL advisory lock of the window: shared by share batches and block reads,
#: exclusive for a fold or a rebuild ("otedama!" in ASCII).
_LOCK_KEY = 0x6F746564616D6121
#: PostgreSQL advisory lock that folds take, so that two never run at once.
_FOLD_LOCK_KEY = _LOCK_KEY + 1
#: A fold waits at most this long for the batches in flight (then fails, and is tried
#: again by the next batch), so a stuck transaction cannot hold a worker thread forever.
_FOLD_LOCK_TIMEOUT = "10s"
#: Rows fetched at a time when scanning shares.
_FETCH = 20_000
#: Keys per ``IN (...)`` on SQLite (its default limit of bound parameters is 999+).
_SQLITE_CHUNK = 500


class NotWhole(ValueError):
    """A difficulty that is not a whole number of ``1/UNITS``."""


@dataclass(frozen=True)
class WindowState:
    """Where the running totals stand: they sum the shares created after ``start``."""

    start: float | None
    valid: bool
    #: The newest share time the totals have folded in (None before the first share).
    newest: float | None = None


def _lock(connection: Connection, *, exclusive: bool) -> None:
    """Take the window's lock until the end of the transaction (PostgreSQL; SQLite has
    one connection, so its transactions never overlap)."""
    if connection.dialect.name != "postgresql":
        return
    if exclusive:
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{_FOLD_LOCK_TIMEOUT}'")
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        connection.exec_driver_sql("SET LOCAL lock_timeout = DEFAULT")
    else:
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({_LOCK_KEY})")


def read_state(connection: Connection) -> WindowState:
    """The totals' state; a missing row (a fresh or emptied database) is "every share"."""
    row = connection.execute(
        select(window_state.c.start, window_state.c.valid, window_state.c.newest).where(
            window_state.c.id == _STATE_ID
        )
    ).first()
    if row is None:
        return WindowState(None, True)
    return WindowState(
        None if row.start is None else float(row.start),
        bool(row.valid),
        None if row.newest is None else float(row.newest),
    )


def _write_state(connection: Connection, state: WindowState) -> None:
    values = {"start": state.start, "valid": 1 if state.valid else 0, "newest": state.newest}
    done = connection.execute(
        update(window_state).where(window_state.c.id == _STATE_ID).values(**values)
    )
    if done.rowcount == 0:
        connection.execute(insert(window_state).values(id=_STATE_ID, **values))


def _invalidate_from_batch(connection: Connection) -> None:
    """Mark the totals invalid from a share batch (rare: concurrent batches may do it
    together, hence the upsert; the next fold drops the totals and the deltas)."""
    dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(
        dialect_insert(window_state)
        .values(id=_STATE_ID, start=None, valid=0, newest=None)
        .on_conflict_do_update(index_elements=["id"], set_={"valid": 0})
    )


def units_per_address(rows: Iterable[tuple[str, float]], sign: int = 1) -> dict[str, int]:
    """Sum ``(address, difficulty)`` rows per address in ``1/UNITS``; raises NotWhole."""
    sums: dict[str, int] = {}
    get = sums.get
    multipliers: dict[int, int] = {}
    for address, difficulty in rows:
        numerator, denominator = difficulty.as_integer_ratio()
        multiplier = multipliers.get(denominator)
        if multiplier is None:
            multiplier = multipliers[denominator] = _multiplier(difficulty, denominator)
        sums[address] = get(address, 0) + sign * numerator * multiplier
    return sums


def _units(difficulty: float) -> int:
    """One share of ``difficulty`` in ``1/UNITS``; raises NotWhole."""
    numerator, denominator = difficulty.as_integer_ratio()
    return numerator * _multiplier(difficulty, denominator)


def _multiplier(difficulty: float, denominator: int) -> int:
    if UNITS % denominator:
        raise NotWhole(f"difficulty {difficulty!r} is not a whole number of 2**-128")
    return UNITS // denominator


def _range_rows(connection: Connection, low: float | None, high: float | None) -> Any:
    """``(address, difficulty)`` of the shares with ``low < created_at <= high``, fetched
    in chunks (a server-side cursor on PostgreSQL): the full scan."""
    query = select(shares.c.address, shares.c.difficulty)
    if low is not None:
        query = query.where(shares.c.created_at > low)
    if high is not None:
        query = query.where(shares.c.created_at <= high)
    return connection.execute(query, execution_options={"yield_per": _FETCH})


def _range_units(
    connection: Connection, low: float | None, high: float | None, sign: int = 1
) -> dict[str, int]:
    """The shares with ``low < created_at <= high`` summed per address in ``1/UNITS``;
    raises NotWhole. The server counts the shares of each address and difficulty (few
    rows to fetch), and their sum is the count times the difficulty: exact."""
    query = select(shares.c.address, shares.c.difficulty, func.count()).group_by(
        shares.c.address, shares.c.difficulty
    )
    if low is not None:
        query = query.where(shares.c.created_at > low)
    if high is not None:
        query = query.where(shares.c.created_at <= high)
    sums: dict[str, int] = {}
    units_of: dict[float, int] = {}
    for address, difficulty, count in connection.execute(query):
        each = units_of.get(difficulty)
        if each is None:
            each = units_of[difficulty] = _units(difficulty)
        sums[address] = sums.get(address, 0) + sign * count * each
    return sums


def add_batch(connection: Connection, records: Sequence[ShareRecord]) -> None:
    """Append one batch's delta row (its shares already inserted in this transaction).

    Takes the window's lock shared (concurrent batches never wait for each other), then
    reads the start: a fold cannot move it before this transaction commits.
    """
    if not records:
        return
    _lock(connection, exclusive=False)
    state = read_state(connection)
    if not state.valid:
        return
    start = state.start
    included = [r for r in records if start is None or r.created_at > start]
    try:
        delta = units_per_address((record.address, record.difficulty) for record in included)
    except NotWhole:
        _invalidate_from_batch(connection)
        return
    newest = max(record.created_at for record in records)
    oldest = min((record.created_at for record in included), default=None)
    # Difficulties are positive: every sum is too.
    addresses = list(delta)
    weights = [str(delta[a]) for a in addresses]
    if connection.dialect.name == "postgresql":
        # Array literals built here: the driver quoting 2,000 list items was half the time.
        connection.exec_driver_sql(
            "INSERT INTO window_deltas (start, newest, oldest, addresses, weights)"
            " VALUES (%s, %s, %s, %s::text[], %s::numeric[])",
            (start, newest, oldest, _text_array(addresses), "{" + ",".join(weights) + "}"),
        )
    else:
        connection.exec_driver_sql(
            "INSERT INTO window_deltas (start, newest, oldest, addresses, weights)"
            " VALUES (?, ?, ?, ?, ?)",
            (start, newest, oldest, json.dumps(addresses), ",".join(weights)),
        )


def _text_array(items: Iterable[str]) -> str:
    """A PostgreSQL ``text[]`` literal: every item double-quoted, ``"`` and ``\\`` escaped."""
    quoted = (
        item.replace("\\", "\\\\").replace('"', '\\"') if "\\" in item or '"' in item else item
        for item in items
    )
    return "{" + ",".join(f'"{item}"' for item in quoted) + "}"


def _parse_delta(addresses: str, weights: str) -> Iterator[tuple[str, int]]:
    """A SQLite delta row's ``(address, units)`` pairs."""
    if not weights:
        return iter(())
    return zip(json.loads(addresses), map(int, weights.split(",")), strict=True)


@dataclass(frozen=True)
class FoldResult:
    """What one fold did."""

    #: Delta rows (share batches) added to the totals.
    batches: int
    start: float | None
    valid: bool


def fold(connection: Connection, window: float | None) -> FoldResult:
    """Add the pending deltas to the totals and move the window on to ``newest share -
    window`` (``None``: never move it), subtracting the shares that left it.

    The work is done under the window's lock shared, so share batches go on: the shares
    leaving the window are counted, and the deltas committed so far added to the totals
    with them (one statement). Only moving the start takes the lock exclusive (after the
    batches in flight commit; new ones wait), for a moment: the deltas committed since
    are relabelled to the new start, which is exact when none of their shares is behind
    it. A late batch's delta (one with a share that old) is added under the exclusive
    lock instead, with the leaving shares counted again. Folds wait for each other (a
    lock of their own). All in the caller's transaction: readers see all of it or none.
    """
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_FOLD_LOCK_KEY})")
        _lock(connection, exclusive=False)
    state = read_state(connection)
    start = state.start
    newest = _max_newest(connection, state.newest)
    new_start = _new_start(start, newest, window)
    if not state.valid:
        return _invalid(connection, start, new_start, newest)
    try:
        leaving = {} if new_start == start else _range_units(connection, start, new_start, -1)
    except NotWhole:
        return _invalid(connection, start, new_start, newest)
    batches, merged_newest, merged_oldest = _merge(connection, start, leaving)
    newest = _later(newest, merged_newest)
    if new_start == start:
        if newest != state.newest:
            _write_state(connection, WindowState(start, True, newest))
        return FoldResult(batches, start, True)
    assert new_start is not None  # it moved
    _lock(connection, exclusive=True)
    pending = connection.execute(
        select(
            func.count(),
            func.max(window_deltas.c.newest),
            func.sum(case((window_deltas.c.start.is_distinct_from(start), 1), else_=0)),
            func.min(window_deltas.c.oldest),
        )
    ).one()
    if pending[2] or not read_state(connection).valid:
        # A batch marked the totals invalid, or (never under the lock) a delta against
        # another start: stop adding up.
        return _invalid(connection, start, new_start, _later(newest, pending[1]))
    oldest = _earlier(merged_oldest, pending[3])
    if oldest is not None and oldest <= new_start:
        # A late batch (its delta committed after the count, or may have): count the
        # leaving shares again, and add the deltas committed since.
        try:
            again = _range_units(connection, start, new_start, -1)
        except NotWhole:
            return _invalid(connection, start, new_start, _later(newest, pending[1]))
        difference = {a: again.get(a, 0) - leaving.get(a, 0) for a in again.keys() | leaving}
        more, merged_newest, _ = _merge(
            connection, start, {a: d for a, d in difference.items() if d}
        )
        batches += more
        newest = _later(newest, merged_newest)
    elif pending[0]:
        connection.execute(
            update(window_deltas)
            .where(window_deltas.c.start.is_not_distinct_from(start))
            .values(start=new_start)
        )
    _write_state(connection, WindowState(new_start, True, newest))
    return FoldResult(batches, new_start, True)


def _later(a: float | None, b: float | None) -> float | None:
    """The later of two share times (None: none)."""
    if a is None:
        return None if b is None else float(b)
    return a if b is None or a >= b else float(b)


def _earlier(a: float | None, b: float | None) -> float | None:
    """The earlier of two share times (None: none)."""
    if a is None:
        return None if b is None else float(b)
    return a if b is None or a <= b else float(b)


def _max_newest(connection: Connection, newest: float | None) -> float | None:
    """The newest share time of the state and of the deltas pending."""
    return _later(newest, connection.execute(select(func.max(window_deltas.c.newest))).scalar())


def _invalid(
    connection: Connection, start: float | None, new_start: float | None, newest: float | None
) -> FoldResult:
    """Drop the totals and the deltas (blocks are weighed by the scan until a rebuild);
    the start moves on all the same, so a rebuild recounts only the window."""
    _lock(connection, exclusive=True)
    connection.execute(delete(window_deltas))
    connection.execute(delete(window_totals))
    _write_state(connection, WindowState(new_start, False, newest))
    return FoldResult(0, new_start, False)


def _new_start(start: float | None, newest: float | None, window: float | None) -> float | None:
    """Where the window starts after a fold: ``newest - window``, never moving back."""
    if window is None or newest is None:
        return start
    candidate = newest - window
    return candidate if start is None or candidate > start else start


def _merge(
    connection: Connection, start: float | None, leaving: Mapping[str, int]
) -> tuple[int, float | None, float | None]:
    """Add the deltas against ``start`` (deleting them) and ``leaving`` to the totals;
    returns how many deltas, the newest share time among them and the oldest summed."""
    if connection.dialect.name == "postgresql":
        return _merge_postgresql(connection, start, leaving)
    return _merge_sqlite(connection, start, leaving)


#: The deltas and the leaving shares added to the totals in one round trip: the deltas
#: against the start (those committed when it begins) deleted and summed per address by
#: the server with the leaving shares, existing totals updated and new ones inserted
#: (only a fold writes them, and folds take turns; an UPDATE joined to the sums is twice
#: as fast as INSERT ... ON CONFLICT); the addresses whose total reached zero come back
#: for deletion, with the number of deltas and their newest share time.
_FOLD_POSTGRESQL = (
    "WITH d AS (DELETE FROM window_deltas WHERE start IS NOT DISTINCT FROM %s"
    " RETURNING newest, oldest, addresses, weights),"
    " u AS (SELECT x.a, x.w FROM d, unnest(d.addresses, d.weights) AS x(a, w)"
    " UNION ALL SELECT a, w FROM unnest(%s::text[], %s::numeric[]) AS y(a, w)),"
    " t AS (SELECT a, sum(w) AS w FROM u GROUP BY a),"
    " up AS (UPDATE window_totals SET weight = window_totals.weight + t.w"
    " FROM t WHERE window_totals.address = t.a"
    " RETURNING window_totals.address, window_totals.weight),"
    " ins AS (INSERT INTO window_totals (address, weight)"
    " SELECT a, w FROM t WHERE w <> 0 AND a NOT IN (SELECT address FROM up))"
    " SELECT 0, address, NULL::float8, NULL::float8 FROM up WHERE weight = 0"
    " UNION ALL SELECT 1, CAST(count(*) AS text), max(newest), min(oldest) FROM d"
)


def _merge_postgresql(
    connection: Connection, start: float | None, leaving: Mapping[str, int]
) -> tuple[int, float | None, float | None]:
    addresses = list(leaving)
    rows = connection.exec_driver_sql(
        _FOLD_POSTGRESQL,
        (start, _text_array(addresses), "{" + ",".join(str(leaving[a]) for a in addresses) + "}"),
    ).all()
    zero = [address for kind, address, _, _ in rows if kind == 0]
    if zero:
        connection.execute(delete(window_totals).where(window_totals.c.address.in_(zero)))
    batches, newest, oldest = next((int(n), new, old) for kind, n, new, old in rows if kind == 1)
    return batches, _later(None, newest), _earlier(None, oldest)


def _merge_sqlite(
    connection: Connection, start: float | None, leaving: Mapping[str, int]
) -> tuple[int, float | None, float | None]:
    delta = dict(leaving)
    get = delta.get
    batches = 0
    newest: float | None = None
    oldest: float | None = None
    where = "start IS ?"
    for row_newest, row_oldest, addresses, weights in connection.exec_driver_sql(
        f"SELECT newest, oldest, addresses, weights FROM window_deltas WHERE {where}", (start,)
    ).all():
        batches += 1
        newest = _later(newest, row_newest)
        oldest = _earlier(oldest, row_oldest)
        for address, units in _parse_delta(addresses, weights):
            delta[address] = get(address, 0) + units
    connection.exec_driver_sql(f"DELETE FROM window_deltas WHERE {where}", (start,))
    _apply(connection, {a: d for a, d in delta.items() if d})
    return batches, newest, oldest


def _apply(connection: Connection, delta: Mapping[str, int]) -> None:
    """Add ``delta`` to the totals (rows reaching zero are removed); SQLite, in Python,
    with plain tuples through the driver (this runs holding the GIL the reactor needs)."""
    if not delta:
        return
    addresses = sorted(delta)
    current: dict[str, int] = {}
    for offset in range(0, len(addresses), _SQLITE_CHUNK):
        chunk = addresses[offset : offset + _SQLITE_CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = connection.exec_driver_sql(
            f"SELECT address, weight FROM window_totals WHERE address IN ({marks})", tuple(chunk)
        )
        current.update((a, int(w)) for a, w in rows)
    changed: list[tuple[str, str]] = []
    new: list[tuple[str, str]] = []
    gone: list[tuple[str]] = []
    for address in addresses:
        before = current.get(address)
        total = (before or 0) + delta[address]
        if total == 0:
            if before is not None:
                gone.append((address,))
        elif before is None:
            new.append((address, str(total)))
        else:
            changed.append((str(total), address))
    if changed:
        connection.exec_driver_sql("UPDATE window_totals SET weight = ? WHERE address = ?", changed)
    if new:
        connection.exec_driver_sql("INSERT INTO window_totals (address, weight) VALUES (?, ?)", new)
    if gone:
        connection.exec_driver_sql("DELETE FROM window_totals WHERE address = ?", gone)


#: Row kinds of :func:`_snapshot`: a stored total (summed with the pending deltas on
#: PostgreSQL), a pending delta row (SQLite), the state's ``valid`` (a batch may mark the
#: totals invalid while a read runs: it must see that in the same snapshot as the
#: batch's shares), and shares of the requested ranges.
_STORED = 0
_DELTA = 1
_VALID = 2
_RANGE = 3
_VALID_ROW = f"SELECT {_VALID}, NULL, CAST(valid AS text), NULL, NULL FROM window_state"

#: The totals and the pending deltas' rows, weights as decimal text (a Decimal per value
#: from the driver costs more than int() of its text; the server's unnest and sum of the
#: deltas cost twice what adding them up here does). PostgreSQL's delta addresses come
#: as a list in the fifth column (the driver parses the array), SQLite's as JSON.
_STORED_POSTGRESQL = (
    f"SELECT {_STORED}, address, CAST(weight AS text), NULL::float8, NULL::text[]"
    " FROM window_totals"
    f" UNION ALL SELECT {_DELTA}, NULL, CAST(weights AS text), NULL, addresses"
    " FROM window_deltas"
    f" UNION ALL {_VALID_ROW}"
)
_STORED_SQLITE = (
    f"SELECT {_STORED}, address, weight, NULL, NULL FROM window_totals"
    f" UNION ALL SELECT {_DELTA}, addresses, weights, NULL, NULL FROM window_deltas"
    f" UNION ALL {_VALID_ROW}"
)


def _snapshot(
    connection: Connection,
    ranges: Sequence[tuple[float | None, float | None]],
    *,
    stream: bool = False,
) -> tuple[bool, dict[str, int], list[dict[str, int]]]:
    """Whether the totals are valid, the stored totals (with the pending deltas) and the
    shares of each ``(low, high]`` range summed per address, in ``1/UNITS``, all read by
    one statement: one snapshot, so every share batch is in both or in neither.

    Raises NotWhole for a share in a range that is not a whole number of units.
    """
    postgresql = connection.dialect.name == "postgresql"
    mark = "%s" if postgresql else "?"
    parts = [_STORED_POSTGRESQL if postgresql else _STORED_SQLITE]
    params: list[float] = []
    for index, (low, high) in enumerate(ranges):
        conditions = []
        if low is not None:
            conditions.append(f"created_at > {mark}")
            params.append(low)
        # An open range gets the upper bound infinity (no share has it): two bounds make
        # PostgreSQL estimate a range, not a third of the table, when the table has no
        # statistics yet (a fresh database), so it takes the index, not a full scan.
        conditions.append(f"created_at <= {mark}")
        params.append(math.inf if high is None else high)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        parts.append(
            f"SELECT {_RANGE + index}, address, CAST(count(*) AS text), difficulty, NULL"
            f" FROM shares{where} GROUP BY address, difficulty"
        )
    statement = " UNION ALL ".join(parts)
    valid = True
    stored: dict[str, int] = {}
    sums: list[dict[str, int]] = [{} for _ in ranges]
    #: Units of one share of each difficulty seen.
    units_of: dict[float, int] = {}
    raw = connection.connection.dbapi_connection
    assert raw is not None
    # Straight from the driver's cursor: 10,000 rows through SQLAlchemy's result objects
    # cost more than the query. A named (server-side) cursor streams a long scan.
    cursor: Any = raw.cursor("otedama_window") if postgresql and stream else raw.cursor()
    try:
        if postgresql and stream:
            cursor.itersize = _FETCH
        cursor.execute(statement, tuple(params))
        rows: Iterable[tuple[int, str, str | None, float | None, list[str] | None]] = (
            cursor if stream else cursor.fetchall()
        )
        get = stored.get
        for kind, address, weight, difficulty, addresses in rows:
            if kind == _STORED:
                assert weight is not None
                stored[address] = get(address, 0) + int(weight)
            elif kind == _DELTA:
                assert weight is not None
                pairs = (
                    _parse_delta(address, weight)
                    if addresses is None
                    # numeric[] as text: "{1,2,...}" (digits only).
                    else zip(addresses, map(int, weight[1:-1].split(",")), strict=True)
                    if addresses
                    else ()
                )
                for delta_address, units in pairs:
                    stored[delta_address] = get(delta_address, 0) + units
            elif kind == _VALID:
                valid = weight == "1"
            else:
                assert weight is not None and difficulty is not None
                each = units_of.get(difficulty)
                if each is None:
                    each = units_of[difficulty] = _units(difficulty)
                part = sums[kind - _RANGE]
                part[address] = part.get(address, 0) + int(weight) * each
    finally:
        cursor.close()
    return valid, stored, sums


def scan_weights(connection: Connection, window: tuple[float, float]) -> dict[str, Fraction]:
    """Per-address summed difficulty of the shares in ``(start, end]``: the full scan."""
    start, end = window
    low = None if start == -math.inf else start
    return aggregate_weights(_range_rows(connection, low, end))


def window_weights(connection: Connection, window: tuple[float, float]) -> Mapping[str, Fraction]:
    """Per-address summed difficulty in ``(start, end]``, exactly: from the running totals
    when they are valid and the corrections are smaller than the window, else the scan.

    Holds the window's lock shared (share batches go on; no fold runs meanwhile).
    """
    start, end = window
    if start == -math.inf:
        return scan_weights(connection, window)
    _lock(connection, exclusive=False)
    state = read_state(connection)
    low = state.start
    if not state.valid or low is None:
        return scan_weights(connection, window)
    correction = abs(start - low)
    newest = connection.execute(select(func.max(shares.c.created_at))).scalar()
    if newest is not None and float(newest) > end:
        correction += float(newest) - end
    if correction > end - start:
        return scan_weights(connection, window)
    sign = -1 if start > low else 1
    between = (low, start) if start > low else (start, low)
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:
        # Serial: two parallel workers started for 10,000 rows cost more than they save.
        previous = connection.exec_driver_sql(
            "SELECT current_setting('max_parallel_workers_per_gather'),"
            " set_config('max_parallel_workers_per_gather', '0', true)"
        ).scalar()
    try:
        valid, weights, (moved, after) = _snapshot(connection, [between, (end, None)])
    except NotWhole:
        valid = False
    if postgresql:
        connection.exec_driver_sql(
            "SELECT set_config('max_parallel_workers_per_gather', %s, true)", (previous,)
        )
    if not valid:
        # A batch with a share the totals cannot hold committed since the state was read.
        return scan_weights(connection, window)
    for part, part_sign in ((moved, sign), (after, -1)):
        for address, amount in part.items():
            weights[address] = weights.get(address, 0) + part_sign * amount
    return ScaledWeights({a: w for a, w in weights.items() if w}, UNITS)


@dataclass(frozen=True)
class WindowCheck:
    """The running totals compared with a recount from the shares table."""

    start: float | None
    valid: bool
    addresses: int
    #: Addresses whose stored total differs: (address, stored, recounted), in 1/UNITS.
    differences: tuple[tuple[str, int, int], ...]

    @property
    def ok(self) -> bool:
        return self.valid and not self.differences


def verify_totals(connection: Connection) -> WindowCheck:
    """Recount the totals from the shares (a full scan) and compare, address by address.

    The totals (with the pending deltas) and the recount are read by one statement, under
    the window's shared lock: share batches go on meanwhile.
    """
    _lock(connection, exclusive=False)
    state = read_state(connection)
    try:
        valid, stored, (recount,) = _snapshot(connection, [(state.start, None)], stream=True)
    except NotWhole:
        return WindowCheck(state.start, False, 0, ())
    recount = {a: w for a, w in recount.items() if w}
    differences = tuple(
        (address, stored.get(address, 0), recount.get(address, 0))
        for address in sorted(stored.keys() | recount.keys())
        if stored.get(address, 0) != recount.get(address, 0)
    )
    return WindowCheck(state.start, valid, len(recount), differences)


def rebuild_totals(connection: Connection) -> WindowCheck:
    """Recount the totals from the shares and store them (valid again if every share's
    difficulty is a whole number of units); returns the check after.

    Holds the window's lock exclusively for the recount: share batches wait for it.
    """
    _lock(connection, exclusive=True)
    state = read_state(connection)
    connection.execute(delete(window_deltas))
    connection.execute(delete(window_totals))
    try:
        recount = _range_units(connection, state.start, None)
    except NotWhole:
        _write_state(connection, WindowState(state.start, False, state.newest))
        return verify_totals(connection)
    rows = [{"address": a, "weight": str(w)} for a, w in sorted(recount.items()) if w]
    if rows:
        connection.execute(insert(window_totals), rows)
    _write_state(connection, WindowState(state.start, True, state.newest))
    return verify_totals(connection)
