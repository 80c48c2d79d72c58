"""The miner's side of Stratum V1: a sans-IO session and its thin Twisted protocol.

:class:`ClientSession` is the state machine: it says what to send (``mining.configure``
with version rolling, ``mining.subscribe``, ``mining.authorize``, ``mining.submit``) and
turns what the pool says (``mining.notify``, ``mining.set_difficulty``,
``mining.set_extranonce``, ``mining.set_version_mask``, replies) into events for the miner.
:class:`StratumClientProtocol` only moves JSON lines between the socket and the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from otedama import __version__
from otedama.chain.target import difficulty_to_target
from otedama.miner.work import MinerJob, WorkError, hex_bytes
from otedama.stratum.codec import (
    CodecError,
    LineFramer,
    LineTooLong,
    Message,
    Request,
    Response,
    encode_request,
    encode_response,
    parse_message,
)

__all__ = [
    "AGENT",
    "ClientSession",
    "Disconnect",
    "MinerListener",
    "NewWork",
    "Send",
    "SessionStats",
    "ShareResult",
    "StratumClientFactory",
    "StratumClientProtocol",
    "parse_difficulty",
]

AGENT = f"otedama-cpuminer/{__version__}"
REQUESTED_VERSION_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class Send:
    """Send this encoded line to the pool."""

    line: bytes


@dataclass(frozen=True)
class NewWork:
    """Mine this job now (``clean``: drop everything older)."""

    job: MinerJob
    extranonce1: bytes
    extranonce2_size: int
    version_mask: int
    target: int
    clean: bool


@dataclass(frozen=True)
class Retarget:
    """The share target of a job still being mined changed (a new difficulty)."""

    job_id: str
    target: int


@dataclass(frozen=True)
class ShareResult:
    """The pool's verdict on a submitted share."""

    job_id: str
    accepted: bool
    error: object
    latency: float


@dataclass(frozen=True)
class Disconnect:
    """Close the connection (the pool refused us, or asked us to reconnect)."""

    reason: str


Event = Send | NewWork | Retarget | ShareResult | Disconnect


@dataclass
class SessionStats:
    """Counters of one session's shares."""

    accepted: int = 0
    rejected: int = 0
    stale_dropped: int = 0
    accepted_difficulty: Fraction = field(default_factory=Fraction)


def parse_difficulty(value: object) -> Fraction:
    """A ``mining.set_difficulty`` number as an exact ``Fraction``; error naming the value."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise WorkError(f"difficulty must be a number, got {value!r}")
    try:
        difficulty = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise WorkError(f"difficulty must be a number, got {value!r}") from None
    if difficulty <= 0:
        raise WorkError(f"difficulty must be positive, got {value!r}")
    return difficulty


def _hex32(value: object, what: str) -> int:
    if not isinstance(value, str) or len(value) != 8:
        raise WorkError(f"{what}: expected 8 hex digits, got {value!r}")
    try:
        return int(value, 16)
    except ValueError:
        raise WorkError(f"{what}: expected 8 hex digits, got {value!r}") from None


class ClientSession:
    """State of one Stratum connection as seen by the miner (no I/O, no clock of its own)."""

    log = Logger()

    def __init__(
        self,
        user: str,
        password: str = "x",
        *,
        agent: str = AGENT,
        request_version_rolling: bool = True,
    ) -> None:
        if not user:
            raise WorkError("the Stratum user name (payout address[.worker]) must not be empty")
        self.user = user
        self.password = password
        self.agent = agent
        self.request_version_rolling = request_version_rolling
        self.stats = SessionStats()
        self.extranonce1: bytes | None = None
        self.extranonce2_size = 0
        self.version_mask = 0
        self.difficulty = Fraction(1)
        self.authorized = False
        self.jobs: dict[str, MinerJob] = {}
        self.job_difficulty: dict[str, Fraction] = {}
        self.current: MinerJob | None = None
        self._next_id = 1
        self._pending: dict[int, tuple[str, str, float]] = {}

    # -- outgoing ---------------------------------------------------------------------------

    def _request(
        self, kind: str, method: str, params: list[object], now: float, job: str = ""
    ) -> Send:
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = (kind, job, now)
        return Send(encode_request(request_id, method, params))

    def start(self, now: float) -> list[Event]:
        """The opening requests, sent at once: configure (if wanted), subscribe, authorize,
        extranonce.subscribe."""
        out: list[Event] = []
        if self.request_version_rolling:
            out.append(
                self._request(
                    "configure",
                    "mining.configure",
                    [
                        ["version-rolling"],
                        {
                            "version-rolling.mask": format(REQUESTED_VERSION_MASK, "08x"),
                            "version-rolling.min-bit-count": 2,
                        },
                    ],
                    now,
                )
            )
        out.append(self._request("subscribe", "mining.subscribe", [self.agent], now))
        out.append(self._request("authorize", "mining.authorize", [self.user, self.password], now))
        # Lets the pool move us to another extranonce1 with mining.set_extranonce.
        out.append(self._request("extranonce", "mining.extranonce.subscribe", [], now))
        return out

    def target_for(self, job_id: str) -> int:
        """The share target of a job: its difficulty when sent, or a higher one since."""
        difficulty = max(self.job_difficulty.get(job_id, self.difficulty), self.difficulty)
        return difficulty_to_target(difficulty)

    def submit(
        self,
        job_id: str,
        extranonce2: str,
        ntime: str,
        nonce: str,
        version: int,
        share_hash: int,
        now: float,
    ) -> list[Event]:
        """A found share: ``mining.submit`` it, or drop it if stale or above the target now."""
        if not self.authorized or job_id not in self.jobs:
            self.stats.stale_dropped += 1
            return []
        if share_hash > self.target_for(job_id):
            return []
        params: list[object] = [self.user, job_id, extranonce2, ntime, nonce]
        if self.version_mask:
            params.append(format(version & self.version_mask, "08x"))
        return [self._request("submit", "mining.submit", params, now, job_id)]

    # -- incoming ---------------------------------------------------------------------------

    def receive(self, message: Message, now: float) -> list[Event]:
        """Handle one message from the pool; bad messages are logged, never raised."""
        try:
            if isinstance(message, Response):
                return self._reply(message, now)
            request_id = message.id if isinstance(message, Request) else None
            return self._notification(message.method, message.params, request_id, now)
        except WorkError as exc:
            self.log.warn("pool sent a bad message: {error}", error=str(exc))
            return []

    def _reply(self, message: Response, now: float) -> list[Event]:
        request_id = message.id
        if not isinstance(request_id, int) or request_id not in self._pending:
            self.log.warn("reply to an unknown request id {id!r}", id=request_id)
            return []
        kind, job_id, sent = self._pending.pop(request_id)
        result = message.result
        error = message.error
        if kind == "configure":
            self.version_mask = self._granted_mask(result)
            return self._redo_current(clean=False)
        if kind == "subscribe":
            return self._subscribed(result, error)
        if kind == "extranonce":
            return []  # either answer is fine: pools that refuse it just never send one
        if kind == "authorize":
            if result is True and error is None:
                self.authorized = True
                self.log.info("authorized as {user}", user=self.user)
                return self._redo_current(clean=True)
            return [Disconnect(f"pool refused authorization of {self.user!r}: {error!r}")]
        accepted = result is True and error is None
        if accepted:
            self.stats.accepted += 1
            self.stats.accepted_difficulty += self.job_difficulty.get(job_id, self.difficulty)
        else:
            self.stats.rejected += 1
        return [ShareResult(job_id, accepted, error, now - sent)]

    def _granted_mask(self, result: object) -> int:
        if not isinstance(result, dict) or result.get("version-rolling") is not True:
            return 0
        mask = result.get("version-rolling.mask")
        granted = _hex32(mask, "version-rolling.mask") & REQUESTED_VERSION_MASK
        self.log.info("pool granted version rolling with mask {mask:08x}", mask=granted)
        return granted

    def _subscribed(self, result: object, error: object) -> list[Event]:
        if error is not None or not isinstance(result, list) or len(result) < 3:
            return [Disconnect(f"pool refused mining.subscribe: {error!r} {result!r:.200}")]
        extranonce1, size = result[1], result[2]
        self._set_extranonce(extranonce1, size)
        return self._redo_current(clean=True)

    def _set_extranonce(self, extranonce1: object, size: object) -> None:
        raw = hex_bytes(extranonce1, "extranonce1")
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 16:
            raise WorkError(f"extranonce2 size must be 1..16 bytes, got {size!r}")
        self.extranonce1, self.extranonce2_size = raw, size

    def _notification(
        self, method: str, args: Sequence[object], request_id: object, now: float
    ) -> list[Event]:
        if method == "mining.notify":
            job = MinerJob.from_notify(args)
            if job.clean:
                self.jobs.clear()
                self.job_difficulty.clear()
            self.jobs[job.job_id] = job
            self.job_difficulty[job.job_id] = self.difficulty
            self.current = job
            return self._redo_current(clean=job.clean)
        if method == "mining.set_difficulty":
            if not args:
                raise WorkError("mining.set_difficulty without a difficulty")
            self.difficulty = parse_difficulty(args[0])
            self.log.info("pool set difficulty {difficulty}", difficulty=float(self.difficulty))
            if self.current is None:
                return []
            return [Retarget(self.current.job_id, self.target_for(self.current.job_id))]
        if method == "mining.set_extranonce":
            if len(args) < 2:
                raise WorkError(f"mining.set_extranonce needs 2 params, got {args!r}")
            self._set_extranonce(args[0], args[1])
            return self._redo_current(clean=False)
        if method == "mining.set_version_mask":
            if not args:
                raise WorkError("mining.set_version_mask without a mask")
            self.version_mask = _hex32(args[0], "mining.set_version_mask") & REQUESTED_VERSION_MASK
            return self._redo_current(clean=False)
        if method == "client.reconnect":
            return [Disconnect("pool asked to reconnect")]
        reply_id = request_id if isinstance(request_id, int | str) else None
        if method == "client.get_version" and reply_id is not None:
            return [Send(encode_response(reply_id, self.agent))]
        if method == "client.show_message":
            self.log.info("pool says: {text!r:.500}", text=args[0] if args else "")
            return []
        if reply_id is not None:
            return [Send(encode_response(reply_id, None, [20, "Unsupported method", None]))]
        return []

    def _redo_current(self, clean: bool) -> list[Event]:
        job = self.current
        if job is None or self.extranonce1 is None or not self.authorized:
            return []
        return [
            NewWork(
                job=job,
                extranonce1=self.extranonce1,
                extranonce2_size=self.extranonce2_size,
                version_mask=self.version_mask,
                target=self.target_for(job.job_id),
                clean=clean,
            )
        ]


class MinerListener(TypingProtocol):
    """What the protocol tells the miner about (implemented by the CPU miner service)."""

    def connected(self, protocol: StratumClientProtocol) -> None:
        """A connection is up and its session started."""

    def disconnected(self, protocol: StratumClientProtocol) -> None:
        """The connection is gone; stop hashing its work."""

    def new_work(self, work: NewWork) -> None:
        """Mine this job now."""

    def retarget(self, change: Retarget) -> None:
        """A job's share target changed."""

    def share_result(self, result: ShareResult) -> None:
        """The pool answered a submit."""


class StratumClientProtocol(Protocol):
    """Moves JSON lines between a TCP connection and a :class:`ClientSession`."""

    MAX_LINE = 1 << 20
    log = Logger()

    def __init__(
        self, session: ClientSession, listener: MinerListener, clock: IReactorTime
    ) -> None:
        self.session = session
        self.listener = listener
        # zope interfaces have no mypy plugin here: keep the providers as Any.
        self.clock: Any = clock
        self.framer = LineFramer(self.MAX_LINE)

    @property
    def _transport(self) -> Any:
        return self.transport

    def connectionMade(self) -> None:
        self.listener.connected(self)
        self._apply(self.session.start(self.clock.seconds()))

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.listener.disconnected(self)

    def dataReceived(self, data: bytes) -> None:
        for line in self.framer.feed(data):
            if isinstance(line, LineTooLong):
                self.log.warn(
                    "pool sent a line of {n} bytes, over {limit}; closing",
                    n=line.length,
                    limit=self.MAX_LINE,
                )
                self._transport.loseConnection()
                return
            try:
                message = parse_message(line)
            except CodecError as exc:
                self.log.warn(
                    "pool sent a bad line {line!r:.200}: {error}", line=line, error=str(exc)
                )
                continue
            self._apply(self.session.receive(message, self.clock.seconds()))

    def submit(
        self, job_id: str, extranonce2: str, ntime: str, nonce: str, version: int, share_hash: int
    ) -> None:
        """Submit a share found by a worker (dropped by the session if stale)."""
        self._apply(
            self.session.submit(
                job_id, extranonce2, ntime, nonce, version, share_hash, self.clock.seconds()
            )
        )

    def _apply(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Send):
                self._transport.write(event.line)
            elif isinstance(event, NewWork):
                self.listener.new_work(event)
            elif isinstance(event, Retarget):
                self.listener.retarget(event)
            elif isinstance(event, ShareResult):
                self.listener.share_result(event)
            else:
                self.log.warn("disconnecting: {reason}", reason=event.reason)
                self._transport.loseConnection()


class StratumClientFactory(Factory):
    """Builds a protocol with a fresh :class:`ClientSession` for each (re)connection."""

    noisy = False

    def __init__(
        self, user: str, password: str, listener: MinerListener, clock: IReactorTime
    ) -> None:
        ClientSession(user, password)  # validate the user name once, early
        self.user = user
        self.password = password
        self.listener = listener
        self.clock = clock

    def buildProtocol(self, addr: object) -> StratumClientProtocol:
        proto = StratumClientProtocol(
            ClientSession(self.user, self.password), self.listener, self.clock
        )
        proto.factory = self
        return proto
