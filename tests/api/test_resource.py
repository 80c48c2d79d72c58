"""The API resource in-process (StubTreq, task.Clock): routes, errors, CORS, auth, limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import task

from otedama.api import tokens
from otedama.api.endpoints import ApiRegistry
from otedama.api.resource import ApiPolicy
from otedama.api.routes import (
    OBJ_ANY,
    BadParameter,
    Param,
    Route,
    openapi,
    parse_params,
)
from tests.api.support import SyncStore, migrated_engine, site
from tests.pool.support import MINER

BASE = "http://127.0.0.1/api/v1"


def call(stub: StubTreq, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
    results: list[Any] = []
    stub.request(method, BASE + path, **kwargs).addCallback(results.append)
    stub.flush()
    response = results[0]
    content: list[bytes] = []
    response.content().addCallback(content.append)
    stub.flush()
    data = json.loads(content[0]) if content[0] else None
    return response.code, response.headers, data


def test_every_public_endpoint_answers_json_that_its_route_describes(tmp_path: Path) -> None:
    parts, _, _, _ = site(tmp_path, ApiPolicy(auth_enabled=True, rate_limiting=False))
    stub = StubTreq(parts.site.resource)
    for path in (
        "/status",
        "/pool",
        "/blocks?status=pending&page=2",
        "/payments?page=1&per_page=100",
        "/hashrate?range=7d",
        f"/miners/{MINER}/payments",
        f"/miners/{MINER}/hashrate?range=1h",
    ):
        status, headers, data = call(stub, "GET", path)
        assert status == 200, (path, data)
        assert headers.getRawHeaders("content-type") == ["application/json"]
        assert isinstance(data, dict)
    status, _, data = call(stub, "GET", "/hashrate?range=24h")
    assert len(data["points"]) == 288 and data["step"] == 300.0


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("/miners/notanaddress", 400, "address"),
        ("/miners/bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", 400, "address"),
        (f"/miners/{MINER}/hashrate?range=1y", 400, "range"),
        ("/blocks?page=0", 400, "page"),
        ("/blocks?page=x", 400, "page"),
        ("/blocks?per_page=101", 400, "per_page"),
        ("/blocks?status=lost", 400, "status"),
        ("/payments?page=1&page=2", 400, "page"),
        (f"/miners/{MINER}", 404, MINER),
        ("/nothing/here", 404, "/api/v1/nothing/here"),
    ],
)
def test_errors_are_json_with_the_status_and_name_the_bad_parameter(
    tmp_path: Path, path: str, status: int, named: str
) -> None:
    parts, _, _, _ = site(tmp_path, ApiPolicy(rate_limiting=False))
    code, _, data = call(StubTreq(parts.site.resource), "GET", path)
    assert code == status
    assert data["error"]["status"] == status
    assert named in data["error"]["message"]


def test_a_known_path_with_another_method_is_405_with_allow(tmp_path: Path) -> None:
    parts, _, _, _ = site(tmp_path, ApiPolicy(rate_limiting=False))
    code, headers, data = call(StubTreq(parts.site.resource), "POST", "/pool")
    assert code == 405 and data["error"]["status"] == 405
    assert headers.getRawHeaders("allow") == ["GET, OPTIONS"]


def test_cors_allows_only_the_configured_origins(tmp_path: Path) -> None:
    origin = "https://dash.example"
    parts, _, _, _ = site(tmp_path, ApiPolicy(rate_limiting=False, cors_origins=(origin,)))
    stub = StubTreq(parts.site.resource)
    code, headers, _ = call(stub, "GET", "/pool", headers={"Origin": origin})
    assert code == 200
    assert headers.getRawHeaders("access-control-allow-origin") == [origin]
    code, headers, _ = call(stub, "OPTIONS", "/pool", headers={"Origin": origin})
    assert (
        code == 204 and "Authorization" in headers.getRawHeaders("access-control-allow-headers")[0]
    )
    code, headers, _ = call(stub, "GET", "/pool", headers={"Origin": "https://evil.example"})
    assert code == 200 and not headers.hasHeader("access-control-allow-origin")


def test_the_ip_limit_answers_429_with_retry_after_then_recovers(tmp_path: Path) -> None:
    policy = ApiPolicy(rate_limiting=True, ip_rate=0.5, ip_burst=2)
    parts, _, clock, _ = site(tmp_path, policy)
    stub = StubTreq(parts.site.resource)
    assert call(stub, "GET", "/status")[0] == 200
    assert call(stub, "GET", "/status")[0] == 200
    code, headers, data = call(stub, "GET", "/status")
    assert code == 429 and data["error"]["status"] == 429
    assert headers.getRawHeaders("retry-after") == ["2"]
    clock.advance(1.0)
    assert call(stub, "GET", "/status")[0] == 429
    clock.advance(1.0)
    assert call(stub, "GET", "/status")[0] == 200


async def _token(store: Any, name: str, now: float, lifetime: float) -> str:
    token, _ = await store.run(lambda c: tokens.create_token(c, name, now, lifetime))
    return str(token)


def _run(coroutine: Any) -> Any:
    from twisted.internet.defer import Deferred

    results: list[Any] = []
    Deferred.fromCoroutine(coroutine).addBoth(results.append)
    return results[0]


def test_admin_endpoints_need_a_valid_unexpired_unrevoked_token(tmp_path: Path) -> None:
    parts, store, clock, _ = site(tmp_path, ApiPolicy(auth_enabled=True, rate_limiting=False))
    stub = StubTreq(parts.site.resource)
    now = clock.seconds()
    good = _run(_token(store, "ops", now, 100.0))
    short = _run(_token(store, "short", now, 10.0))
    revoked = _run(_token(store, "old", now, 100.0))
    assert _run(store.run(lambda c: tokens.revoke_token(c, "old", now))) == 1

    def admin(token: str | None) -> tuple[int, Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        code, got, data = call(stub, "GET", "/admin/tokens", headers=headers)
        if code == 401:
            assert got.getRawHeaders("www-authenticate") == ['Bearer realm="otedama"']
        return code, data

    code, data = admin(good)
    assert code == 200
    assert {(t["name"], t["state"]) for t in data} == {
        ("ops", "active"),
        ("short", "active"),
        ("old", "revoked"),
    }
    assert admin(None)[0] == 401
    assert "unknown token" in admin("otd_wrong")[1]["error"]["message"]
    assert "'old' is revoked" in admin(revoked)[1]["error"]["message"]
    assert admin(short)[0] == 200
    clock.advance(11.0)
    assert "'short' is expired" in admin(short)[1]["error"]["message"]
    code, _, data = call(stub, "GET", "/admin/config", headers={"Authorization": f"Bearer {good}"})
    assert code == 200 and data["chain"]["network"] == "devnet"
    code, _, data = call(
        stub, "POST", "/admin/payouts/pause", headers={"Authorization": f"Bearer {good}"}
    )
    assert code == 409  # this site has no payout processor
    stored = _run(store.run(tokens.list_tokens))
    assert all(good not in repr(info) for info in stored)


def test_the_token_limit_applies_per_token(tmp_path: Path) -> None:
    policy = ApiPolicy(auth_enabled=True, rate_limiting=True, token_rate=1.0, token_burst=1)
    parts, store, clock, _ = site(tmp_path, policy)
    stub = StubTreq(parts.site.resource)
    token = _run(_token(store, "ops", clock.seconds(), 100.0))
    headers = {"Authorization": f"Bearer {token}"}
    assert call(stub, "GET", "/admin/tokens", headers=headers)[0] == 200
    code, got, _ = call(stub, "GET", "/admin/tokens", headers=headers)
    assert code == 429 and got.getRawHeaders("retry-after") == ["1"]
    clock.advance(1.0)
    assert call(stub, "GET", "/admin/tokens", headers=headers)[0] == 200


def test_without_auth_admin_endpoints_answer_only_localhost(tmp_path: Path) -> None:
    parts, _, _, _ = site(tmp_path, ApiPolicy(auth_enabled=False, rate_limiting=False))
    code, _, _ = call(StubTreq(parts.site.resource), "GET", "/admin/tokens")
    assert code == 200  # StubTreq's client is 127.0.0.1
    parts.api._client = lambda request: "192.0.2.7"  # type: ignore[method-assign]
    code, _, data = call(StubTreq(parts.site.resource), "GET", "/admin/tokens")
    assert code == 403 and "localhost" in data["error"]["message"]


def test_the_openapi_document_is_generated_from_the_registered_routes(tmp_path: Path) -> None:
    parts, _, _, _ = site(tmp_path, ApiPolicy(rate_limiting=False))
    code, _, document = call(StubTreq(parts.site.resource), "GET", "/openapi.json")
    assert code == 200 and document["openapi"] == "3.1.0"
    listed = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert listed == {
        ("GET" if r.method == "GET" else r.method, "/api/v1" + r.path)
        for r in parts.registry.routes
    }
    miner = document["paths"]["/api/v1/miners/{address}"]["get"]
    assert miner["parameters"][0]["in"] == "path" and "404" in miner["responses"]
    assert document["paths"]["/api/v1/admin/tokens"]["get"]["security"] == [{"bearer": []}]


def test_a_registered_provider_is_served_and_documented(tmp_path: Path) -> None:
    """The federation view is added later exactly like this."""
    registry = ApiRegistry()

    async def federation(request: Any) -> Any:
        return {"peers": 0}

    registry.register(Route("GET", "/federation", "getFederation", "Peers.", OBJ_ANY), federation)
    assert (
        openapi(registry.routes)["paths"]["/api/v1/federation"]["get"]["operationId"]
        == "getFederation"
    )
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Route("GET", "/federation", "again", "Peers.", OBJ_ANY), federation)


def test_parse_params_names_the_parameter_and_applies_defaults() -> None:
    route = Route(
        "GET",
        "/things/{id}",
        "getThing",
        "A thing.",
        OBJ_ANY,
        (
            Param("id", "path", {"type": "integer", "minimum": 1}, "Id."),
            Param("page", "query", {"type": "integer", "default": 1, "maximum": 5}, "Page."),
        ),
    )
    assert parse_params(route, {"id": "7"}, {}) == {"id": 7, "page": 1}
    with pytest.raises(BadParameter, match=r"^page: must be at most 5"):
        parse_params(route, {"id": "7"}, {b"page": [b"6"]})
    with pytest.raises(BadParameter, match=r"^id: expected a whole number"):
        parse_params(route, {"id": "1e99999"}, {})
    assert route.match(["things", "3"]) == {"id": "3"}
    assert route.match(["things"]) is None


def test_payments_are_paged_newest_first_for_the_pool_and_one_address(tmp_path: Path) -> None:
    from sqlalchemy import insert

    from otedama.ledger.tables import payout_batches, payout_items
    from tests.pool.support import POOL

    parts, store, _, _ = site(tmp_path, ApiPolicy(rate_limiting=False))

    def pay(connection: Any) -> None:
        for batch in range(1, 4):
            connection.execute(
                insert(payout_batches).values(
                    id=batch,
                    created_at=float(batch),
                    updated_at=float(batch),
                    state="sent",
                    comment=f"otedama-payout-{batch}",
                    txid=f"{batch:064x}",
                    total=300 * batch,
                )
            )
            connection.execute(
                insert(payout_items),
                [
                    {"batch_id": batch, "address": MINER, "amount": 100 * batch},
                    {"batch_id": batch, "address": POOL, "amount": 200 * batch},
                ],
            )

    _run(store.run(pay))
    stub = StubTreq(parts.site.resource)
    _, _, page = call(stub, "GET", "/payments?per_page=2")
    assert page["total"] == 3
    assert [(p["batch"], p["amount"], p["recipients"]) for p in page["items"]] == [
        (3, 900, 2),
        (2, 600, 2),
    ]
    _, _, page = call(stub, "GET", f"/miners/{MINER}/payments?page=2&per_page=2")
    assert page["total"] == 3
    assert [(p["batch"], p["amount"], p["recipients"]) for p in page["items"]] == [(1, 100, 1)]
    code, _, miner = call(stub, "GET", f"/miners/{MINER}")
    assert code == 200 and [p["batch"] for p in miner["payouts"]] == [3, 2, 1]


@pytest_twisted.ensureDeferred
async def test_the_root_serves_the_dashboard_and_lists_no_folder(tmp_path: Path) -> None:
    """Over real TCP: static files are streamed by a producer StubTreq does not pump."""
    import treq
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    parts, _, _, _ = site(tmp_path, ApiPolicy(rate_limiting=False))
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(parts.site)
    base = f"http://127.0.0.1:{port.getHost().port}"

    async def get(path: str) -> tuple[int, bytes]:
        response = await treq.get(base + path)
        return response.code, await response.content()

    try:
        code, page = await get("/")
        assert code == 200 and b"/vendor/uPlot.iife.min.js" in page
        assert (await get("/vendor/uPlot.iife.min.js"))[0] == 200
        assert (await get("/vendor/uPlot.LICENSE"))[1].startswith(b"The MIT License")
        assert (await get("/vendor/"))[0] == 404
        code, docs = await get("/api/v1/docs")
        assert code == 200 and b"GET /api/v1/miners/{address}" in docs
    finally:
        await port.stopListening()


def test_observers_see_each_answer_by_route_and_status(tmp_path: Path) -> None:
    """The hook the metrics use (API requests by route and status)."""
    parts, _, _, _ = site(tmp_path, ApiPolicy(rate_limiting=False))
    seen: list[tuple[str, str, int, float]] = []
    parts.api.observers.append(lambda *answer: seen.append(answer))
    parts.api.observers.append(lambda *answer: 1 / 0)  # a broken one is logged
    stub = StubTreq(parts.site.resource)
    for path in ("/pool", "/blocks?page=0", "/nope", "/openapi.json", f"/miners/{MINER}"):
        call(stub, "GET", path)
    assert seen == [
        ("getPool", "/api/v1/pool", 200, 0.0),
        ("getBlocks", "/api/v1/blocks", 400, 0.0),
        ("unmatched", "unmatched", 404, 0.0),
        ("openapi", "/api/v1/openapi.json", 200, 0.0),
        ("getMiner", "/api/v1/miners/{address}", 404, 0.0),  # no shares yet
    ]


def test_each_answer_moves_the_api_counters_by_route_pattern_in_the_exposition(
    tmp_path: Path,
) -> None:
    """The node's metrics count API answers by pattern (never the raw address) and status."""
    from prometheus_client.parser import text_string_to_metric_families

    from otedama.ops.metrics import NodeMetrics

    clock = task.Clock()
    metrics = NodeMetrics(clock, "devnet")
    parts, _, _, _ = site(tmp_path, ApiPolicy(rate_limiting=False), clock, metrics=metrics)
    stub = StubTreq(parts.site.resource)
    for path in (f"/miners/{MINER}", f"/miners/{MINER}", "/miners/not-an-address"):
        call(stub, "GET", path)
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
    }
    route = ("route", "/api/v1/miners/{address}")
    assert values[("otedama_api_requests_total", (route, ("status", "404")))] == 2
    assert values[("otedama_api_requests_total", (route, ("status", "400")))] == 1
    assert values[("otedama_api_request_seconds_count", (route,))] == 3
    assert not any(MINER in str(labels) for (_, labels) in values)


def test_payout_pause_pauses_the_running_processor_without_stopping_it(tmp_path: Path) -> None:
    """The admin endpoint uses the processor's pause()/resume(); its service stays up."""
    from otedama.ledger.payouts import PayoutProcessor

    clock = task.Clock()
    store = SyncStore(migrated_engine(tmp_path))
    processor = PayoutProcessor(store, None, clock, interval=600)  # type: ignore[arg-type]
    processor.running = True  # as under the node (not started here: it would tick)
    policy = ApiPolicy(auth_enabled=False, rate_limiting=False)
    parts, _, _, _ = site(tmp_path, policy, clock, store, payouts=processor)
    stub = StubTreq(parts.site.resource)
    assert call(stub, "POST", "/admin/payouts/pause")[2] == {"paused": True}
    assert processor.paused and processor.running
    assert call(stub, "POST", "/admin/payouts/pause")[2] == {"paused": True}
    assert call(stub, "POST", "/admin/payouts/resume")[2] == {"paused": False}
    assert not processor.paused and processor.running


def test_public_answers_are_reused_for_the_ttl_then_read_anew(tmp_path: Path) -> None:
    from sqlalchemy import insert

    from otedama.ledger.tables import payout_batches, payout_items

    parts, store, clock, _ = site(tmp_path, ApiPolicy(rate_limiting=False, cache_ttl=1.0))
    stub = StubTreq(parts.site.resource)
    code, _, missing = call(stub, "GET", f"/miners/{MINER}")
    assert code == 404 and MINER in missing["error"]["message"]

    def pay(connection: Any) -> None:
        connection.execute(
            insert(payout_batches).values(
                id=1, created_at=1.0, updated_at=1.0, state="sent", comment="c", total=100
            )
        )
        connection.execute(insert(payout_items), [{"batch_id": 1, "address": MINER, "amount": 100}])

    _run(store.run(pay))
    # Within the TTL the kept answer (the 404) is served, without a read.
    assert call(stub, "GET", f"/miners/{MINER}")[0] == 404
    cache = parts.api.cache
    assert cache is not None and (cache.hits, cache.misses) == (1, 1)
    clock.advance(1.0)
    code, _, found = call(stub, "GET", f"/miners/{MINER}")
    assert code == 200 and [p["batch"] for p in found["payouts"]] == [1]
    # Parameters are part of the key; admin routes are never kept.
    assert call(stub, "GET", "/payments?per_page=1")[2]["total"] == 1
    assert call(stub, "GET", "/payments?per_page=2")[2]["total"] == 1
    assert cache.misses == 4
    call(stub, "GET", "/admin/config")
    call(stub, "GET", "/admin/config")
    assert cache.misses == 4 and len(cache) == 3


@pytest_twisted.ensureDeferred
async def test_concurrent_misses_share_one_read_and_its_failure() -> None:
    from twisted.internet.defer import Deferred, ensureDeferred

    from otedama.api.resource import AnswerCache, Kept

    clock = task.Clock()
    cache = AnswerCache(1.0, clock, limit=2)
    reads: list[Deferred[Kept]] = []

    def kept(body: bytes) -> Kept:
        return Kept(200, body, "getPool", "/api/v1/pool")

    async def produce() -> Kept:
        read: Deferred[Kept] = Deferred()
        reads.append(read)
        return await read

    first = ensureDeferred(cache.answer(b"k", produce))
    second = ensureDeferred(cache.answer(b"k", produce))
    assert len(reads) == 1
    reads[0].callback(kept(b"{}"))
    assert await first == await second == kept(b"{}")
    failing = [ensureDeferred(cache.answer(b"f", produce)) for _ in range(2)]
    reads[1].errback(RuntimeError("database down"))
    for d in failing:
        with pytest.raises(RuntimeError, match="database down"):
            await d
    assert len(cache) == 1
    # A failed read is not kept: the next request reads again.
    again = ensureDeferred(cache.answer(b"f", produce))
    reads[2].callback(kept(b"[]"))
    assert await again == kept(b"[]")
    # At most ``limit`` answers: the least recently used goes.
    third = ensureDeferred(cache.answer(b"g", produce))
    reads[3].callback(kept(b"g"))
    await third
    assert len(cache) == 2 and cache.peek(b"k") is None
    clock.advance(0.5)
    assert await ensureDeferred(cache.answer(b"f", produce)) == kept(b"[]")
    assert len(reads) == 4
    # Past the TTL the answer is read again; an over-long key is read and never kept.
    clock.advance(0.5)
    assert cache.peek(b"f") is None
    long_key = b"x" * (AnswerCache.MAX_KEY + 1)
    answered = ensureDeferred(cache.answer(long_key, produce))
    reads[4].callback(kept(b"long"))
    assert await answered == kept(b"long") and cache.peek(long_key) is None


def test_a_kept_answer_still_takes_the_ip_limit_and_reaches_the_observers(tmp_path: Path) -> None:
    policy = ApiPolicy(rate_limiting=True, ip_rate=0.5, ip_burst=2, cache_ttl=5.0)
    parts, _, clock, _ = site(tmp_path, policy)
    seen: list[tuple[str, int]] = []
    parts.api.observers.append(lambda _op, pattern, status, _s: seen.append((pattern, status)))
    stub = StubTreq(parts.site.resource)
    first = call(stub, "GET", "/pool")
    second = call(stub, "GET", "/pool")
    assert first[0] == second[0] == 200 and first[2] == second[2]
    assert parts.api.cache is not None and parts.api.cache.hits == 1
    code, headers, _ = call(stub, "GET", "/pool")
    assert code == 429 and headers.getRawHeaders("retry-after") == ["2"]
    clock.advance(2.0)
    assert call(stub, "HEAD", "/pool")[0] == 200
    assert seen == [("/api/v1/pool", 200)] * 2 + [("/api/v1/pool", 429), ("/api/v1/pool", 200)]


@pytest_twisted.ensureDeferred
async def test_admin_ban_endpoints_ban_list_and_lift_and_every_admin_call_is_audited(
    tmp_path: Path,
) -> None:
    """Over real TCP (the audit line is written on a thread before the answer)."""
    import treq
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from otedama.ops.audit import AuditLog
    from otedama.ops.bans import DdosSettings
    from otedama.ops.firewall import Firewall
    from otedama.ops.guard import Guard

    clock = task.Clock()
    audit_file = tmp_path / "audit.jsonl"
    audit = AuditLog(audit_file, reactor)
    guard = Guard(Firewall(), DdosSettings(), clock, audit=audit)
    policies = {
        "open": ApiPolicy(auth_enabled=False, rate_limiting=False),
        "auth": ApiPolicy(auth_enabled=True, rate_limiting=False),
    }
    for name in policies:
        (tmp_path / name).mkdir()
    sites = {
        name: site(tmp_path / name, policy, clock=clock, guard=guard, audit=audit)[0].site
        for name, policy in policies.items()
    }
    ports = {
        name: await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(s)
        for name, s in sites.items()
    }

    async def ask(method: str, path: str, name: str = "open") -> tuple[int, Any]:
        url = f"http://127.0.0.1:{ports[name].getHost().port}/api/v1{path}"
        response = await treq.request(method, url)
        return response.code, await response.json()

    try:
        code, ban = await ask("POST", "/admin/bans/203.0.113.5?duration=60&reason=abuse")
        assert code == 200 and (ban["host"], ban["reason"]) == ("203.0.113.5", "abuse")
        assert ban["actor"] == "api@127.0.0.1" and ban["until"] == ban["since"] + 60
        assert guard.refusal("203.0.113.5") is not None
        code, listed = await ask("GET", "/admin/bans")
        assert code == 200 and [b["host"] for b in listed["bans"]] == ["203.0.113.5"]
        code, removed = await ask("DELETE", "/admin/bans/203.0.113.5")
        assert code == 200 and removed["removed"]["host"] == "203.0.113.5"
        assert guard.refusal("203.0.113.5") is None
        assert (await ask("DELETE", "/admin/bans/203.0.113.5"))[1] == {"removed": None}
        code, error = await ask("POST", "/admin/bans/not-an-ip")
        assert code == 400 and error["error"]["message"].startswith("host:")
        code, error = await ask("POST", "/admin/bans/2001:db8::1?duration=0")
        assert code == 400 and error["error"]["message"].startswith("duration:")
        # Without a token on a node with auth: refused, and the refusal is audited too.
        code, error = await ask("GET", "/admin/bans", "auth")
        assert code == 401
    finally:
        for port in ports.values():
            await port.stopListening()
    lines = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert [(e["actor"], e["action"], e["target"], e["result"]) for e in lines] == [
        ("api@127.0.0.1", "ban.add", "203.0.113.5", "ok"),
        ("api@127.0.0.1", "api.addBan", "/api/v1/admin/bans/203.0.113.5", "ok"),
        ("api@127.0.0.1", "api.listBans", "/api/v1/admin/bans", "ok"),
        ("api@127.0.0.1", "ban.remove", "203.0.113.5", "ok"),
        ("api@127.0.0.1", "api.removeBan", "/api/v1/admin/bans/203.0.113.5", "ok"),
        ("api@127.0.0.1", "ban.remove", "203.0.113.5", "not banned"),
        ("api@127.0.0.1", "api.removeBan", "/api/v1/admin/bans/203.0.113.5", "ok"),
        ("api@127.0.0.1", "api.listBans", "/api/v1/admin/bans", "refused"),
    ]
    assert lines[1]["detail"]["params"] == {
        "host": "203.0.113.5",
        "duration": 60,
        "reason": "abuse",
    }
