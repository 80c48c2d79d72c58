"""The ``/api/v1`` endpoints: each a :class:`~otedama.api.routes.Route` and its handler.

:class:`ApiRegistry` is the list of read-model providers the API asks: each registered
route comes with the coroutine that answers it. :func:`register_pool_routes` and
:func:`register_admin_routes` add the node's own; another part of the node (the
federation view, ``/api/v1/federation``) adds its endpoint the same way, and it appears
in the OpenAPI document and the docs page at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import yaml

from otedama import __version__
from otedama.api import queries, tokens
from otedama.api.routes import (
    INTEGER,
    NULLABLE_NUMBER,
    NULLABLE_STRING,
    NUMBER,
    STRING,
    ApiRequest,
    Handler,
    Param,
    Route,
    array,
    obj,
    page_params,
    paged,
)
from otedama.api.views import NodeView
from otedama.chain.address import address_to_script
from otedama.ledger import history
from otedama.ledger.tables import BLOCK_STATES
from otedama.ops.firewall import parse_host


class NotFound(Exception):
    """The item asked for does not exist (HTTP 404)."""


class Conflict(Exception):
    """The action does not apply in the current state (HTTP 409)."""


@dataclass(frozen=True)
class Registered:
    route: Route
    handler: Handler


class ApiRegistry:
    """The routes the API serves, in the order the document lists them."""

    def __init__(self) -> None:
        self.entries: list[Registered] = []

    def register(self, route: Route, handler: Handler) -> None:
        """Serve ``route`` with ``handler`` (a duplicate method and path is an error)."""
        for entry in self.entries:
            if entry.route.method == route.method and entry.route.path == route.path:
                raise ValueError(f"{route.method} {route.path} is already registered")
        self.entries.append(Registered(route, handler))

    @property
    def routes(self) -> list[Route]:
        return [entry.route for entry in self.entries]


# -- schemas ------------------------------------------------------------------------

HASHRATES = obj({"10m": NUMBER, "1h": NUMBER, "24h": NUMBER})
BLOCK = obj(
    {
        "height": INTEGER,
        "hash": STRING,
        "status": {"type": "string", "enum": list(BLOCK_STATES)},
        "confirmations": INTEGER,
        "reward": INTEGER,
        "finder": STRING,
        "worker": STRING,
        "found_at": NUMBER,
        "effort": NULLABLE_NUMBER,
    }
)
PAYOUT = obj(
    {
        "batch": INTEGER,
        "created_at": NUMBER,
        "state": STRING,
        "txid": NULLABLE_STRING,
        "amount": INTEGER,
        "recipients": INTEGER,
    }
)
POINTS = array(obj({"time": NUMBER, "hashrate": NUMBER, "shares": INTEGER}))
RANGE = Param(
    "range",
    "query",
    {"type": "string", "enum": list(history.RANGES), "default": "24h"},
    "Span of the history (one point per 5 min up to 24h, coarser beyond).",
)
COUNTS = {"type": "object", "additionalProperties": INTEGER}
LIVE = {
    "hashrate": HASHRATES,
    "miners": INTEGER,
    "workers": INTEGER,
    "shares_10m": INTEGER,
    "round_effort": NULLABLE_NUMBER,
    "height": {"type": ["integer", "null"]},
    "network_difficulty": NULLABLE_NUMBER,
    "updated_at": NULLABLE_NUMBER,
}
POOL = obj(
    {
        **LIVE,
        "reward_system": STRING,
        "fee_percent": NUMBER,
        "minimum_payout": INTEGER,
        "blocks": obj({"counts": COUNTS, "last": array(BLOCK)}),
        "payouts": array(PAYOUT),
        "stratum": array(obj({"url": STRING, "algorithm": STRING})),
    }
)
STATUS = obj(
    {
        "version": STRING,
        "uptime": NUMBER,
        "network": STRING,
        "height": {"type": ["integer", "null"]},
        "network_difficulty": NULLABLE_NUMBER,
        "health": obj({"status": STRING, "checks": {"type": "object"}}),
    }
)
MINER = obj(
    {
        "address": STRING,
        "hashrate": NUMBER,
        "workers": array(
            obj(
                {
                    "name": STRING,
                    "hashrate_10m": NUMBER,
                    "hashrate_1h": NUMBER,
                    "shares_1h": INTEGER,
                    "difficulty": NUMBER,
                    "last_share_at": NUMBER,
                }
            )
        ),
        "balance": obj(
            {"immature": INTEGER, "confirmed": INTEGER, "paid": INTEGER, "payout_pending": INTEGER}
        ),
        "payouts": array(PAYOUT),
    }
)
TOKEN = obj(
    {
        "id": INTEGER,
        "name": STRING,
        "created_at": NUMBER,
        "expires_at": NUMBER,
        "revoked_at": NULLABLE_NUMBER,
        "state": {"type": "string", "enum": ["active", "expired", "revoked"]},
    }
)
PAUSED = obj({"paused": {"type": "boolean"}})
BAN = obj(
    {
        "host": STRING,
        "until": NUMBER,
        "reason": STRING,
        "actor": STRING,
        "since": NUMBER,
    }
)
NULLABLE_BAN = {"oneOf": [BAN, {"type": "null"}]}
#: The longest ban the API sets (ten years, as ``security.ddos_protection.ban_duration``).
MAX_BAN_SECONDS = 315_360_000


@dataclass
class ApiContext:
    """What the node's handlers read."""

    view: NodeView
    store: Any
    network: str
    config: Any
    health: Any = None
    #: Stops and restarts the payout processor (admin pause/resume); None: no payouts.
    payouts: Any = None
    started_at: float = 0.0
    #: The node's :class:`~otedama.ops.guard.Guard` (admin bans); None: no ban endpoints.
    guard: Any = None


def address_param(network: str, example: str | None = None) -> Param:
    def check(address: str) -> None:
        address_to_script(address, network)

    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 100}
    if example is not None:
        schema["examples"] = [example]
    return Param(
        "address",
        "path",
        schema,
        f"A payout address on {network}.",
        check=check,
    )


def register_pool_routes(registry: ApiRegistry, context: ApiContext) -> None:
    """The public read endpoints."""
    view = context.view
    config = context.config
    address = address_param(context.network, config.payout_address)

    async def status(request: ApiRequest) -> Any:
        report = context.health.report() if context.health is not None else {"status": "ok"}
        return {
            "version": __version__,
            "uptime": view.now() - context.started_at,
            "network": context.network,
            "height": view.tip.height,
            "network_difficulty": view.tip.difficulty,
            "health": {"status": report["status"], "checks": report.get("checks", {})},
        }

    async def pool(request: ApiRequest) -> Any:
        data = view.snapshot.data
        return {
            **view.pool_summary(),
            "reward_system": config.pool.rewards.system,
            "fee_percent": float(config.pool.fee_percentage),
            "minimum_payout": config.pool.minimum_payout,
            "blocks": data.get("blocks", {"counts": {}, "last": []}),
            "payouts": data.get("payouts", []),
            "stratum": stratum_urls(config, request.host),
        }

    async def miner(request: ApiRequest) -> Any:
        who = request.params["address"]
        found = await context.store.run(partial(queries.miner, address=who, now=view.now()))
        balance = found["balance"]
        if not found["workers"] and not found["payouts"] and not any(balance.values()):
            raise NotFound(f"no shares, balance or payouts for {who}")
        return found

    async def miner_payments(request: ApiRequest) -> Any:
        p = request.params
        return await context.store.run(
            partial(
                queries.payments_page, page=p["page"], per_page=p["per_page"], address=p["address"]
            )
        )

    async def miner_hashrate(request: ApiRequest) -> Any:
        p = request.params
        return await context.store.run(
            partial(
                queries.miner_history, address=p["address"], now=view.now(), range_name=p["range"]
            )
        )

    async def blocks(request: ApiRequest) -> Any:
        p = request.params
        return await context.store.run(
            partial(queries.blocks_page, page=p["page"], per_page=p["per_page"], status=p["status"])
        )

    async def payments(request: ApiRequest) -> Any:
        p = request.params
        return await context.store.run(
            partial(queries.payments_page, page=p["page"], per_page=p["per_page"])
        )

    async def pool_hashrate(request: ApiRequest) -> Any:
        return await context.store.run(
            partial(queries.pool_history, now=view.now(), range_name=request.params["range"])
        )

    status_param = Param(
        "status",
        "query",
        {"type": "string", "enum": list(BLOCK_STATES)},
        "Only blocks in this state.",
    )
    for route, handler in (
        (
            Route(
                "GET",
                "/status",
                "getStatus",
                "Version, uptime, chain tip and health.",
                STATUS,
                tag="node",
            ),
            status,
        ),
        (Route("GET", "/pool", "getPool", "The pool at a glance.", POOL), pool),
        (
            Route(
                "GET",
                "/miners/{address}",
                "getMiner",
                "One miner's workers, balance and payouts.",
                MINER,
                (address,),
                tag="miners",
                may_miss=True,
            ),
            miner,
        ),
        (
            Route(
                "GET",
                "/miners/{address}/payments",
                "getMinerPayments",
                "One miner's payouts, newest first.",
                paged(PAYOUT),
                (address, *page_params()),
                tag="miners",
            ),
            miner_payments,
        ),
        (
            Route(
                "GET",
                "/miners/{address}/hashrate",
                "getMinerHashrate",
                "One miner's hashrate history.",
                obj({"address": STRING, "range": STRING, "step": NUMBER, "points": POINTS}),
                (address, RANGE),
                tag="miners",
            ),
            miner_hashrate,
        ),
        (
            Route(
                "GET",
                "/blocks",
                "getBlocks",
                "Blocks found, newest first.",
                paged(BLOCK),
                (status_param, *page_params()),
            ),
            blocks,
        ),
        (
            Route(
                "GET",
                "/payments",
                "getPayments",
                "Payout batches, newest first.",
                paged(PAYOUT),
                page_params(),
            ),
            payments,
        ),
        (
            Route(
                "GET",
                "/hashrate",
                "getHashrate",
                "The pool's hashrate history.",
                obj({"range": STRING, "step": NUMBER, "points": POINTS}),
                (RANGE,),
            ),
            pool_hashrate,
        ),
    ):
        registry.register(route, handler)


def register_admin_routes(registry: ApiRegistry, context: ApiContext) -> None:
    """Admin endpoints (bearer token with ``api.auth.enabled``; localhost only without)."""
    view = context.view

    async def config(request: ApiRequest) -> Any:
        from otedama.config import export_config

        return yaml.safe_load(export_config(context.config, sanitize=True))

    async def pause(request: ApiRequest) -> Any:
        return {"paused": await _set_paused(context, True)}

    async def resume(request: ApiRequest) -> Any:
        return {"paused": await _set_paused(context, False)}

    async def token_list(request: ApiRequest) -> Any:
        now = view.now()
        found = await context.store.run(tokens.list_tokens)
        return [info.as_dict(now) for info in found]

    def guard() -> Any:
        if context.guard is None:
            raise Conflict("this node has no guard to ban with")
        return context.guard

    async def ban_list(request: ApiRequest) -> Any:
        g = guard()
        now = g.now()
        return {"now": now, "bans": [ban.to_json() for ban in g.bans.active(now)]}

    async def ban_add(request: ApiRequest) -> Any:
        g = guard()
        p = request.params
        duration = p["duration"] if p["duration"] is not None else g.settings.ban_duration
        reason = p["reason"] or "banned by an operator through the API"
        ban = await g.ban(p["host"], float(duration), reason, request.actor)
        return ban.to_json()

    async def ban_remove(request: ApiRequest) -> Any:
        ban = await guard().unban(request.params["host"], request.actor)
        return {"removed": None if ban is None else ban.to_json()}

    host = Param(
        "host",
        "path",
        {"type": "string", "minLength": 2, "maxLength": 45, "examples": ["203.0.113.5"]},
        "An IPv4 or IPv6 address.",
        check=_check_ip,
    )
    duration = Param(
        "duration",
        "query",
        {"type": "integer", "minimum": 1, "maximum": MAX_BAN_SECONDS},
        "Seconds the ban lasts (default: security.ddos_protection.ban_duration).",
    )
    reason = Param(
        "reason", "query", {"type": "string", "maxLength": 200}, "Why, for the log and audit."
    )

    for route, handler in (
        (
            Route(
                "GET",
                "/admin/config",
                "getConfig",
                "The effective config, secrets masked.",
                {"type": "object"},
                admin=True,
                tag="admin",
            ),
            config,
        ),
        (
            Route(
                "POST",
                "/admin/payouts/pause",
                "pausePayouts",
                "Stop paying until resumed.",
                PAUSED,
                admin=True,
                tag="admin",
            ),
            pause,
        ),
        (
            Route(
                "POST",
                "/admin/payouts/resume",
                "resumePayouts",
                "Pay again on schedule.",
                PAUSED,
                admin=True,
                tag="admin",
            ),
            resume,
        ),
        (
            Route(
                "GET",
                "/admin/tokens",
                "listTokens",
                "API tokens (never their secrets).",
                array(TOKEN),
                admin=True,
                tag="admin",
            ),
            token_list,
        ),
        (
            Route(
                "GET",
                "/admin/bans",
                "listBans",
                "The bans in force (as `otedama ban list`).",
                obj({"now": NUMBER, "bans": array(BAN)}),
                admin=True,
                tag="admin",
            ),
            ban_list,
        ),
        (
            Route(
                "POST",
                "/admin/bans/{host}",
                "addBan",
                "Ban a host now: its connections are dropped and new ones refused at accept.",
                BAN,
                (host, duration, reason),
                admin=True,
                tag="admin",
            ),
            ban_add,
        ),
        (
            Route(
                "DELETE",
                "/admin/bans/{host}",
                "removeBan",
                "Lift a host's ban (`removed` is null when it was not banned).",
                obj({"removed": NULLABLE_BAN}),
                (host,),
                admin=True,
                tag="admin",
            ),
            ban_remove,
        ),
    ):
        registry.register(route, handler)


def _check_ip(host: str) -> None:
    """A host the guard can ban: the same test as ``otedama ban`` (``parse_host``)."""
    if parse_host(host) is None:
        raise ValueError(f"{host!r} is not an IP address")


class PayoutSwitch:
    """The admin endpoint's payout pause: the processor's own ``pause()`` / ``resume()``
    (its service keeps running, so a reload or shutdown sees it as it is).

    Pause answers once a tick in flight has finished.
    """

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    @property
    def paused(self) -> bool:
        return bool(self.processor.paused)

    async def set_paused(self, paused: bool) -> bool:
        if paused:
            await self.processor.pause()
        else:
            self.processor.resume()
        return self.paused


async def _set_paused(context: ApiContext, paused: bool) -> bool:
    if context.payouts is None:
        raise Conflict("this node has no payout processor")
    result: bool = await context.payouts.set_paused(paused)
    return result


def stratum_urls(config: Any, host: str) -> list[dict[str, str]]:
    """The Stratum URL of each listening port, with ``host`` for a wildcard address."""
    if not config.stratum.enable:
        return []
    address = config.stratum.address
    shown = host if address.host in ("", "0.0.0.0", "::", "*") else address.host
    shown = f"[{shown}]" if ":" in shown else shown
    return [{"url": f"stratum+tcp://{shown}:{address.port}", "algorithm": "sha256d"}]
