"""A small, reusable fuzz harness: a target is a callable on bytes plus the exceptions it
may raise; anything else it raises (or logs as a failure) is a crash, and running longer
than a deadline is a hang.

Used three ways:

- :func:`replay_corpus` runs every input kept in a corpus directory (the suite does this);
- hypothesis tests call :func:`check` on generated inputs (short runs in the suite);
- ``run_atheris.py`` feeds a target to atheris for long runs by hand.

Adding a target (the federation wire codec, the API handlers…) takes a function
``bytes -> object`` and the exceptions that mean "rejected cleanly"; nothing here knows
Otedama.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.logger import globalLogPublisher

#: Seconds one input may take before it counts as a hang (a bound, not a speed check:
#: every target handles one input in well under a millisecond).
DEFAULT_DEADLINE = 10.0


@dataclass(frozen=True)
class Target:
    """What to fuzz: ``run(data)`` may raise only ``rejects`` (a clean refusal)."""

    name: str
    run: Callable[[bytes], object]
    rejects: tuple[type[BaseException], ...] = ()
    deadline: float = DEFAULT_DEADLINE


class FuzzFailure(AssertionError):
    """A crash or a hang, with the input that caused it (saved beside the corpus)."""

    def __init__(self, target: str, data: bytes, what: str) -> None:
        super().__init__(f"{target}: {what} on input {data[:200]!r} ({len(data)} bytes)")
        self.target = target
        self.data = data


class Hang(BaseException):
    """Raised in the target by the deadline alarm (a BaseException: not a clean reject)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block with :class:`Hang` after ``seconds`` (main thread, SIGALRM)."""

    def expired(_signum: int, _frame: Any) -> None:
        raise Hang()

    # Another alarm (pytest-timeout's) is put back afterwards with what was left of it.
    outer, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer > 0:
            left = max(outer - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


@contextlib.contextmanager
def logged_failures() -> Iterator[list[dict[str, Any]]]:
    """Collect the log events that carry a failure (a handler that crashed and logged it)."""
    failures: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield failures
    finally:
        globalLogPublisher.removeObserver(observe)


def check(target: Target, data: bytes) -> None:
    """Run ``target`` on ``data``; raise :class:`FuzzFailure` on a crash or a hang."""
    with logged_failures() as failures:
        try:
            with deadline(target.deadline):
                target.run(data)
        except Hang:
            raise FuzzFailure(
                target.name, data, f"no answer within {target.deadline:g} s"
            ) from None
        except target.rejects:
            pass
        except Exception as error:
            raise FuzzFailure(target.name, data, f"{type(error).__name__}: {error}") from error
    if failures:
        failure = failures[0]["log_failure"]
        raise FuzzFailure(
            target.name, data, f"logged failure {failure.type.__name__}: {failure.value}"
        )


def corpus_inputs(corpus: Path) -> list[Path]:
    """The corpus files, in a stable order."""
    return sorted(path for path in corpus.iterdir() if path.is_file()) if corpus.is_dir() else []


def replay_corpus(target: Target, corpus: Path) -> int:
    """Run every input in ``corpus`` through ``target``; the number of inputs run."""
    inputs = corpus_inputs(corpus)
    for path in inputs:
        check(target, path.read_bytes())
    return len(inputs)


def keep(corpus: Path, data: bytes) -> Path:
    """Add ``data`` to ``corpus`` under its content hash (the way atheris names inputs)."""
    corpus.mkdir(parents=True, exist_ok=True)
    path = corpus / hashlib.sha1(data).hexdigest()
    path.write_bytes(data)
    return path
