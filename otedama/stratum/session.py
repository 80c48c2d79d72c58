"""One miner connection's Stratum V1 state machine (sans-IO).

The session gets bytes through ``data_received`` and answers through the ``write`` and
``close`` callables it was given; everything shared (jobs, validator, vardiff policy,
extranonce allocation, the sink) lives in the ``StratumServer``. States: connected →
subscribed (has an extranonce1) → authorized (has at least one worker) → receiving jobs.
``mining.configure`` and ``mining.suggest_difficulty`` are accepted in any state.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from otedama.chain.address import AddressError, address_to_script
from otedama.chain.target import difficulty_to_target
from otedama.stratum import errors
from otedama.stratum.codec import (
    CodecError,
    JsonId,
    LineFramer,
    LineTooLong,
    Request,
    encode_error,
    encode_id,
    encode_notification,
    encode_response,
    encode_result_false,
    encode_result_true,
    parse_message,
)
from otedama.stratum.errors import ERR_OTHER, ERR_UNAUTHORIZED, InvalidParams, Reject, StratumError
from otedama.stratum.jobs import Job
from otedama.stratum.numbers import NumberError, bounded_decimal, bounded_number
from otedama.stratum.share import Share
from otedama.stratum.vardiff import VardiffWindow, clamp_difficulty

if TYPE_CHECKING:
    from otedama.stratum.server import StratumServer

__all__ = [
    "StratumSession",
    "canonical_difficulty",
    "json_difficulty",
    "parse_password_difficulty",
    "subscribe_reply",
]

_WORKER_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_PASSWORD_SPLIT = re.compile(r"[,;\s]+")
_MAX_DIFF_HISTORY = 8
MAX_WORKERS_PER_CONNECTION = 64
MAX_USER_CHARS = 160
MAX_MINER_NUMBER = Fraction(10**60)
"""Numbers from miners are capped here before any arithmetic (then clamped to settings)."""


def json_difficulty(value: Fraction) -> int | float:
    """How a difficulty is written in ``mining.set_difficulty``."""
    if value.denominator == 1:
        return value.numerator
    return float(value)


def subscribe_reply(msg_id: JsonId, sub_id: str, extranonce2_size: int) -> bytes:
    """The ``mining.subscribe`` reply, built without ``json.dumps`` (a reconnect storm
    sends thousands at once); ``sub_id`` is hex, so it needs no escaping."""
    return (
        b'{"id":'
        + encode_id(msg_id)
        + b',"result":[[["mining.set_difficulty","%s"],["mining.notify","%s"]],"%s",%d],'
        b'"error":null}\n' % (sub_id.encode(), sub_id.encode(), sub_id.encode(), extranonce2_size)
    )


def canonical_difficulty(value: Fraction) -> Fraction:
    """The difficulty a miner reads back from the JSON number we send."""
    if value.denominator == 1:
        return value
    return Fraction(repr(float(value)))


def _number(value: Any, what: str) -> Fraction:
    """A positive JSON number sent by a miner, capped far above any difficulty."""
    result = bounded_number(value, MAX_MINER_NUMBER)
    if result is None:
        raise StratumError(ERR_OTHER, f"{what} must be a positive number, got {_short(value)}")
    return result


def _short(value: Any) -> str:
    """``repr(value)`` cut short, for error messages that echo what a miner sent."""
    text = repr(value)
    return text if len(text) <= 64 else text[:60] + "..."


def parse_password_difficulty(password: str) -> Fraction | None:
    """The ``d=NUMBER`` start difficulty in a password like ``x,d=0.5``, or None.

    Raises ``StratumError`` naming the token when it is not a short positive decimal.
    """
    for token in _PASSWORD_SPLIT.split(password):
        if token[:2].lower() != "d=":
            continue
        try:
            value = bounded_decimal(token[2:])
        except NumberError as exc:
            raise StratumError(
                ERR_OTHER, f"password difficulty {_short(token)} is not usable: {exc} (use d=0.5)"
            ) from None
        if value <= 0:
            raise StratumError(ERR_OTHER, f"password difficulty {_short(token)} must be positive")
        return value
    return None


def _user_name(user: str) -> str:
    """``address[.worker]`` as sent, without surrounding spaces; refuses names that could
    be logged raw or counted as another worker (control characters, line separators)."""
    if len(user) > MAX_USER_CHARS:
        raise StratumError(
            ERR_UNAUTHORIZED,
            f"user name of {len(user)} characters is too long (at most {MAX_USER_CHARS}); "
            "use your payout address[.worker]",
        )
    if not user.isprintable():
        index, char = next((i, c) for i, c in enumerate(user) if not c.isprintable())
        raise StratumError(
            ERR_UNAUTHORIZED,
            f"user name has a control or separator character U+{ord(char):04X} at "
            f"position {index}; send only your payout address[.worker]",
        )
    return user.strip(" ")


class StratumSession:
    """The state of one connection; one method per Stratum request."""

    log = Logger()

    __slots__ = (
        "_diff_history",
        "_last_job",
        "accepted",
        "address",
        "bad_lines",
        "close_callback",
        "closed",
        "connected_at",
        "difficulty",
        "difficulty_floor",
        "extranonce1",
        "extranonce_subscribed",
        "framer",
        "host",
        "last_activity",
        "last_job_seq",
        "server",
        "share_time",
        "share_tokens",
        "start_difficulty",
        "subscribed",
        "suggested_at",
        "target",
        "user_agent",
        "vardiff_window",
        "version_mask",
        "version_rolling",
        "workers",
        "write",
    )

    def __init__(
        self,
        server: StratumServer,
        host: str,
        write: Callable[[bytes], object],
        close: Callable[[], object],
        now: float,
    ) -> None:
        settings = server.settings
        self.server = server
        self.host = host
        self.write = write
        self.close_callback = close
        self.closed = False
        self.framer = LineFramer(settings.max_line_bytes)
        self.connected_at = now
        self.last_activity = now
        self.bad_lines = 0
        self.accepted = 0
        self.subscribed = False
        self.extranonce1 = b""
        self.extranonce_subscribed = False
        self.user_agent = ""
        self.workers: dict[str, str] = {}
        self.address: str | None = None
        self.version_rolling = False
        self.version_mask = 0
        self.difficulty, self.target = server.start_difficulty
        self.difficulty_floor = settings.min_difficulty
        self.start_difficulty: Fraction | None = None
        self.vardiff_window = VardiffWindow(now)
        self.share_tokens = float(settings.share_burst)
        self.share_time = now
        self.suggested_at: float | None = None
        self.last_job_seq = -1
        self._last_job: Job | None = None
        self._diff_history: list[tuple[int, Fraction, int]] | None = None

    # -- I/O ---------------------------------------------------------------------------

    @property
    def authorized(self) -> bool:
        """At least one worker authorized on this connection."""
        return bool(self.workers)

    @property
    def extranonce1_hex(self) -> str:
        """The extranonce1 as sent to the miner (also its subscription id)."""
        return self.extranonce1.hex()

    def data_received(self, data: bytes) -> None:
        """Feed bytes from the connection; handles every complete line."""
        if self.closed:
            return
        now = self.server.clock.seconds()
        lines = self.framer.feed(data)
        if lines:
            # Only complete lines count as activity: a byte trickle keeps nothing alive.
            self.last_activity = now
        for line in lines:
            if self.closed:
                return
            if isinstance(line, LineTooLong):
                self._abuse(
                    None, f"line of {line.length} bytes exceeds {self.framer.max_line} bytes"
                )
                continue
            self.line_received(line, now)

    def line_received(self, line: bytes, now: float) -> None:
        """Handle one JSON line."""
        try:
            message = parse_message(line)
        except CodecError as exc:
            self._abuse(exc.msg_id, str(exc))
            return
        if not isinstance(message, Request):
            # Notifications and replies from a miner need no answer.
            return
        handler = _HANDLERS.get(message.method)
        if handler is None:
            self._abuse(message.id, "Unknown method")
            return
        try:
            handler(self, message, now)
        except InvalidParams as exc:
            self._abuse(message.id, exc.message)
        except StratumError as exc:
            self.write(encode_error(message.id, exc.code, exc.message))
        except Exception:
            self.log.failure(
                "error handling {method} from {host}", method=message.method, host=self.host
            )
            self.write(encode_error(message.id, ERR_OTHER, "Internal error"))

    def _abuse(self, msg_id: Any, reason: str) -> None:
        self.bad_lines += 1
        self.server.stats.bad_lines += 1
        self.server.note_work(self.host, False)
        self.write(encode_error(msg_id, ERR_OTHER, reason))
        if self.bad_lines >= self.server.settings.abuse_threshold:
            self.close(f"{self.bad_lines} bad lines, last: {reason}")

    def close(self, reason: str) -> None:
        """Drop the connection (once)."""
        if self.closed:
            return
        self.closed = True
        self.log.info(
            "closing stratum connection from {host}: {reason}", host=self.host, reason=reason
        )
        self.close_callback()

    def connection_lost(self) -> None:
        """The transport is gone; free the extranonce1 and the connection slot."""
        self.closed = True
        self.server.session_closed(self)

    # -- timers ------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Periodic check from the server's sweep: timeouts and vardiff for quiet miners."""
        if self.closed:
            return
        settings = self.server.settings
        reason = None
        if not self.subscribed and now - self.connected_at >= settings.subscribe_timeout:
            reason = f"no mining.subscribe within {settings.subscribe_timeout:g} s"
        elif not self.workers and now - self.connected_at >= settings.authorize_timeout:
            reason = f"no worker authorized within {settings.authorize_timeout:g} s"
        elif now - self.last_activity >= settings.idle_timeout:
            reason = f"no complete line for {settings.idle_timeout:g} s"
        if reason is not None:
            self.server.stats.timeouts += 1
            self.close(reason)
            return
        vardiff = self.server.vardiff
        if vardiff is not None and self._last_job is not None:
            new = vardiff.on_idle(
                self.vardiff_window,
                now,
                self.difficulty,
                self.difficulty_floor,
                settings.max_difficulty,
            )
            if new is not None:
                self.set_difficulty(new)

    # -- difficulty --------------------------------------------------------------------

    def set_difficulty(self, value: Fraction) -> None:
        """Change the share difficulty; a miner already working gets it with a new job.

        Jobs sent before the change stay judged at the difficulty they were sent with;
        the current job, re-sent after ``mining.set_difficulty``, at the lower of the two.
        """
        settings = self.server.settings
        value = canonical_difficulty(
            clamp_difficulty(value, self.difficulty_floor, settings.max_difficulty)
        )
        if value == self.difficulty:
            return
        old, old_target = self.difficulty, self.target
        self.difficulty = value
        self.target = difficulty_to_target(value, settings.network.algorithm)
        job = self._last_job
        if job is None:
            return
        seq = job.seq
        history = self._diff_history
        if history is None:
            history = self._diff_history = []
        oldest = self.server.jobs.oldest_valid_seq
        history[:] = [entry for entry in history if entry[0] >= oldest]
        if history and history[-1][0] == seq:
            _, diff, _ = history[-1]
            low = min(diff, value)
            history[-1] = (seq, low, difficulty_to_target(low, settings.network.algorithm))
        else:
            if not history or history[-1][0] < seq - 1:
                history.append((seq - 1, old, old_target))
            if value < old:
                history.append((seq, value, self.target))
            else:
                history.append((seq, old, old_target))
        while len(history) > _MAX_DIFF_HISTORY:
            first, second = history[0], history[1]
            merged = first if first[1] <= second[1] else second
            history[0:2] = [(second[0], merged[1], merged[2])]
        self.write(self.server.difficulty_line(value) + job.notify_update)
        self.last_job_seq = seq

    def difficulty_for(self, job: Job) -> tuple[Fraction, int]:
        """The difficulty (and target) a share for ``job`` is judged at on this connection."""
        history = self._diff_history
        if history:
            seq = job.seq
            for max_seq, diff, target in history:
                if seq <= max_seq:
                    return diff, target
        return self.difficulty, self.target

    # -- jobs --------------------------------------------------------------------------

    def send_job(self, job: Job, clean: bool | None = None) -> None:
        """Send ``job`` unless this connection already has it."""
        if self.closed or job.seq <= self.last_job_seq:
            return
        first = self._last_job is None
        self._last_job = job
        self.last_job_seq = job.seq
        if first:
            self.vardiff_window.reset(self.server.clock.seconds())
            # One write (one send) for the difficulty and the first job.
            self.write(self.server.difficulty_line(self.difficulty) + job.notify_clean)
        else:
            self.write(job.notify_line(clean))

    @property
    def ready(self) -> bool:
        """Subscribed and authorized: the connection takes jobs."""
        return self.subscribed and bool(self.workers)

    def start_work(self) -> None:
        """Send the first difficulty and job once subscribed and authorized."""
        if not (self.subscribed and self.workers) or self._last_job is not None:
            return
        if self.start_difficulty is not None:
            settings = self.server.settings
            value = canonical_difficulty(
                clamp_difficulty(
                    self.start_difficulty, self.difficulty_floor, settings.max_difficulty
                )
            )
            self.difficulty = value
            self.target = difficulty_to_target(value, settings.network.algorithm)
        job = self.server.jobs.job_for(self.address)
        if job is not None:
            self.send_job(job)

    def set_extranonce1(self, extranonce1: bytes) -> None:
        """Switch to a new extranonce1 mid-connection: ``mining.set_extranonce`` and a clean
        job for a miner that subscribed to it; otherwise the miner must reconnect."""
        self.extranonce1 = extranonce1
        if not self.extranonce_subscribed:
            self.close("extranonce1 changed and the miner did not subscribe to changes")
            return
        size = self.server.settings.extranonce2_size
        self.write(encode_notification("mining.set_extranonce", [extranonce1.hex(), size]))
        job = self._last_job
        if job is not None:
            self.write(job.notify_clean)

    # -- methods -----------------------------------------------------------------------

    def on_subscribe(self, request: Request, now: float) -> None:
        """``mining.subscribe [user_agent, session_id]``: extranonce1 and extranonce2 size."""
        params = request.params
        agent = params[0] if params else None
        resume = params[1] if len(params) > 1 else None
        if agent is not None and not isinstance(agent, str):
            raise InvalidParams(f"user agent must be a string, got {_short(agent)}")
        if resume is not None and not isinstance(resume, str):
            raise InvalidParams(f"session id must be a string, got {_short(resume)}")
        self.user_agent = (agent or "")[:128]
        server = self.server
        if not self.subscribed:
            self.extranonce1 = server.allocate_extranonce1(self, resume)
            self.subscribed = True
        self.write(
            subscribe_reply(request.id, self.extranonce1_hex, server.settings.extranonce2_size)
        )
        self.start_work()

    def on_authorize(self, request: Request, now: float) -> None:
        """``mining.authorize [address[.worker], password]``; a refusal is logged with its
        reason (a malformed request counts as abuse instead)."""
        try:
            self._authorize(request)
        except StratumError as exc:
            if not isinstance(exc, InvalidParams):
                self.server.note_authorize_refused(self.host, exc.message)
            raise

    def _authorize(self, request: Request) -> None:
        params = request.params
        if not params or not isinstance(params[0], str):
            raise InvalidParams(f"mining.authorize needs a user name, got {_short(params)}")
        password = params[1] if len(params) > 1 else ""
        if password is None:
            password = ""
        if not isinstance(password, str):
            raise InvalidParams(f"password must be a string, got {_short(password)}")
        user = _user_name(params[0])
        address, dot, worker_name = user.partition(".")
        network = self.server.settings.network
        if dot and not _WORKER_RE.fullmatch(worker_name):
            raise StratumError(
                ERR_UNAUTHORIZED,
                f"worker name {_short(worker_name)} is invalid: use up to 64 letters, digits, '_', '-' or '.'",
            )
        try:
            address_to_script(address, network)
        except AddressError as exc:
            raise StratumError(
                ERR_UNAUTHORIZED,
                f"user name must be a {network.name} payout address[.worker]; "
                f"{_short(address)} is not: {exc}",
            ) from None
        if user not in self.workers and len(self.workers) >= MAX_WORKERS_PER_CONNECTION:
            raise StratumError(
                ERR_UNAUTHORIZED,
                f"at most {MAX_WORKERS_PER_CONNECTION} workers per connection; "
                f"open another connection for {_short(user)}",
            )
        start = parse_password_difficulty(password)
        if start is not None and not self.workers:
            self.start_difficulty = start
        if user not in self.workers:
            self.server.note_authorized()
        self.workers[user] = address
        if self.address is None:
            self.address = address
        self.write(encode_result_true(request.id))
        self.start_work()

    def on_configure(self, request: Request, now: float) -> None:
        """``mining.configure [extensions, parameters]`` (BIP310), any time."""
        params = request.params
        if len(params) < 1 or not isinstance(params[0], list):
            raise InvalidParams(
                f"mining.configure needs a list of extensions, got {_short(params)}"
            )
        extensions = params[0]
        options = params[1] if len(params) > 1 else {}
        if options is None:
            options = {}
        if not isinstance(options, dict) or not all(isinstance(e, str) for e in extensions):
            raise InvalidParams(
                f"mining.configure parameters must be an object, got {_short(params)}"
            )
        result: dict[str, Any] = {}
        for name in extensions:
            if name == "version-rolling":
                result.update(self._configure_version_rolling(options))
            elif name == "minimum-difficulty":
                result.update(self._configure_minimum_difficulty(options))
            elif name == "subscribe-extranonce":
                self.extranonce_subscribed = True
                result["subscribe-extranonce"] = True
            else:
                result[name] = False
        self.write(encode_response(request.id, result))

    def _configure_version_rolling(self, options: dict[str, Any]) -> dict[str, Any]:
        server_mask = self.server.settings.version_mask
        raw = options.get("version-rolling.mask", f"{server_mask:08x}")
        min_bits = options.get("version-rolling.min-bit-count", 0)
        try:
            if not isinstance(raw, str) or len(raw) > 8:
                raise ValueError
            miner_mask = int(raw, 16)
        except ValueError:
            self.version_rolling = False
            self.version_mask = 0
            return {"version-rolling": False}
        if isinstance(min_bits, bool) or not isinstance(min_bits, int):
            min_bits = 0
        mask = server_mask & miner_mask
        if mask.bit_count() < min_bits or mask == 0:
            self.version_rolling = False
            self.version_mask = 0
            return {"version-rolling": False}
        self.version_rolling = True
        self.version_mask = mask
        return {"version-rolling": True, "version-rolling.mask": f"{mask:08x}"}

    def _configure_minimum_difficulty(self, options: dict[str, Any]) -> dict[str, Any]:
        try:
            value = _number(options.get("minimum-difficulty.value"), "minimum-difficulty.value")
        except StratumError:
            return {"minimum-difficulty": False}
        self._wish(value, self.server.clock.seconds(), lower=False)
        return {"minimum-difficulty": True}

    def _wish(self, value: Fraction, now: float, lower: bool) -> None:
        """A miner's wish for its difficulty (``suggest_difficulty``, ``minimum-difficulty``).

        Before the first job it is the start difficulty, as firmware expects. Once working,
        it becomes the floor vardiff works above, and changes the difficulty at once at most
        once per ``suggest_interval``: only upwards while vardiff is on (vardiff keeps
        control: a miner cannot drag its difficulty back to the floor), either way without
        vardiff (``lower``). Other wishes cost a ``true`` and nothing else.
        """
        settings = self.server.settings
        value = clamp_difficulty(value, settings.min_difficulty, settings.max_difficulty)
        if self._last_job is None:
            self.difficulty_floor = value
            self.start_difficulty = value
            return
        if lower or value >= self.difficulty_floor:
            self.difficulty_floor = value
        if self.server.vardiff is not None and value <= self.difficulty:
            return
        if not lower and value <= self.difficulty:
            return
        last = self.suggested_at
        if last is not None and now - last < settings.suggest_interval:
            return
        if canonical_difficulty(value) != self.difficulty:
            self.suggested_at = now
            self.set_difficulty(value)

    def on_suggest_difficulty(self, request: Request, now: float) -> None:
        """``mining.suggest_difficulty [number]``: the start difficulty, then a floor."""
        params = request.params
        if len(params) < 1:
            raise InvalidParams("mining.suggest_difficulty needs a number")
        try:
            value = _number(params[0], "suggested difficulty")
        except StratumError as exc:
            raise InvalidParams(f"{exc.message}") from None
        self.write(encode_result_true(request.id))
        self._wish(value, now, lower=True)

    def on_extranonce_subscribe(self, request: Request, now: float) -> None:
        """``mining.extranonce.subscribe``: we will send ``mining.set_extranonce``."""
        self.extranonce_subscribed = True
        self.write(encode_result_true(request.id))

    def on_submit(self, request: Request, now: float) -> None:
        """``mining.submit [worker, job_id, extranonce2, ntime, nonce, version_bits?]``."""
        server = self.server
        params = request.params
        if not self.subscribed:
            self._reject(request, errors.NOT_SUBSCRIBED)
            return
        if not self.workers:
            self._reject(request, errors.UNAUTHORIZED)
            return
        if not 5 <= len(params) <= 6:
            raise InvalidParams(f"mining.submit needs 5 or 6 strings, got {_short(params)}")
        for param in params:  # (a loop: a generator here cost more than the check)
            if type(param) is not str:
                raise InvalidParams(f"mining.submit needs 5 or 6 strings, got {_short(params)}")
        worker = params[0]
        address = self.workers.get(worker)
        if address is None:
            # Authorized as " addr.rig ": the worker is known by its stripped name.
            worker = worker.strip(" ")
            address = self.workers.get(worker)
            if address is None:
                self._reject(request, errors.WORKER_MISMATCH)
                return
        if not self._take_share_token(now):
            server.stats.rate_limited += 1
            self._reject(request, errors.RATE_LIMITED)
            self._vardiff_share(now)
            return
        job, stale = server.jobs.lookup(params[1])
        if job is None:
            self._reject(request, errors.JOB_NOT_FOUND)
            return
        if job.address is not None:
            # SOLO: the work pays the address its coinbase names, whoever submits it.
            address = job.address
        difficulty, target = self.difficulty_for(job)
        current = server.jobs.current
        checked = server.validator.check(
            job,
            stale,
            self.extranonce1,
            params[2],
            params[3],
            params[4],
            params[5] if len(params) == 6 else None,
            self.version_mask,
            target,
            now,
            None if current is None else current.prev_hash,
        )
        reject = checked.reject
        if reject is not None and not checked.is_block:
            self._reject(request, reject)
            return
        share = Share(
            worker=worker,
            address=address,
            difficulty=difficulty,
            hash=checked.pow_hash,
            job_id=job.job_id,
            height=job.height,
            time=now,
            is_block=checked.is_block,
            header=checked.header,
            coinbase=server.validator.coinbase(job, self.extranonce1, checked.extranonce2),
            merkle_branch=job.branch,
        )
        if checked.is_block:
            server.block_found(job, share)
        if reject is not None:
            self._reject(request, reject)
            return
        self.write(encode_result_true(request.id))
        server.stats.accepted += 1
        server.note_work(self.host, True)
        self.accepted += 1
        try:
            server.sink.share_accepted(share)
        except Exception:
            self.log.failure("share sink failed for a share from {worker}", worker=worker)
        self._vardiff_share(now)

    def _take_share_token(self, now: float) -> bool:
        """The per-connection share-rate bound: a token bucket of ``share_burst`` submits
        refilled at ``max_share_rate`` per second."""
        settings = self.server.settings
        tokens = self.share_tokens + (now - self.share_time) * settings.max_share_rate
        self.share_time = now
        if tokens > settings.share_burst:
            tokens = float(settings.share_burst)
        if tokens < 1:
            self.share_tokens = tokens
            return False
        self.share_tokens = tokens - 1
        return True

    def _vardiff_share(self, now: float) -> None:
        """Count a share (or a submit refused for rate) towards vardiff's next retarget."""
        vardiff = self.server.vardiff
        if vardiff is not None:
            new = vardiff.on_share(
                self.vardiff_window,
                now,
                self.difficulty,
                self.difficulty_floor,
                self.server.settings.max_difficulty,
            )
            if new is not None:
                self.set_difficulty(new)

    def _reject(self, request: Request, reject: Reject) -> None:
        self.server.stats.count_reject(reject)
        self.server.note_work(self.host, False)
        self.write(encode_result_false(request.id, reject.array))


Handler = Callable[[StratumSession, Request, float], None]

_HANDLERS: dict[str, Handler] = {
    "mining.subscribe": StratumSession.on_subscribe,
    "mining.authorize": StratumSession.on_authorize,
    "mining.configure": StratumSession.on_configure,
    "mining.suggest_difficulty": StratumSession.on_suggest_difficulty,
    "mining.extranonce.subscribe": StratumSession.on_extranonce_subscribe,
    "mining.submit": StratumSession.on_submit,
}
