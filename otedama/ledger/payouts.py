"""Payouts: pay spendable balances through the wallet, exactly once.

A payout batch is a small state machine kept in ``payout_batches``::

    committed ──wallet accepted──▶ sent ──tx confirmed──▶ confirmed
        │
        └──wallet definitely refused──▶ failed (balances restored)

The order of work makes a crash at any point harmless:

1. **Commit** (one DB transaction): the batch row (``committed``, comment
   ``otedama-payout-<id>``), its items, and a negative ``payout`` journal entry per
   address. From here the credit is reserved for this batch and for nothing else.
2. **Send**: one ``sendmany`` carrying the batch's comment.
3. **Record** the txid: state ``sent``.
4. **Confirm** on a later tick, once the wallet transaction has confirmations.

Every tick first reconciles each ``committed`` batch against the wallet: a transaction
with the batch's comment in ``listtransactions`` that pays exactly the batch's items
means the send happened (a crash or a lost reply came between 2 and 3), so its txid is
recorded; no such transaction means the wallet was never reached, so the same batch is
sent again with the same comment; the comment on other outputs (a wallet kept across a
rebuilt ledger) leaves the batch for a person. A second batch is never made for credit
already in one, and no new batch is made while any batch is still unreconciled.

Wallet errors: a definite refusal (see :data:`DEFINITE_FAILURE_CODES`) fails the batch
and books ``payout_reversal`` entries that restore the balances; anything else (timeout,
connection lost, an unexpected error) may or may not have paid, so the batch stays
``committed`` and is reconciled on the next tick, never re-sent blindly.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Connection, func, insert, select, text, update
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from otedama.chain.rpcjson import btc_to_sats
from otedama.ledger.stats import spendable_balances
from otedama.ledger.tables import (
    BATCH_COMMITTED,
    BATCH_CONFIRMED,
    BATCH_FAILED,
    BATCH_SENT,
    PAYOUT,
    PAYOUT_REVERSAL,
    journal,
    payout_batches,
    payout_items,
)
from otedama.ops.outage import OutageLog

__all__ = [
    "CRASH_POINTS",
    "DEFINITE_FAILURE_CODES",
    "DUST_LIMIT",
    "LedgerRunner",
    "PayoutBatch",
    "PayoutProcessor",
    "ReconcileError",
    "TickReport",
    "Wallet",
    "batch_comment",
    "btc_to_sats",
    "create_batch",
    "is_definite_failure",
    "load_batches",
    "mark_confirmed",
    "mark_failed",
    "mark_sent",
    "sent_outputs",
]

#: Wallet RPC error codes that mean "refused, nothing was sent": the batch fails and the
#: balances are restored. -6 insufficient funds, -13 wallet locked, -5 invalid address,
#: -3 wrong type, -8 invalid parameter, -18 wallet not loaded, -19 wallet not specified,
#: -32601 no such method (wallet disabled), -32602 invalid parameters.
DEFINITE_FAILURE_CODES = frozenset({-6, -13, -5, -3, -8, -18, -19, -32601, -32602})

#: Outputs below this are refused by wallets as dust (546 sat, P2PKH's limit), so a
#: smaller minimum payout would make batches that can never be sent.
DUST_LIMIT = 546

#: The steps at which ``crash_hook`` is called (a test seam for the crash tests).
CRASH_POINTS = ("batch_committed", "wallet_called", "txid_recorded")

#: PostgreSQL advisory lock key held while a batch is made, so that two processors on one
#: database cannot reserve the same credit (ASCII "otedamap").
PAYOUT_LOCK_KEY = 0x6F746564616D6170

#: Allowed state changes of a payout batch.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    BATCH_COMMITTED: frozenset({BATCH_SENT, BATCH_FAILED}),
    BATCH_SENT: frozenset({BATCH_CONFIRMED}),
    BATCH_CONFIRMED: frozenset(),
    BATCH_FAILED: frozenset(),
}


T = TypeVar("T")

#: How far before a batch's creation the wallet history is searched for it (seconds):
#: room for the wallet's clock being behind ours.
CLOCK_SLACK = 7200.0

#: The most wallet entries searched for one unfinished batch before giving up (the batch
#: then stays unresolved and the operator is told).
MAX_SEARCH = 1_000_000


class LedgerRunner(Protocol):
    """The part of ``LedgerStore`` payouts use: run ``fn(connection)`` in one transaction."""

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` on the DB thread pool inside one transaction and return its result."""
        ...


class Wallet(Protocol):
    """What payouts need from a wallet; ``BitcoindClient`` satisfies it.

    Errors carrying an integer ``code`` are the wallet's own refusals (JSON-RPC errors);
    any other exception leaves the outcome of a ``send_many`` unknown.
    """

    async def send_many(self, amounts: Mapping[str, int], comment: str) -> str:
        """Pay ``{address: satoshis}`` in one transaction labelled ``comment``; the txid."""
        ...

    async def get_transaction(self, txid: str) -> Mapping[str, Any]:
        """The wallet's view of ``txid``, with at least ``confirmations``."""
        ...

    async def list_transactions(self, count: int) -> Sequence[Mapping[str, Any]]:
        """The latest ``count`` wallet entries, each with ``txid`` and ``comment`` if any."""
        ...


def batch_comment(batch_id: int) -> str:
    """The comment that ties a wallet transaction to its batch."""
    return f"otedama-payout-{batch_id}"


@dataclass(frozen=True)
class PayoutBatch:
    """One payout batch as stored: its items map address to satoshis."""

    id: int
    comment: str
    state: str
    txid: str | None
    created_at: float
    items: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.items.values())


@dataclass
class TickReport:
    """What one payout tick did, batch ids per outcome (also logged)."""

    #: Unfinished batches found in the wallet, now recorded as sent.
    recovered: list[int] = field(default_factory=list)
    #: Unfinished batches the wallet never saw, sent again under the same comment.
    resent: list[int] = field(default_factory=list)
    #: New batches made and sent this tick.
    sent: list[int] = field(default_factory=list)
    #: Batches the wallet refused; their balances were restored.
    failed: list[int] = field(default_factory=list)
    #: Batches whose outcome is unknown; reconciled on the next tick.
    unresolved: list[int] = field(default_factory=list)
    #: Batches whose transaction confirmed.
    confirmed: list[int] = field(default_factory=list)


# -- database steps (each runs inside one transaction via LedgerStore.run) ---------------


def load_batches(connection: Connection, state: str) -> list[PayoutBatch]:
    """Every batch in ``state``, oldest first, with its items."""
    rows = connection.execute(
        select(
            payout_batches.c.id,
            payout_batches.c.comment,
            payout_batches.c.txid,
            payout_batches.c.created_at,
        )
        .where(payout_batches.c.state == state)
        .order_by(payout_batches.c.id)
    ).all()
    if not rows:
        return []
    items: dict[int, dict[str, int]] = {row.id: {} for row in rows}
    for item in connection.execute(
        select(payout_items.c.batch_id, payout_items.c.address, payout_items.c.amount)
        .where(payout_items.c.batch_id.in_(list(items)))
        .order_by(payout_items.c.id)
    ):
        items[item.batch_id][item.address] = int(item.amount)
    return [
        PayoutBatch(row.id, row.comment, state, row.txid, row.created_at, items[row.id])
        for row in rows
    ]


def create_batch(
    connection: Connection,
    now: float,
    minimum_payout_sats: int,
    max_recipients: int,
    refused_addresses: frozenset[str] = frozenset(),
    kept_addresses: frozenset[str] = frozenset(),
) -> PayoutBatch | None:
    """Reserve every spendable balance of at least the minimum for one new batch.

    ``kept_addresses`` (the pool's own wallet address) are never paid: their balance (the
    pool's fee when no separate fee address is configured) is already in the wallet, and
    sending it there again would only cost an output and a transaction fee.

    Makes the batch row, its items and the ``payout`` debits together, or nothing: None
    when nobody is owed enough, or when an earlier batch is still ``committed`` (it must
    be reconciled first). With more payable addresses than ``max_recipients``, the
    largest balances go first (ties by address) and the rest wait for the next batch.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PAYOUT_LOCK_KEY})
    unfinished = connection.execute(
        select(func.count())
        .select_from(payout_batches)
        .where(payout_batches.c.state == BATCH_COMMITTED)
    ).scalar_one()
    if unfinished:
        return None
    payable = sorted(
        (
            (address, amount)
            for address, amount in spendable_balances(connection).items()
            if amount >= minimum_payout_sats
            and address not in refused_addresses
            and address not in kept_addresses
        ),
        key=lambda item: (-item[1], item[0]),
    )[:max_recipients]
    if not payable:
        return None
    batch_id: int = connection.execute(
        insert(payout_batches).returning(payout_batches.c.id),
        {
            "created_at": now,
            "updated_at": now,
            "state": BATCH_COMMITTED,
            # Unique placeholder until the id is known, in this same transaction.
            "comment": f"otedama-payout-new-{uuid.uuid4().hex}",
            "txid": None,
            "total": sum(amount for _, amount in payable),
            "error": None,
        },
    ).scalar_one()
    comment = batch_comment(batch_id)
    connection.execute(
        update(payout_batches).where(payout_batches.c.id == batch_id).values(comment=comment)
    )
    connection.execute(
        insert(payout_items),
        [{"batch_id": batch_id, "address": a, "amount": amount} for a, amount in payable],
    )
    connection.execute(
        insert(journal),
        [
            {
                "created_at": now,
                "address": address,
                "kind": PAYOUT,
                "amount": -amount,
                "block_id": None,
                "batch_id": batch_id,
                "note": comment,
            }
            for address, amount in payable
        ],
    )
    return PayoutBatch(batch_id, comment, BATCH_COMMITTED, None, now, dict(payable))


def _transition(
    connection: Connection, batch_id: int, old: str, new: str, now: float, **values: Any
) -> bool:
    """Move a batch from ``old`` to ``new`` if it is still in ``old`` (compare and set)."""
    if new not in TRANSITIONS[old]:
        raise ValueError(f"payout batch {batch_id}: no transition from {old} to {new}")
    result = connection.execute(
        update(payout_batches)
        .where(payout_batches.c.id == batch_id, payout_batches.c.state == old)
        .values(state=new, updated_at=now, **values)
    )
    return result.rowcount == 1


def mark_sent(connection: Connection, batch_id: int, txid: str, now: float) -> bool:
    """Record the wallet transaction of a committed batch."""
    return _transition(connection, batch_id, BATCH_COMMITTED, BATCH_SENT, now, txid=txid)


def mark_confirmed(connection: Connection, batch_id: int, now: float) -> bool:
    """Record that a sent batch's transaction confirmed."""
    return _transition(connection, batch_id, BATCH_SENT, BATCH_CONFIRMED, now)


def mark_failed(connection: Connection, batch_id: int, error: str, now: float) -> bool:
    """Fail a committed batch and restore its balances with ``payout_reversal`` entries."""
    if not _transition(connection, batch_id, BATCH_COMMITTED, BATCH_FAILED, now, error=error):
        return False
    items = connection.execute(
        select(payout_items.c.address, payout_items.c.amount)
        .where(payout_items.c.batch_id == batch_id)
        .order_by(payout_items.c.id)
    ).all()
    connection.execute(
        insert(journal),
        [
            {
                "created_at": now,
                "address": item.address,
                "kind": PAYOUT_REVERSAL,
                "amount": int(item.amount),
                "block_id": None,
                "batch_id": batch_id,
                "note": f"{batch_comment(batch_id)} failed: {error}"[:500],
            }
            for item in items
        ],
    )
    return True


# -- reading wallet replies ----------------------------------------------------------------


class ReconcileError(Exception):
    """An unfinished batch's fate cannot be decided from the wallet without a person."""


def sent_outputs(details: Any) -> dict[str, int]:
    """Satoshis per address in the ``send`` details of a ``gettransaction`` reply."""
    paid: dict[str, int] = {}
    for detail in details:
        if detail.get("category") != "send" or not isinstance(detail.get("address"), str):
            continue
        address = detail["address"]
        paid[address] = paid.get(address, 0) - btc_to_sats(detail["amount"])
    return paid


def _error_code(error: BaseException) -> int | None:
    code = getattr(error, "code", None)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def is_definite_failure(error: BaseException) -> bool:
    """True when the wallet refused the payment, so nothing can have been sent."""
    return _error_code(error) in DEFINITE_FAILURE_CODES


# -- the service -------------------------------------------------------------------------


def _check_schedule(interval: float, minimum_payout_sats: int) -> None:
    if interval <= 0:
        raise ValueError(f"pool.payout_interval must be positive, got {interval!r}")
    if isinstance(minimum_payout_sats, bool) or not isinstance(minimum_payout_sats, int):
        raise TypeError(f"minimum payout must be an int of satoshis, got {minimum_payout_sats!r}")
    if minimum_payout_sats < DUST_LIMIT:
        raise ValueError(
            f"pool.minimum_payout: {minimum_payout_sats} sat is below the dust limit "
            f"({DUST_LIMIT} sat = 0.00000546); wallets refuse such outputs"
        )


class PayoutProcessor(Service):
    """Pays confirmed balances every ``interval`` seconds, exactly once (see the module doc).

    ``kept_addresses`` are the pool wallet's own addresses: their balances stay in the
    wallet and are never sent (see :func:`create_batch`). ``crash_hook(step)`` is a test
    seam: it is called after each step named in :data:`CRASH_POINTS`, so the crash tests
    can kill the process exactly there.
    """

    log = Logger()

    def __init__(
        self,
        store: LedgerRunner,
        wallet: Wallet,
        clock: IReactorTime,
        interval: float = 600.0,
        minimum_payout_sats: int = 100_000,
        max_recipients_per_batch: int = 500,
        *,
        confirmations: int = 1,
        search_depth: int = 10_000,
        kept_addresses: Iterable[str] = (),
        crash_hook: Callable[[str], None] | None = None,
        on_sent: Callable[[PayoutBatch, str], Awaitable[object]] | None = None,
    ) -> None:
        _check_schedule(interval, minimum_payout_sats)
        if max_recipients_per_batch < 1:
            raise ValueError(
                f"max recipients per payout batch must be at least 1, got {max_recipients_per_batch}"
            )
        if confirmations < 1:
            raise ValueError(f"payout confirmations must be at least 1, got {confirmations}")
        self.store = store
        self.wallet = wallet
        self.clock = clock
        self._now: Callable[[], float] = cast(Any, clock).seconds
        self.interval = interval
        self.minimum_payout_sats = minimum_payout_sats
        self.max_recipients_per_batch = max_recipients_per_batch
        self.confirmations = confirmations
        if search_depth < 1:
            raise ValueError(f"payout search depth must be at least 1, got {search_depth}")
        self.search_depth = search_depth
        self.crash_hook = crash_hook
        #: Awaited with each batch the wallet took (the audit log), before it is logged.
        self.on_sent = on_sent
        self.kept_addresses = frozenset(kept_addresses)
        #: Addresses the wallet called invalid (-5); left out of new batches until restart.
        self.refused_addresses: set[str] = set()
        #: What the latest tick did (None before the first).
        self.last_report: TickReport | None = None
        self._loop: LoopingCall | None = None
        self._busy = False
        self._idle_waiters: list[Deferred[None]] = []
        #: Paused by an operator (the API's admin endpoint): ticks send nothing until resumed.
        self.paused = False
        #: A wallet or database outage: one warning when it starts, one info when it ends.
        self._outage = OutageLog("payout tick", f"every {interval:g} s")

    # -- service ---------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._start_loop(now=True)

    def _start_loop(self, now: bool) -> None:
        loop = LoopingCall(self._scheduled_tick)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.interval, now=now).addErrback(
            lambda failure: self.log.failure("payout loop stopped", failure)
        )

    def reschedule(self, interval: float, minimum_payout_sats: int) -> None:
        """Apply a reloaded interval and minimum: the next batch uses them.

        A new interval restarts the timer (the next tick one new interval from now);
        a tick in flight finishes as it started.
        """
        _check_schedule(interval, minimum_payout_sats)
        self.minimum_payout_sats = minimum_payout_sats
        if interval == self.interval:
            return
        self.interval = interval
        if self._loop is not None and self._loop.running:
            self._loop.stop()
            self._start_loop(now=False)

    def stopService(self) -> Deferred[None]:
        """Stop ticking; the Deferred fires once the tick in flight (if any) has finished."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        # Let the tick in flight finish its DB and wallet calls before the store stops.
        return self.when_idle()

    def pause(self) -> Deferred[None]:
        """Stop paying: no tick starts until :meth:`resume`. The Deferred fires once the
        tick in flight (if any) has finished, so nothing is being sent when it does."""
        if not self.paused:
            self.paused = True
            self.log.info("payouts paused")
        return self.when_idle()

    def resume(self) -> None:
        """Pay again from the next scheduled tick."""
        if self.paused:
            self.paused = False
            self.log.info("payouts resumed")

    def when_idle(self) -> Deferred[None]:
        """A Deferred that fires when no tick is running (at once if none is)."""
        if not self._busy:
            return succeed(None)
        idle: Deferred[None] = Deferred()
        self._idle_waiters.append(idle)
        return idle

    def _scheduled_tick(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._logged_tick())

    async def _logged_tick(self) -> None:
        outage = self._outage
        outage.retry = f"every {self.interval:g} s"
        try:
            await self.tick()
        except Exception:
            outage.failed(self.log)
        else:
            outage.succeeded(self.log)

    # -- one tick --------------------------------------------------------------------

    async def tick(self) -> TickReport:
        """Reconcile unfinished batches, confirm sent ones, then pay what is owed."""
        if self._busy:
            self.log.warn("payout tick skipped: the previous one is still running")
            return TickReport()
        if self.paused:
            return TickReport()
        self._busy = True
        report = TickReport()
        try:
            await self._tick(report)
            return report
        finally:
            self.last_report = report
            self._busy = False
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    async def _tick(self, report: TickReport) -> None:
        committed = await self.store.run(partial(load_batches, state=BATCH_COMMITTED))
        for batch in committed:
            await self._reconcile(batch, report)
        await self._confirm_sent(report)
        if report.unresolved:
            self.log.warn(
                "no new payouts until payout batches {batches} are reconciled",
                batches=report.unresolved,
            )
            return
        now = self._now()
        refused = frozenset(self.refused_addresses)
        new_batch: PayoutBatch | None = await self.store.run(
            partial(
                create_batch,
                now=now,
                minimum_payout_sats=self.minimum_payout_sats,
                max_recipients=self.max_recipients_per_batch,
                refused_addresses=refused,
                kept_addresses=self.kept_addresses,
            )
        )
        if new_batch is None:
            return
        self.log.info(
            "payout batch {batch_id} committed: {total} sat to {count} addresses",
            batch_id=new_batch.id,
            total=new_batch.total,
            count=len(new_batch.items),
        )
        self._crash_point("batch_committed")
        if await self._send(new_batch, report):
            report.sent.append(new_batch.id)

    async def _reconcile(self, batch: PayoutBatch, report: TickReport) -> None:
        """Find out whether an unfinished batch reached the wallet; finish it either way."""
        try:
            txid = await self._find_in_wallet(batch)
        except ReconcileError as e:
            self.log.error(
                "payout batch {batch_id} cannot be reconciled: {error}",
                batch_id=batch.id,
                error=str(e),
            )
            report.unresolved.append(batch.id)
            return
        except Exception as e:
            self.log.warn(
                "payout batch {batch_id} not reconciled, wallet unreachable: {error}",
                batch_id=batch.id,
                error=e,
            )
            report.unresolved.append(batch.id)
            return
        if txid is not None:
            now = self._now()
            await self.store.run(partial(mark_sent, batch_id=batch.id, txid=txid, now=now))
            await self._report_sent(batch, txid)
            self.log.info(
                "payout batch {batch_id} had reached the wallet as {txid}; recorded as sent",
                batch_id=batch.id,
                txid=txid,
            )
            report.recovered.append(batch.id)
            self._crash_point("txid_recorded")
            return
        self.log.info(
            "payout batch {batch_id} never reached the wallet; sending it now as {comment}",
            batch_id=batch.id,
            comment=batch.comment,
        )
        if await self._send(batch, report):
            report.resent.append(batch.id)

    async def _find_in_wallet(self, batch: PayoutBatch) -> str | None:
        """The txid of the wallet transaction carrying the batch's comment, if any.

        Searches the wallet's latest entries, widening the search until it reaches
        entries older than the batch (less ``CLOCK_SLACK``) or the whole history; None
        then means the wallet never saw the batch.
        """
        count = self.search_depth
        while True:
            entries = await self.wallet.list_transactions(count)
            candidates = sorted(
                {
                    entry["txid"]
                    for entry in entries
                    if entry.get("comment") == batch.comment and isinstance(entry.get("txid"), str)
                }
            )
            if candidates:
                return await self._matching_transaction(batch, candidates)
            if len(entries) < count:
                return None
            times = [e["time"] for e in entries if isinstance(e.get("time"), int | float)]
            if times and min(times) < batch.created_at - CLOCK_SLACK:
                return None
            if count >= MAX_SEARCH:
                raise LookupError(
                    f"searched the latest {count} wallet entries without reaching the time "
                    f"payout batch {batch.id} was made; look for {batch.comment!r} in the "
                    "wallet by hand"
                )
            count = min(count * 4, MAX_SEARCH)

    async def _matching_transaction(self, batch: PayoutBatch, txids: list[str]) -> str:
        """The one of ``txids`` (all carrying the batch's comment) that pays its items.

        A comment alone could come from another ledger that used this wallet (a database
        rebuilt from scratch numbers its batches from 1 again), so the outputs must match
        the batch exactly; otherwise the batch is neither marked sent nor paid again.
        """
        seen: dict[str, dict[str, int]] = {}
        for txid in txids:
            tx = await self.wallet.get_transaction(txid)
            paid = sent_outputs(tx.get("details", ()))
            if paid == dict(batch.items):
                return txid
            seen[txid] = paid
        raise ReconcileError(
            f"the wallet has {batch.comment!r} on {', '.join(txids)}, but paying {seen} "
            f"instead of the batch's {dict(batch.items)}; was the ledger database replaced "
            "while the wallet was kept? Check by hand before paying this batch"
        )

    async def _send(self, batch: PayoutBatch, report: TickReport) -> bool:
        """Send a committed batch once; True when the wallet accepted it."""
        try:
            txid = await self.wallet.send_many(dict(batch.items), batch.comment)
        except Exception as e:
            now = self._now()
            if is_definite_failure(e):
                await self.store.run(partial(mark_failed, batch_id=batch.id, error=str(e), now=now))
                self._note_refused_addresses(batch, e)
                self.log.error(
                    "payout batch {batch_id} refused by the wallet ({error}); "
                    "{total} sat restored to {count} balances",
                    batch_id=batch.id,
                    error=e,
                    total=batch.total,
                    count=len(batch.items),
                )
                report.failed.append(batch.id)
            else:
                self.log.warn(
                    "payout batch {batch_id}: wallet outcome unknown ({error}); "
                    "it stays committed and is reconciled on the next tick",
                    batch_id=batch.id,
                    error=repr(e),
                )
                report.unresolved.append(batch.id)
            return False
        self._crash_point("wallet_called")
        now = self._now()
        await self.store.run(partial(mark_sent, batch_id=batch.id, txid=txid, now=now))
        await self._report_sent(batch, txid)
        self.log.info(
            "payout batch {batch_id} sent: {total} sat to {count} addresses in {txid}",
            batch_id=batch.id,
            total=batch.total,
            count=len(batch.items),
            txid=txid,
        )
        self._crash_point("txid_recorded")
        return True

    async def _report_sent(self, batch: PayoutBatch, txid: str) -> None:
        if self.on_sent is None:
            return
        try:
            await self.on_sent(batch, txid)
        except Exception:
            self.log.failure("reporting payout batch {batch_id} failed", batch_id=batch.id)

    def _note_refused_addresses(self, batch: PayoutBatch, error: BaseException) -> None:
        """After an invalid-address refusal, leave the named address out of new batches."""
        if _error_code(error) != -5:
            return
        named = {address for address in batch.items if address in str(error)}
        for address in sorted(named - self.refused_addresses):
            self.log.error(
                "the wallet calls payout address {address} invalid; it is left out of "
                "payouts until restart (its balance stays in the ledger)",
                address=address,
            )
        self.refused_addresses |= named

    async def _confirm_sent(self, report: TickReport) -> None:
        sent = await self.store.run(partial(load_batches, state=BATCH_SENT))
        for batch in sent:
            assert batch.txid is not None
            try:
                tx = await self.wallet.get_transaction(batch.txid)
            except Exception as e:
                self.log.warn(
                    "payout batch {batch_id}: cannot look up {txid} in the wallet: {error}",
                    batch_id=batch.id,
                    txid=batch.txid,
                    error=e,
                )
                continue
            confirmations = tx.get("confirmations", 0)
            if not isinstance(confirmations, int):
                continue
            if confirmations < 0:
                self.log.error(
                    "payout batch {batch_id}: transaction {txid} conflicts with the chain "
                    "({confirmations} confirmations); check the wallet",
                    batch_id=batch.id,
                    txid=batch.txid,
                    confirmations=confirmations,
                )
            elif confirmations >= self.confirmations:
                now = self._now()
                await self.store.run(partial(mark_confirmed, batch_id=batch.id, now=now))
                self.log.info(
                    "payout batch {batch_id} confirmed: {txid}",
                    batch_id=batch.id,
                    txid=batch.txid,
                )
                report.confirmed.append(batch.id)

    def _crash_point(self, step: str) -> None:
        if self.crash_hook is not None:
            self.crash_hook(step)
