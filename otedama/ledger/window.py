"""Running per-address totals of the PPLNS window, so a found block reads no shares.

``window_totals`` holds, for every address, the exact sum of the difficulties of its
shares created after ``window_state.start`` (NULL: every share). Each share batch
updates it in the batch's own transaction (:func:`update_totals`, called by
:func:`otedama.ledger.shares.insert_batch`): its shares are added, and when the newest
share moves the window on, the shares that left it are subtracted, so the table always
equals a sum over the shares table that nobody has to run.

Weights are integers in units of 2**-128 of a difficulty (``UNITS``): every float
difficulty of about 1e-22 or more is a whole number of them, so sums are exact. They
outgrow BIGINT: PostgreSQL keeps them as ``numeric`` (exact, added in one statement),
SQLite as decimal text (added in Python). A share whose difficulty is not a whole number of units
marks the totals invalid (``valid = 0``): blocks are then weighed by the full scan, as
before, and ``otedama stats --verify-window --rebuild`` rebuilds them.

A block's window ``(start, end]`` is read as the totals plus two small corrections, each
an index range scan on ``shares.created_at``: the shares between the window's start and
the totals' start (added back or taken out), and the shares after the block (taken out).
When those corrections would cover more than the window itself (a block recorded long
after it was found, a PROP round), the full scan is used instead. Either way the result
equals :func:`scan_weights` exactly; the property tests and the check mode hold it to that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from otedama.ledger.rewards import ScaledWeights, aggregate_weights
from otedama.ledger.tables import shares, window_state, window_totals

if TYPE_CHECKING:
    from otedama.ledger.shares import ShareRecord

__all__ = [
    "UNITS",
    "WindowCheck",
    "WindowState",
    "read_state",
    "rebuild_totals",
    "scan_weights",
    "update_totals",
    "verify_totals",
    "window_weights",
]

#: A weight of 1 (difficulty 1) in the totals' integer units.
UNITS = 1 << 128
_STATE_ID = 1
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
    #: The newest share time the totals have seen (None before the first share).
    newest: float | None = None


def read_state(connection: Connection, *, lock: bool = False) -> WindowState:
    """The totals' state; a missing row (a fresh or emptied database) is "every share"."""
    query = select(window_state.c.start, window_state.c.valid, window_state.c.newest).where(
        window_state.c.id == _STATE_ID
    )
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).first()
    if row is None and lock:
        # Concurrent batches on a fresh (or emptied) database: make the row to lock.
        dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
        connection.execute(
            dialect_insert(window_state)
            .values(id=_STATE_ID, start=None, valid=1, newest=None)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        row = connection.execute(query).first()
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


def units_per_address(rows: Iterable[tuple[str, float]], sign: int = 1) -> dict[str, int]:
    """Sum ``(address, difficulty)`` rows per address in ``1/UNITS``; raises NotWhole."""
    sums: dict[str, int] = {}
    get = sums.get
    multipliers: dict[int, int] = {}
    for address, difficulty in rows:
        numerator, denominator = difficulty.as_integer_ratio()
        multiplier = multipliers.get(denominator)
        if multiplier is None:
            if UNITS % denominator:
                raise NotWhole(f"difficulty {difficulty!r} is not a whole number of 2**-128")
            multiplier = multipliers[denominator] = UNITS // denominator
        sums[address] = get(address, 0) + sign * numerator * multiplier
    return sums


def _range_rows(
    connection: Connection, low: float | None, high: float | None, *, stream: bool = True
) -> Any:
    """``(address, difficulty)`` of the shares with ``low < created_at <= high``.

    ``stream`` fetches in chunks (a server-side cursor on PostgreSQL: three more round
    trips, worth it only for a large range such as a full scan).
    """
    query = select(shares.c.address, shares.c.difficulty)
    if low is not None:
        query = query.where(shares.c.created_at > low)
    if high is not None:
        query = query.where(shares.c.created_at <= high)
    if not stream:
        return connection.execute(query)
    return connection.execute(query, execution_options={"yield_per": _FETCH})


def update_totals(
    connection: Connection, records: Sequence[ShareRecord], window: float | None
) -> None:
    """Add one batch (already inserted in this transaction) to the totals and move the
    window on to ``newest share - window`` (``None``: never move it).

    Serialised by a lock on the state row, taken after the batch's insert so concurrent
    batches insert in parallel. The batch's own shares that are already behind the new
    start are added and then subtracted with the rest of the shares leaving the window,
    which nets them out; a concurrent batch not yet committed is not seen by the
    subtraction and, once it holds the lock, adds only its shares after the new start.
    """
    if not records:
        return
    state = read_state(connection, lock=True)
    if not state.valid:
        return
    start = state.start
    new_start = start
    newest = max(record.created_at for record in records)
    if state.newest is not None and state.newest > newest:
        newest = state.newest
    if window is not None:
        candidate = newest - window
        if start is None or candidate > start:
            new_start = candidate
    try:
        delta = units_per_address(
            (record.address, record.difficulty)
            for record in records
            if start is None or record.created_at > start
        )
        if new_start != start:
            rows = _range_rows(connection, start, new_start, stream=start is None)
            leaving = units_per_address(rows, sign=-1)
            for address, amount in leaving.items():
                delta[address] = delta.get(address, 0) + amount
    except NotWhole:
        connection.execute(delete(window_totals))
        _write_state(connection, WindowState(new_start, False, newest))
        return
    changes = {a: d for a, d in delta.items() if d}
    new_state = WindowState(new_start, True, newest)
    if connection.dialect.name == "postgresql":
        _apply_postgresql(connection, changes, new_state)
        return
    _apply(connection, changes)
    if new_start != start or newest != state.newest:
        _write_state(connection, new_state)


#: The totals and the state in one round trip: existing totals updated and new ones
#: inserted (under the state row's lock nobody else inserts them; an UPDATE joined to the
#: batch is twice as fast as INSERT ... ON CONFLICT), and the state row; the addresses
#: whose total reached zero come back for deletion.
_UPSERT_POSTGRESQL = text(
    "WITH t AS ("
    " SELECT a, w FROM unnest(CAST(:addresses AS text[]), CAST(:weights AS numeric[]))"
    " AS t(a, w)),"
    " up AS (UPDATE window_totals SET weight = window_totals.weight + t.w"
    " FROM t WHERE window_totals.address = t.a"
    " RETURNING window_totals.address, window_totals.weight),"
    " ins AS (INSERT INTO window_totals (address, weight)"
    " SELECT a, w FROM t WHERE a NOT IN (SELECT address FROM up)),"
    " st AS (UPDATE window_state SET start = :start, valid = 1, newest = :newest"
    " WHERE id = :id)"
    " SELECT address FROM up WHERE weight = 0"
)


def _apply_postgresql(connection: Connection, delta: Mapping[str, int], state: WindowState) -> None:
    """Add ``delta`` and write ``state`` (the row exists: :func:`read_state` made it)."""
    addresses = sorted(delta)
    zero = (
        connection.execute(
            _UPSERT_POSTGRESQL,
            {
                "addresses": addresses,
                "weights": [str(delta[a]) for a in addresses],
                "start": state.start,
                "newest": state.newest,
                "id": _STATE_ID,
            },
        )
        .scalars()
        .all()
    )
    if zero:
        connection.execute(delete(window_totals).where(window_totals.c.address.in_(zero)))


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


def read_totals(connection: Connection) -> dict[str, int]:
    """The stored totals, in ``1/UNITS`` (straight from the driver's cursor: 10,000 rows
    through SQLAlchemy's result objects cost more than the query)."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        # numeric as text: psycopg2 makes a Decimal of each otherwise, slower than int(str).
        weight = "CAST(weight AS text)" if connection.dialect.name == "postgresql" else "weight"
        cursor.execute(f"SELECT address, {weight} FROM window_totals")
        return {address: int(weight) for address, weight in cursor.fetchall()}
    finally:
        cursor.close()


def scan_weights(connection: Connection, window: tuple[float, float]) -> dict[str, Fraction]:
    """Per-address summed difficulty of the shares in ``(start, end]``: the full scan."""
    start, end = window
    low = None if start == -math.inf else start
    return aggregate_weights(_range_rows(connection, low, end))


def window_weights(connection: Connection, window: tuple[float, float]) -> Mapping[str, Fraction]:
    """Per-address summed difficulty in ``(start, end]``, exactly: from the running totals
    when they are valid and the corrections are smaller than the window, else the scan.

    Locks the state row (PostgreSQL) so the totals and the state are read consistently.
    """
    start, end = window
    state = read_state(connection, lock=True)
    if not state.valid or start == -math.inf:
        return scan_weights(connection, window)
    low = state.start
    correction = math.inf if low is None else abs(start - low)
    if state.newest is not None and state.newest > end:
        correction += state.newest - end
    if correction > end - start:
        return scan_weights(connection, window)
    assert low is not None
    weights = read_totals(connection)
    # Corrections are usually a moment's shares: fetched at once, no server-side cursor.
    stream = correction > (end - start) / 10
    if start > low:
        corrections = units_per_address(_range_rows(connection, low, start, stream=stream), sign=-1)
    else:
        corrections = units_per_address(_range_rows(connection, start, low, stream=stream))
    after = units_per_address(_range_rows(connection, end, None, stream=stream), sign=-1)
    for part in (corrections, after):
        for address, amount in part.items():
            weights[address] = weights.get(address, 0) + amount
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


def _recount(connection: Connection, start: float | None) -> dict[str, int]:
    return {a: w for a, w in units_per_address(_range_rows(connection, start, None)).items() if w}


def verify_totals(connection: Connection) -> WindowCheck:
    """Recount the totals from the shares (a full scan) and compare, address by address."""
    state = read_state(connection, lock=True)
    stored = read_totals(connection)
    try:
        recount = _recount(connection, state.start)
    except NotWhole:
        recount = {}
        state = WindowState(state.start, False, state.newest)
    differences = tuple(
        (address, stored.get(address, 0), recount.get(address, 0))
        for address in sorted(stored.keys() | recount.keys())
        if stored.get(address, 0) != recount.get(address, 0)
    )
    return WindowCheck(state.start, state.valid, len(recount), differences)


def rebuild_totals(connection: Connection) -> WindowCheck:
    """Recount the totals from the shares and store them (valid again if every share's
    difficulty is a whole number of units); returns the check after."""
    state = read_state(connection, lock=True)
    connection.execute(delete(window_totals))
    try:
        recount = _recount(connection, state.start)
    except NotWhole:
        _write_state(connection, WindowState(state.start, False, state.newest))
        return verify_totals(connection)
    if recount:
        connection.execute(
            insert(window_totals),
            [{"address": a, "weight": str(w)} for a, w in sorted(recount.items())],
        )
    _write_state(connection, WindowState(state.start, True, state.newest))
    return verify_totals(connection)
