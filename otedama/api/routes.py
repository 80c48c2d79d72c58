"""The API's declarative route table, and the OpenAPI document generated from it.

A :class:`Route` names its method, path, parameters (each with a JSON schema) and the
schema of its answer. The dispatcher (:mod:`otedama.api.resource`) parses and checks
parameters with these very definitions, and :func:`openapi` turns the same table into
the document served at ``/api/v1/openapi.json``: there is no second copy to drift.

Parameter checks are pure: :func:`parse_params` maps the raw strings of a request to
typed values or raises :class:`BadParameter` naming the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from otedama import __version__

PREFIX = "/api/v1"
#: The most items one page of a listing holds.
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 25
#: Highest page number accepted (a bound, so OFFSET stays cheap).
MAX_PAGE = 10_000


class BadParameter(ValueError):
    """A parameter failed its schema or check; ``name`` says which."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class Param:
    """One path or query parameter: its JSON schema, and an optional extra check."""

    name: str
    where: str  # "path" or "query"
    schema: Mapping[str, Any]
    description: str
    #: Extra validation beyond the schema (e.g. an address on this network): raises
    #: ``ValueError`` with the reason.
    check: Callable[[Any], None] | None = None

    @property
    def required(self) -> bool:
        return self.where == "path"


@dataclass(frozen=True)
class ApiRequest:
    """What a handler gets: checked parameters and who asked."""

    params: Mapping[str, Any]
    client: str
    #: The host name the client used (for URLs it can reach), without the port.
    host: str = "localhost"
    token_name: str | None = None

    @property
    def actor(self) -> str:
        """Who asked, for the audit log: ``api:TOKEN_NAME@IP`` (``api@IP`` without auth)."""
        who = "api" if self.token_name is None else f"api:{self.token_name}"
        return f"{who}@{self.client}"


Handler = Callable[[ApiRequest], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    """One endpoint: the single definition both the dispatcher and the document use."""

    method: str
    path: str
    operation: str
    summary: str
    response: Mapping[str, Any]
    params: tuple[Param, ...] = ()
    admin: bool = False
    tag: str = "pool"
    #: Also answers 404 (an unknown item), documented as such.
    may_miss: bool = False
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.path.strip("/").split("/")))
        names = {p.name for p in self.params if p.where == "path"}
        placeholders = {s[1:-1] for s in self.segments if s.startswith("{")}
        if names != placeholders:
            raise ValueError(f"{self.path}: path parameters {names} != {placeholders}")

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The path parameters if ``segments`` is this route's path, else None."""
        if len(segments) != len(self.segments):
            return None
        found: dict[str, str] = {}
        for pattern, segment in zip(self.segments, segments, strict=True):
            if pattern.startswith("{"):
                if not segment:
                    return None
                found[pattern[1:-1]] = segment
            elif pattern != segment:
                return None
        return found


def _check_value(param: Param, raw: str) -> Any:
    schema = param.schema
    kind = schema.get("type", "string")
    value: Any
    if kind == "integer":
        if not re.fullmatch(r"-?[0-9]{1,12}", raw):
            raise BadParameter(param.name, f"expected a whole number, got {raw[:40]!r}")
        value = int(raw)
        if "minimum" in schema and value < schema["minimum"]:
            raise BadParameter(param.name, f"must be at least {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            raise BadParameter(param.name, f"must be at most {schema['maximum']}, got {value}")
    else:
        value = raw
        if "maxLength" in schema and len(raw) > schema["maxLength"]:
            raise BadParameter(param.name, f"longer than {schema['maxLength']} characters")
        if "minLength" in schema and len(raw) < schema["minLength"]:
            raise BadParameter(param.name, f"shorter than {schema['minLength']} characters")
        if "enum" in schema and raw not in schema["enum"]:
            allowed = ", ".join(schema["enum"])
            raise BadParameter(param.name, f"expected one of {allowed}, got {raw[:40]!r}")
    if param.check is not None:
        try:
            param.check(value)
        except ValueError as e:
            raise BadParameter(param.name, str(e)) from None
    return value


def parse_params(
    route: Route, path: Mapping[str, str], query: Mapping[bytes, list[bytes]]
) -> dict[str, Any]:
    """Check and convert a request's parameters against the route's definitions."""
    values: dict[str, Any] = {}
    for param in route.params:
        if param.where == "path":
            raw: str | None = path[param.name]
        else:
            given = query.get(param.name.encode())
            if given and len(given) > 1:
                raise BadParameter(param.name, "given more than once")
            try:
                raw = given[0].decode("utf-8") if given else None
            except UnicodeDecodeError:
                raise BadParameter(param.name, "is not UTF-8") from None
        if raw is None:
            values[param.name] = param.schema.get("default")
            continue
        values[param.name] = _check_value(param, raw)
    return values


# -- shared schemas ---------------------------------------------------------------------

NUMBER = {"type": "number"}
BOOLEAN = {"type": "boolean"}
INTEGER = {"type": "integer"}
STRING = {"type": "string"}
NULLABLE_NUMBER = {"type": ["number", "null"]}
NULLABLE_STRING = {"type": ["string", "null"]}


def obj(properties: Mapping[str, Any], required: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A JSON object schema whose listed properties are all required by default."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(properties if required is None else required),
    }


def array(items: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": dict(items)}


OBJ_ANY: Mapping[str, Any] = {"type": "object"}
ERROR_SCHEMA = obj({"error": obj({"status": INTEGER, "message": STRING})})


def page_params() -> tuple[Param, ...]:
    return (
        Param(
            "page",
            "query",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
            "Page number, from 1.",
        ),
        Param(
            "per_page",
            "query",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_PAGE_SIZE,
                "default": DEFAULT_PAGE_SIZE,
            },
            f"Items per page (at most {MAX_PAGE_SIZE}).",
        ),
    )


def paged(item: Mapping[str, Any]) -> dict[str, Any]:
    """A page of ``item``s with its position."""
    return obj({"page": INTEGER, "per_page": INTEGER, "total": INTEGER, "items": array(item)})


# -- the document -----------------------------------------------------------------------


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi(routes: list[Route], title: str = "Otedama pool API") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        responses: dict[str, Any] = {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": dict(route.response)}},
            },
            "400": _error("A bad parameter (named in the message)."),
            "429": _error("Too many requests; see Retry-After."),
        }
        if route.may_miss:
            responses["404"] = _error("Not found.")
        if route.admin:
            responses["401"] = _error("Missing, unknown, expired or revoked bearer token.")
            responses["403"] = _error("Admin endpoints without auth answer only localhost.")
            responses["409"] = _error("The action does not apply now.")
        operation: dict[str, Any] = {
            "operationId": route.operation,
            "summary": route.summary,
            "tags": [route.tag],
            "parameters": [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required,
                    "description": p.description,
                    "schema": dict(p.schema),
                }
                for p in route.params
            ],
            "responses": responses,
        }
        if route.admin:
            operation["security"] = [{"bearer": []}]
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
