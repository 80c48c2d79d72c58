"""Assemble the API site: ``/`` dashboard, ``/api/v1/…`` JSON, docs page and WebSocket.

:func:`build_api` is what ``otedama.tap.build_node`` calls; it returns the ``Site`` to
listen with and the :class:`~otedama.api.views.NodeView` service to run beside it.
"""

from __future__ import annotations

import html
import importlib.resources
import json
from dataclasses import dataclass
from typing import Any, cast

from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.static import File
from twisted.web.websocket import WebSocketResource

from otedama.api.endpoints import (
    ApiContext,
    ApiRegistry,
    PayoutSwitch,
    address_param,
    register_admin_routes,
    register_pool_routes,
)
from otedama.api.events import EventBus, bridge
from otedama.api.resource import ApiPolicy, ApiResource
from otedama.api.routes import PREFIX
from otedama.api.views import NodeView
from otedama.api.ws import TopicSocketFactory, topic_checker


class ApiV1(Resource):
    """``/api/v1``: ``ws`` and ``docs`` are their own resources; the rest is the API."""

    def __init__(self, api: ApiResource, ws: Resource, docs: Resource) -> None:
        super().__init__()
        self.api = api
        self.ws = ws
        self.docs = docs

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"ws" and not request.postpath:
            return self.ws
        if path == b"docs" and not request.postpath:
            return self.docs
        return self.api

    def render(self, request: Request) -> bytes | int:
        return self.api.render(request)


class GatedWebSocket(Resource):
    """``/api/v1/ws``: the per-IP rate limit and the open-socket bound, then the upgrade."""

    isLeaf = True

    def __init__(self, api: ApiResource, factory: TopicSocketFactory) -> None:
        super().__init__()
        self.api = api
        self.factory = factory
        self.ws = WebSocketResource(factory)

    def render_GET(self, request: Request) -> bytes | int:
        refused = self.api.refuse_websocket(request, self.factory.full)
        if refused is not None:
            return refused
        return self.ws.render_GET(request)


class DocsPage(Resource):
    """A human page listing every route of the registry (the document's twin view)."""

    isLeaf = True

    def __init__(self, registry: ApiRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        rows = []
        for route in self.registry.routes:
            params = "".join(
                f"<li><code>{html.escape(p.name)}</code> ({p.where}) "
                f"<code>{html.escape(json.dumps(dict(p.schema)))}</code>: "
                f"{html.escape(p.description)}</li>"
                for p in route.params
            )
            admin = " <strong>admin: bearer token</strong>" if route.admin else ""
            rows.append(
                f"<section><h2><code>{route.method} {PREFIX}{html.escape(route.path)}</code>"
                f"</h2><p>{html.escape(route.summary)}{admin}</p>"
                f"<ul>{params}</ul></section>"
            )
        page = (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            "<title>Otedama API</title><link rel=stylesheet href=/style.css></head>"
            "<body><main><h1>Otedama API v1</h1>"
            f'<p>Machine-readable: <a href="{PREFIX}/openapi.json">openapi.json</a> '
            f"(OpenAPI 3.1). Live events: WebSocket <code>{PREFIX}/ws</code>.</p>"
            + "".join(rows)
            + "</main></body></html>"
        )
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return page.encode()


class Static(File):
    """The dashboard's files; folders are not listed."""

    def directoryListing(self) -> Resource:
        return cast(Resource, notFound())


def dashboard_dir() -> str:
    return str(importlib.resources.files("otedama.api") / "dashboard")


@dataclass
class ApiParts:
    site: Site
    view: NodeView
    registry: ApiRegistry
    bus: EventBus
    api: ApiResource


def build_api(
    config: Any,
    reactor: Any,
    store: Any,
    core: Any,
    *,
    health: Any = None,
    payouts: Any = None,
    registry: ApiRegistry | None = None,
    policy: ApiPolicy | None = None,
    view_interval: float | None = None,
    metrics: Any = None,
    shared: Any = None,
    guard: Any = None,
    audit: Any = None,
) -> ApiParts:
    """The API's site and its read-model service, from the config and the node's parts.

    ``metrics`` (a :class:`~otedama.ops.metrics.NodeMetrics`) counts every answer by
    route pattern and status, with its latency. ``shared`` (the node's
    :class:`~otedama.ops.redis.SharedState`) carries ``blocks`` events between nodes, and
    with Redis configured holds the rate limits, so every node behind one dashboard
    shares them. ``guard`` (the node's :class:`~otedama.ops.guard.Guard`) serves the
    admin ban endpoints; ``audit`` (its :class:`~otedama.ops.audit.AuditLog`) gets a line
    for every admin call.
    """
    bus = EventBus()
    view = (
        NodeView(store, core, bus, reactor)
        if view_interval is None
        else NodeView(store, core, bus, reactor, view_interval)
    )
    view.setName("api-view")
    if core is not None:
        core.on_block(view.on_block)
    network = config.chain.network
    context = ApiContext(
        view=view,
        store=store,
        network=network,
        config=config,
        health=health,
        payouts=None if payouts is None else PayoutSwitch(payouts),
        started_at=reactor.seconds(),
        guard=guard,
    )
    registry = registry if registry is not None else ApiRegistry()
    register_pool_routes(registry, context)
    register_admin_routes(registry, context)
    if policy is None:
        policy = ApiPolicy(
            auth_enabled=config.api.auth.enabled,
            rate_limiting=config.api.auth.rate_limiting,
            cors_origins=tuple(config.api.cors_origins),
            cache_ttl=config.api.cache_ttl,
        )
    limits = shared.limits if shared is not None and shared.target is not None else None
    api = ApiResource(registry, store, reactor, policy, limits, audit)
    if shared is not None:
        bridge(bus, shared.events, shared.node_id)
    if metrics is not None:
        api.observers.append(
            lambda _operation, pattern, status, seconds: metrics.observe_api(
                pattern, status, seconds
            )
        )
    check_address = address_param(network).check
    assert check_address is not None
    ws = GatedWebSocket(api, TopicSocketFactory(bus, topic_checker(check_address)))
    root = Static(dashboard_dir())
    v1 = ApiV1(api, ws, DocsPage(registry))
    api_dir: Any = Resource()
    api_dir.putChild(b"v1", v1)
    cast(Any, root).putChild(b"api", api_dir)
    site = Site(root)
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]
    return ApiParts(site, view, registry, bus, api)
