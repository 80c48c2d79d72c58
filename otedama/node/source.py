"""The template source: keeps the pool supplied with fresh block templates.

Two loops run side by side. The long-poll loop asks ``getblocktemplate`` with the last
``longpollid``; the daemon answers as soon as the tip (or, after a while, the mempool)
changes. The poll loop asks plainly every ``poll_interval`` as a fallback for daemons or
proxies that do not hold long polls, and so that a refreshed template (new transactions,
new time) goes out at least every ``refresh_interval``. Subscribers get a template when
the previous block changes and on each refresh; what a refresh means for miners' jobs is
Stratum's decision. Failures back off and are logged once per streak, never stopping the
loops; while they last, :meth:`TemplateSource.trouble` says why (for ``/health``). When
the daemon answers again (either loop, or any other call: :meth:`TemplateSource.wake`)
every loop in a back-off asks at once, and after an accepted block :meth:`refresh_soon`
fetches the next template at once, whatever the loops are doing.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from otedama.chain.template import BlockTemplate
from otedama.node.rpc import RpcTimeout, backoff_delay

__all__ = ["TemplateCallback", "TemplateProvider", "TemplateSource"]

TemplateCallback = Callable[[BlockTemplate], object]


class TemplateProvider(Protocol):
    """What the source needs from a client: ``BitcoindClient`` (bitcoind or devnet)."""

    async def get_block_template(
        self, longpollid: str | None = None, *, timeout: float | None = None
    ) -> BlockTemplate:
        """A template; with ``longpollid``, held by the daemon until something changes."""
        ...


@dataclass
class _Attempts:
    """Failed attempts in a row of one loop (for its back-off)."""

    count: int = 0


class TemplateSource(Service):
    """A service that long-polls (and polls) for templates and hands them to subscribers."""

    log = Logger()

    def __init__(
        self,
        client: TemplateProvider,
        *,
        clock: IReactorTime,
        poll_interval: float = 5.0,
        refresh_interval: float = 30.0,
        longpoll: bool = True,
        longpoll_timeout: float = 600.0,
        retry_initial: float = 1.0,
        retry_max: float = 30.0,
    ) -> None:
        for name, value in (
            ("poll_interval", poll_interval),
            ("refresh_interval", refresh_interval),
            ("longpoll_timeout", longpoll_timeout),
            ("retry_initial", retry_initial),
            ("retry_max", retry_max),
        ):
            if not value > 0:
                raise ValueError(f"TemplateSource {name} must be positive, got {value!r}")
        self._client = client
        self._clock: Any = clock  # zope interfaces do not type-check without mypy-zope
        self._poll_interval = poll_interval
        self._refresh_interval = refresh_interval
        self._longpoll = longpoll
        self._longpoll_timeout = longpoll_timeout
        self._retry = (retry_initial, retry_max)
        self._subscribers: list[TemplateCallback] = []
        self._current: BlockTemplate | None = None
        self._longpollid: str | None = None
        self._last_delivery: float | None = None
        self._tip_epoch = 0
        self._failures = 0
        self._failing_since: float | None = None
        self._last_error = ""
        self._backoffs: dict[Deferred[None], Any] = {}
        self._tasks: set[Deferred[Any]] = set()

    @property
    def current(self) -> BlockTemplate | None:
        """The last template delivered (None before the first)."""
        return self._current

    def subscribe(self, callback: TemplateCallback) -> Callable[[], None]:
        """Call ``callback(template)`` with every new template (at once with the current
        one, if there is one). Returns a function that unsubscribes."""
        self._subscribers.append(callback)
        if self._current is not None:
            self._call(callback, self._current)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def startService(self) -> None:
        """Start the poll loop and, unless disabled, the long-poll loop."""
        super().startService()
        if self._longpoll:
            self._spawn(self._longpoll_loop(), background=True)
        first_delay = self._poll_interval if self._longpoll else 0.0
        self._spawn(self._poll_loop(first_delay), background=True)

    def stopService(self) -> Deferred[None]:
        """Stop both loops and cancel the requests in flight."""
        super().stopService()
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        done: Deferred[Any] = DeferredList(pending, consumeErrors=True)
        return done.addCallback(lambda _: None)

    async def refresh(self, force: bool = True) -> BlockTemplate:
        """Fetch a template now and deliver it whatever changed (without ``force``: only
        if the tip changed or a refresh is due, as the loops do)."""
        epoch = self._tip_epoch
        template: BlockTemplate = await self._spawn(self._get_template())
        self._offer(template, epoch, force=force)
        return template

    def refresh_soon(self) -> None:
        """After a block the daemon took: fetch the next template and send it to miners at
        once, whatever state the loops are in (a long poll may be held or backing off). A
        failure is logged like the loops' and wakes them to retry at once."""
        if not self.running:
            return
        self.wake()
        self._spawn(self._refresh_or_wake(), background=True)

    async def _refresh_or_wake(self) -> None:
        try:
            # Not forced: if a woken loop delivered the new tip first, miners get it once.
            await self.refresh(force=False)
        except CancelledError:
            raise
        except Exception as e:
            if not self.running:
                raise CancelledError() from None
            self._failed(e)
            self.wake()
        else:
            self._recovered()

    def wake(self) -> None:
        """The daemon answers again: end every back-off wait now, so the loops ask at once
        instead of waiting out their back-off."""
        for waiting, delayed in list(self._backoffs.items()):
            del self._backoffs[waiting]
            if delayed.active():
                delayed.cancel()
            waiting.callback(None)

    def trouble(self) -> str | None:
        """Why templates are not coming, while they are not (None when they are)."""
        if self._failing_since is None:
            return None
        since = self._clock.seconds() - self._failing_since
        return (
            f"getting a block template has failed for {since:.0f} s "
            f"({self._failures} attempts): {self._last_error}"
        )

    # -- loops ---------------------------------------------------------------------------

    async def _get_template(self) -> BlockTemplate:
        return await self._client.get_block_template()

    async def _poll_loop(self, first_delay: float) -> None:
        if first_delay:
            await self._sleep(first_delay)
        attempts = _Attempts()
        while self.running:
            epoch = self._tip_epoch
            template = await self._fetch(None, attempts)
            if template is not None:
                self._offer(template, epoch)
                await self._sleep(self._next_poll_delay())

    async def _longpoll_loop(self) -> None:
        attempts = _Attempts()
        while self.running:
            longpollid = self._longpollid
            epoch = self._tip_epoch
            template = await self._fetch(longpollid, attempts)
            if template is None:
                continue
            self._offer(template, epoch)
            if template.longpollid is None:
                self.log.info(
                    "the daemon offers no long polling; polling every {s:g} s",
                    s=self._poll_interval,
                )
                return
            if template.longpollid == longpollid:
                # Answered at once without a change: do not spin.
                await self._sleep(self._poll_interval)

    async def _fetch(self, longpollid: str | None, attempts: _Attempts) -> BlockTemplate | None:
        """One request (a long poll when ``longpollid`` is given). A failure is logged
        (once per streak) and backed off, and gives None; so does a long poll that was
        held for the whole timeout, without counting as a failure."""
        try:
            if longpollid is None:
                template = await self._client.get_block_template()
            else:
                template = await self._client.get_block_template(
                    longpollid, timeout=self._longpoll_timeout
                )
        except CancelledError:
            raise
        except Exception as e:
            if not self.running:
                # Stopped while the request was out: whatever it failed with is the stop.
                raise CancelledError() from None
            if isinstance(e, RpcTimeout) and longpollid is not None:
                return None
            attempts.count += 1
            self._failed(e)
            await self._back_off(backoff_delay(attempts.count, *self._retry))
            return None
        attempts.count = 0
        self._recovered()
        return template

    async def _sleep(self, seconds: float) -> None:
        """Wait on the clock; a stopped source ends its loop here instead (a subscriber
        may stop the service from inside a delivery, before the loop reaches a wait)."""
        if not self.running:
            raise CancelledError()
        await deferLater(self._clock, seconds)

    async def _back_off(self, seconds: float) -> None:
        """Like :meth:`_sleep`, but :meth:`wake` ends it early."""
        if not self.running:
            raise CancelledError()

        def cancel(waiting: Deferred[None]) -> None:
            delayed = self._backoffs.pop(waiting, None)
            if delayed is not None and delayed.active():
                delayed.cancel()

        waiting: Deferred[None] = Deferred(cancel)

        def expire() -> None:
            if self._backoffs.pop(waiting, None) is not None:
                waiting.callback(None)

        self._backoffs[waiting] = self._clock.callLater(seconds, expire)
        await waiting

    def _next_poll_delay(self) -> float:
        if self._last_delivery is None:
            return self._poll_interval
        now: float = self._clock.seconds()
        due = self._last_delivery + self._refresh_interval - now
        return max(0.0, min(self._poll_interval, due))

    # -- delivery ------------------------------------------------------------------------

    def _offer(self, template: BlockTemplate, epoch: int, force: bool = False) -> None:
        """Deliver ``template`` if the tip changed or a refresh is due (or ``force``).

        ``epoch`` is the tip epoch when the request went out: a reply for another tip that
        was asked before the latest tip change and is not higher is a late answer from the
        old view, and is dropped rather than flipping miners back.
        """
        if not self.running:
            return
        current = self._current
        tip_changed = current is None or template.prev_hash != current.prev_hash
        if (
            current is not None
            and tip_changed
            and epoch < self._tip_epoch
            and template.height <= current.height
        ):
            return
        if template.longpollid is not None:
            self._longpollid = template.longpollid
        now = self._clock.seconds()
        refresh_due = (
            self._last_delivery is None or now - self._last_delivery >= self._refresh_interval
        )
        if not (tip_changed or refresh_due or force):
            return
        if tip_changed:
            self._tip_epoch += 1
            # Debug: the job manager logs the new template (with its transactions) once.
            self.log.debug(
                "new block template at height {height} on {prev}",
                height=template.height,
                prev=template.prev_hash_hex,
            )
        self._current = template
        self._last_delivery = now
        for callback in list(self._subscribers):
            self._call(callback, template)

    def _call(self, callback: TemplateCallback, template: BlockTemplate) -> None:
        try:
            callback(template)
        except Exception:
            self.log.failure("template subscriber {callback!r} failed", callback=callback)

    # -- failures and tasks --------------------------------------------------------------

    def _failed(self, error: Exception) -> None:
        self._last_error = str(error) or repr(error)
        if self._failing_since is None:
            self._failing_since = self._clock.seconds()
        if self._failures == 0:
            self.log.warn(
                "getting a block template failed: {error}; retrying with back-off "
                "(logged once until it works again)",
                error=str(error) or repr(error),
            )
        self._failures += 1

    def _recovered(self) -> None:
        self._failing_since = None
        if self._failures:
            self.log.info(
                "block templates are coming again after {count} failed attempts",
                count=self._failures,
            )
            self._failures = 0
            self.wake()  # the other loop asks at once instead of waiting out its back-off

    def _spawn(self, coro: Coroutine[Any, Any, Any], background: bool = False) -> Deferred[Any]:
        """Run ``coro``, tracked so that ``stopService`` can cancel it. A background loop's
        unexpected end is logged; a cancelled one is silent."""
        task: Deferred[Any] = Deferred.fromCoroutine(coro)
        self._tasks.add(task)

        def finished(result: object) -> object:
            self._tasks.discard(task)
            return result

        task.addBoth(finished)
        if background:
            task.addErrback(self._background_ended)
        return task

    def _background_ended(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            self.log.failure("template source loop crashed", failure)
