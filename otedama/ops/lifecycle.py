"""The node's root service: ordered start, READY to systemd, live reload, ordered stop.

`twisted.application.service.MultiService` starts children in order but neither waits
for a child that becomes ready later (a listener binding, a database check) nor orders
their stops. `NodeService` does both: a child may offer ``whenReady() -> Deferred``;
the next child starts only after it fired, and ``READY=1`` goes out once all have.
Stopping runs in reverse order, one child at a time, each bounded in time, so Stratum
closes before the ledger flushes and the database goes last.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized

from otedama.config import Config, ConfigError, load_config
from otedama.ops.logging import LogControl
from otedama.ops.sdnotify import SystemdNotifier

#: Each child gets this long to stop; the whole stop stays under systemd's 10 s budget.
STOP_TIMEOUT = 8.0

#: Exit status when a part of the node cannot start (bad credentials, port in use, …).
EXIT_START_FAILED = 1

#: Signals that stop the node; only the first one is passed on to the reactor.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

ReloadHook = Callable[[Config, Config], None]

#: Says what an expected start failure means for the operator (cause and what to do).
Explain = Callable[[BaseException], str]


def explain_listen_error(error: BaseException) -> str:
    """A port the node cannot bind: the cause and what to do, in one line."""
    assert isinstance(error, CannotListenError)
    cause = str(error).rstrip(".")
    code = getattr(error.socketError, "errno", None)
    if code == errno.EADDRINUSE:
        return (
            f"{cause}; another process (often a second node, or an old one still stopping) "
            f"holds that port: find it with `ss -ltnp 'sport = :{error.port}'`, stop it or "
            "choose another port"
        )
    if code == errno.EACCES:
        return f"{cause}; ports below 1024 need privileges: choose a port above 1023"
    return f"{cause}; check the listen address in the config: it must be one of this host's"


def host_port(address: Any) -> str:
    """``127.0.0.1:3333`` (``[::1]:3333``) for a TCP address, the path of a Unix socket;
    other kinds as they print."""
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None or port is None:
        name = getattr(address, "name", None)
        if isinstance(name, bytes):
            return os.fsdecode(name)
        return name if isinstance(name, str) else str(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ListenerService(Service):
    """Listens on a server endpoint; ``whenReady`` fires once the port is bound."""

    log = Logger()

    def __init__(self, name: str, endpoint: Any, factory: Any) -> None:
        self.setName(name)
        self.endpoint = endpoint
        self.factory = factory
        self.port: Any = None
        self._ready: Deferred[Any] | None = None

    def startService(self) -> None:
        super().startService()
        self._ready = self.endpoint.listen(self.factory)

        def listening(port: Any) -> Any:
            self.port = port
            self.log.info(
                "{name} listening on {address}", name=self.name, address=host_port(port.getHost())
            )
            return port

        self._ready.addCallback(listening)

    def whenReady(self) -> Deferred[Any]:
        """The listen result (the port, or the failure to bind); for the parent only."""
        assert self._ready is not None, "whenReady before startService"
        return self._ready

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.port is None:
            return None
        stopped: Deferred[None] = maybeDeferred(self.port.stopListening)
        return stopped


class NodeService(MultiService):
    """The root of the node's service tree."""

    log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Any,
        log_control: LogControl,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.log_control = log_control
        self.notifier = notifier or SystemdNotifier()
        self.reload_hooks: list[ReloadHook] = []
        #: Config keys a reload applies live (the rest are logged as restart-only).
        self.live_keys: set[str] = set(LOG_LEVEL_KEYS)
        self.ready: Deferred[None] = Deferred()
        self._starting: Deferred[None] | None = None
        self._started: list[Any] = []
        self._previous_sighup: Any = None
        self._previous_stop_handlers: dict[int, Any] = {}
        self._stop_signalled = False
        #: Start failures an operator causes and can fix (bad credentials, a busy port,
        #: a missing database): logged as one line with the cause, without a traceback.
        self.expected_errors: dict[type[BaseException], Explain] = {
            CannotListenError: explain_listen_error
        }

    # twistd asks the Application for an ILogObserver before it starts logging: give it
    # ours so the node's level, format and file apply from the first line.
    def setServiceParent(self, parent: Any) -> None:
        if isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.log_control.observer)
        super().setServiceParent(parent)

    def startService(self) -> None:
        Service.startService(self)
        for warning in self.config.unused_warnings():
            self.log.warn("{warning}", warning=warning)
        self._install_sighup()
        # After the reactor installed its own SIGTERM/SIGINT handlers (during startup).
        self.reactor.callWhenRunning(self._guard_stop_signals)
        self._starting = Deferred.fromCoroutine(self._start_children())
        self._starting.addErrback(self._start_failed)

    async def _start_children(self) -> None:
        for child in list(self):
            child.startService()
            self._started.append(child)
            when_ready = getattr(child, "whenReady", None)
            if when_ready is not None:
                await when_ready()
        self.log.info(
            "Otedama node ready ({network}, {backend})",
            network=self.config.chain.network,
            backend=self.config.chain.backend,
        )
        self.notifier.ready("serving")
        self.ready.callback(None)

    def expect_start_errors(self, *kinds: type[BaseException], explain: Explain = str) -> None:
        """Start failures of these kinds are the operator's to fix, and their message
        (or ``explain(error)``) says the cause and what to do: log them as one line."""
        for kind in kinds:
            self.expected_errors[kind] = explain

    def explain(self, error: BaseException) -> str | None:
        """The one-line cause of an expected start failure; None for an unexpected one."""
        for kind, explain in self.expected_errors.items():
            if isinstance(error, kind):
                return explain(error)
        return None

    def _start_failed(self, failure: Any) -> None:
        cause = self.explain(failure.value)
        if cause is None:
            self.log.failure("the node could not start; stopping", failure)
        else:
            self.log.critical("the node could not start: {cause}", cause=cause)
        if not self.ready.called:
            self.ready.errback(failure)
            self.ready.addErrback(lambda _: None)
        # The failure may come while the reactor is still starting up.
        self.reactor.callWhenRunning(self._stop_after_failure)

    def _stop_after_failure(self) -> None:
        # twistd would exit 0; systemd's Restart=on-failure needs a failure status.
        self.reactor.addSystemEventTrigger("after", "shutdown", self._exit_failed)
        self._stop_signalled = True  # a SIGTERM from now on must not stop it again
        self.reactor.stop()

    def _exit_failed(self) -> None:
        self.log_control.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_START_FAILED)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        self.notifier.stopping()
        self._remove_sighup()
        return Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self) -> None:
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        for child in reversed(self._started):
            if not child.running:
                continue
            stop: Any = child.stopService
            stopping: Deferred[Any] = maybeDeferred(stop)
            stopping.addTimeout(STOP_TIMEOUT, self.reactor)
            try:
                await stopping
            except Exception:
                self.log.failure("{name} did not stop cleanly", name=child.name)
        self._started.clear()
        self.log.info("Otedama node stopped")

    # -- reload ------------------------------------------------------------------------

    def _install_sighup(self) -> None:
        # A plain handler that hands over to the reactor thread: the asyncio loop's own
        # add_signal_handler loses its wakeup fd to Twisted's child-process waker.
        self._previous_sighup = signal.signal(
            signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.reload)
        )

    def _remove_sighup(self) -> None:
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None

    def _guard_stop_signals(self) -> None:
        """Pass only the first SIGTERM/SIGINT on to the reactor's handler.

        GNU ``timeout`` signals the node and then its whole process group (which holds the
        built-in miner's workers), and systemd or a terminal may signal twice as well; the
        reactor's handler would call ``reactor.stop()`` a second time, which raises
        ``ReactorNotRunning`` and is logged at critical. A repeat is noted at info.
        """
        for number in STOP_SIGNALS:
            previous = signal.getsignal(number)
            if not callable(previous):
                continue
            self._previous_stop_handlers[number] = previous
            signal.signal(number, self._stop_signal_handler(previous))
        self.reactor.addSystemEventTrigger("after", "shutdown", self._unguard_stop_signals)

    def _unguard_stop_signals(self) -> None:
        if self._stop_signalled:
            # A signal is ending the process: keep the guard until it exits, or a repeat
            # arriving after the reactor stopped (GNU timeout's group signal, seen in CI)
            # reaches the reactor's handler again, which logs a second shutdown.
            return
        for number, previous in self._previous_stop_handlers.items():
            signal.signal(number, previous)
        self._previous_stop_handlers.clear()

    def _stop_signal_handler(
        self, previous: Callable[[int, Any], Any]
    ) -> Callable[[int, Any], None]:
        def handler(number: int, frame: Any) -> None:
            if self._stop_signalled:
                # Logged from the handler itself, as the reactor's own handler does.
                self.log.info(
                    "received {signal} again while stopping; nothing more to do",
                    signal=signal.Signals(number).name,
                )
                return
            self._stop_signalled = True
            previous(number, frame)

        return handler

    def add_reload_hook(self, hook: ReloadHook, keys: Iterable[str]) -> None:
        """Call ``hook(old, new)`` on each reload; it applies the config ``keys`` live."""
        self.reload_hooks.append(hook)
        self.live_keys.update(keys)

    def reload(self) -> bool:
        """Re-read the config file and apply what can change live; refuse a bad one."""
        source = self.config.source
        if source is None:
            self.log.warn("reload requested but the node was not started from a config file")
            return False
        self.notifier.reloading()
        try:
            new = load_config(source)
        except ConfigError as error:
            self.log.error(
                "reload refused: {path} is invalid, keeping the running config:\n{problems}",
                path=str(source),
                problems="\n".join(error.problems),
            )
            self.notifier.ready("reload refused: invalid config")
            return False
        old, self.config = self.config, new
        if new.log_level != old.log_level:
            self.log_control.set_level(new.log_level)
        for hook in self.reload_hooks:
            try:
                hook(old, new)
            except Exception:
                self.log.failure("a reload hook failed")
        for key in changed_keys(old, new):
            if key not in self.live_keys:
                self.log.warn("{key} changed; it takes effect after a restart", key=key)
        self.log.info("configuration reloaded from {path}", path=str(source))
        self.notifier.ready("serving")
        return True


#: Applied by the reload itself (the log level).
LOG_LEVEL_KEYS = ("app.log_level", "monitoring.logging.level")


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted config keys whose values differ between ``old`` and ``new``.

    Keys this version does not use (and the ``unused``/``source`` bookkeeping) are left
    out: changing them changes nothing.
    """
    changed = []
    for f in dataclasses.fields(old):
        key = f"{prefix}{f.name}"
        if not f.metadata.get("used", True):
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if f.metadata.get("section"):
            changed.extend(changed_keys(a, b, f"{key}."))
            continue
        spec = f.metadata.get("spec")
        if spec is not None and spec.used and a != b:
            changed.append(key)
    return changed
