"""``/health``: is the node serving, and is any part of it degraded?

Each part registers a check — a function returning a `Check` — and the report takes the
worst status: ``ok`` (HTTP 200), ``degraded`` (HTTP 200: still serving, e.g. shares are
spooled while the database is away), ``down`` (HTTP 503: e.g. no block template).

The chain check is ``degraded`` as soon as one of its ``chain_troubles`` reports a reason
(the template source failing, a ``submitblock`` without an answer), naming which, and
``down`` once the last template is older than ``template_max_age``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

OK = "ok"
DEGRADED = "degraded"
DOWN = "down"
_RANK = {OK: 0, DEGRADED: 1, DOWN: 2}


@dataclass(frozen=True)
class Check:
    """One part's state; ``detail`` holds numbers and reasons for people."""

    status: str
    detail: dict[str, Any] = field(default_factory=dict)


class NodeHealth:
    """Collects the checks of the node's parts into one report."""

    def __init__(self, clock: Any, template_max_age: float) -> None:
        self.clock = clock
        self.template_max_age = template_max_age
        self.started_at: float = clock.seconds()
        self.last_template_at: float | None = None
        self.last_height: int | None = None
        self.checks: dict[str, Callable[[], Check]] = {"chain": self.chain_check}
        #: name -> a function giving why that part of the chain path fails (None: fine).
        self.chain_troubles: dict[str, Callable[[], str | None]] = {}

    def on_template(self, template: Any) -> None:
        """Subscribe to the template source: each template proves the chain answers."""
        self.last_template_at = self.clock.seconds()
        self.last_height = template.height

    def chain_check(self) -> Check:
        now = self.clock.seconds()
        troubles = self._troubles()
        if self.last_template_at is None:
            waited = now - self.started_at
            status = DOWN if waited > self.template_max_age else DEGRADED
            reasons = [f"no block template yet ({waited:.0f} s)", *troubles.values()]
            return Check(status, {"reason": "; ".join(reasons), **_failing(troubles)})
        age = now - self.last_template_at
        detail: dict[str, Any] = {"height": self.last_height, "template_age": round(age, 1)}
        if age > self.template_max_age:
            reasons = [f"no new block template for {age:.0f} s", *troubles.values()]
            return Check(DOWN, {**detail, "reason": "; ".join(reasons), **_failing(troubles)})
        if troubles:
            reason = "; ".join(troubles.values())
            return Check(DEGRADED, {**detail, "reason": reason, **_failing(troubles)})
        return Check(OK, detail)

    def _troubles(self) -> dict[str, str]:
        found = {}
        for name, trouble in self.chain_troubles.items():
            try:
                reason = trouble()
            except Exception as error:  # a broken probe must not break /health
                reason = f"{name} check failed: {error!r}"
            if reason:
                found[name] = reason
        return found

    def report(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        worst = OK
        for name, check in self.checks.items():
            try:
                result = check()
            except Exception as error:  # a broken check must not break /health
                result = Check(DOWN, {"reason": f"check failed: {error!r}"})
            checks[name] = {"status": result.status, **result.detail}
            if _RANK[result.status] > _RANK[worst]:
                worst = result.status
        return {
            "status": worst,
            "uptime": round(self.clock.seconds() - self.started_at, 1),
            "checks": checks,
        }


def _failing(troubles: dict[str, str]) -> dict[str, Any]:
    return {"failing": sorted(troubles)} if troubles else {}


class HealthResource(Resource):
    """GET -> the report as JSON; 503 when the node is down."""

    isLeaf = True

    def __init__(self, health: NodeHealth) -> None:
        super().__init__()
        self.health = health

    def render_GET(self, request: Request) -> bytes:
        report = self.health.report()
        request.setResponseCode(503 if report["status"] == DOWN else 200)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(report, sort_keys=True).encode() + b"\n"
