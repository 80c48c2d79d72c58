"""Declarative config schema machinery: typed fields, parsers, errors with key paths.

`otedama.config` describes the sections with frozen dataclasses whose fields carry a
`Spec` (parser, formatter, whether this version acts on the key, whether it is secret).
`load_section` walks a YAML mapping against a dataclass, collects *every* problem with
its key path, and returns the frozen object; `dump_section` turns it back into plain
YAML-ready data for `otedama config export`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MASK = "********"


class ConfigError(Exception):
    """Every problem found in a config, each naming its key path."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Invalid(ValueError):
    """A single value failed its parser; the message says what was expected."""


@dataclass(frozen=True)
class HostPort:
    """A ``host:port`` listening or connecting address."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def server_endpoint(self) -> str:
        """The Twisted server endpoint string for this address."""
        host = self.host.replace(":", "\\:")
        if self.host in ("", "0.0.0.0", "*"):
            return f"tcp:{self.port}"
        return f"tcp:{self.port}:interface={host}"


@dataclass(frozen=True)
class Spec:
    """How one key is parsed, printed and treated."""

    parse: Callable[[Any], Any]
    dump: Callable[[Any], Any] = lambda value: value
    used: bool = True
    secret: bool = False
    doc: str = ""


def option(
    default: Any,
    parse: Callable[[Any], Any],
    *,
    dump: Callable[[Any], Any] | None = None,
    used: bool = True,
    secret: bool = False,
    doc: str = "",
) -> Any:
    """A dataclass field for a config key."""
    spec = Spec(parse, dump or (lambda value: value), used, secret, doc)
    if isinstance(default, list | dict):
        frozen = tuple(default) if isinstance(default, list) else default
        return field(default=frozen, metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


def section(cls: type[T], *, used: bool = True, doc: str = "") -> Any:
    """A dataclass field holding a nested section (all defaults)."""
    return field(default_factory=cls, metadata={"section": True, "used": used, "doc": doc})


# -- value parsers ---------------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "nothing (null)"
    return repr(value)


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise Invalid(f"expected true/false, got {_describe(value)}")


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected a whole number, got {_describe(value)}")
        if minimum is not None and value < minimum:
            raise Invalid(f"expected a whole number >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise Invalid(f"expected a whole number <= {maximum}, got {value}")
        return value

    return parse


def number(minimum: float | None = None, maximum: float | None = None) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"expected a number, got {_describe(value)}")
        if minimum is not None and value < minimum:
            raise Invalid(f"expected a number >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise Invalid(f"expected a number <= {maximum}, got {value}")
        return float(value)

    return parse


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {_describe(value)}")
    return value


def optional_string(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return string(value)


def choice(*allowed: str, case_insensitive: bool = True) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if isinstance(value, str):
            key = value.lower() if case_insensitive else value
            for candidate in allowed:
                if key == (candidate.lower() if case_insensitive else candidate):
                    return candidate
        raise Invalid(f"expected one of {', '.join(allowed)}, got {_describe(value)}")

    return parse


def string_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Invalid(f"expected a list of strings, got {_describe(value)}")
    return tuple(value)


def any_list(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Invalid(f"expected a list, got {_describe(value)}")
    return tuple(value)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
_UNITS["d"] = Decimal(86400)


def duration(value: Any) -> float:
    """``30s``, ``2h``, ``3600s``, ``500ms`` or bare seconds -> seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise Invalid(f"expected a duration >= 0, got {value}")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            amount, unit = match.groups()
            return float(Decimal(amount) * _UNITS[unit or "s"])
    raise Invalid(f"expected a duration like 30s, 2h, 500ms or seconds, got {_describe(value)}")


def dump_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds}s"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def size(bare_unit: int = 1) -> Callable[[Any], int]:
    """A size: ``100MB``, ``1GiB``, ``512kb``; a bare number counts in ``bare_unit`` bytes.

    Returns bytes.
    """

    def parse(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value * bare_unit
        if isinstance(value, str):
            match = _SIZE.match(value)
            if match:
                amount, unit = match.groups()
                scale = _SIZE_UNITS[unit.lower()] if unit else bare_unit
                return int(Decimal(amount) * scale)
        raise Invalid(f"expected a size like 100MB, 1GiB or a whole number, got {_describe(value)}")

    return parse


def host_port(default_host: str = "0.0.0.0") -> Callable[[Any], HostPort]:
    def parse(value: Any) -> HostPort:
        if isinstance(value, int) and not isinstance(value, bool):
            return HostPort(default_host, _port(value, value))
        if not isinstance(value, str):
            raise Invalid(f"expected host:port, got {_describe(value)}")
        text = value.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise Invalid(f"expected host:port, got {_describe(value)}")
        if not port_text.isdigit():
            raise Invalid(f"expected host:port with a numeric port, got {_describe(value)}")
        return HostPort(host or default_host, _port(int(port_text), value))

    return parse


def _port(number: int, original: Any) -> int:
    if not 0 <= number <= 65535:
        raise Invalid(f"expected a port 0-65535, got {_describe(original)}")
    return number


def port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"expected a port number, got {_describe(value)}")
    return _port(value, value)


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise Invalid(f"expected {what}, got {_describe(value)}")
    try:
        # str() first: YAML floats like 0.001 must not carry binary noise.
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise Invalid(f"expected {what}, got {_describe(value)}") from None
    if not result.is_finite():
        raise Invalid(f"expected {what}, got {_describe(value)}")
    return result


def difficulty(value: Any) -> Fraction:
    """A share or network difficulty; fractions below 1 allowed, must be > 0."""
    result = _decimal(value, "a difficulty (a number > 0, e.g. 1, 0.001)")
    if result <= 0:
        raise Invalid(f"expected a difficulty > 0, got {_describe(value)}")
    return Fraction(result)


def dump_fraction(value: Fraction) -> int | str:
    if value.denominator == 1:
        return int(value)
    decimal = Decimal(value.numerator) / Decimal(value.denominator)
    return format(decimal.normalize(), "f")


def percentage(value: Any) -> Decimal:
    result = _decimal(value, "a percentage between 0 and 100")
    if not 0 <= result <= 100:
        raise Invalid(f"expected a percentage between 0 and 100, got {_describe(value)}")
    return result


SATOSHIS_PER_COIN = 100_000_000


def coin_amount(value: Any) -> int:
    """An amount in coins (``0.001``) -> integer satoshis, exactly."""
    result = _decimal(value, "an amount in coins (e.g. 0.001)")
    if result < 0:
        raise Invalid(f"expected an amount >= 0, got {_describe(value)}")
    sats = result * SATOSHIS_PER_COIN
    if sats != sats.to_integral_value():
        raise Invalid(f"expected at most 8 decimal places, got {_describe(value)}")
    return int(sats)


def dump_coins(sats: int) -> str:
    return format(Decimal(sats) / SATOSHIS_PER_COIN, "f")


def path(value: Any) -> Path:
    return Path(string(value))


def optional_path(value: Any) -> Path | None:
    if value is None or value == "":
        return None
    return path(value)


def dump_path(value: Path | None) -> str | None:
    return None if value is None else str(value)


def dump_str(value: Any) -> Any:
    return None if value is None else str(value)


# -- walking ---------------------------------------------------------------------------


def load_section(
    cls: type[T],
    data: Any,
    where: str,
    problems: list[str],
    unused: list[str],
    *,
    inside_unused: bool = False,
) -> T:
    """Build a frozen ``cls`` from ``data``; problems and unused keys are collected.

    A key counts as unused when its spec says so or it lies in an unused section.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.append(f"{where or 'config'}: expected a mapping of keys, got {_describe(data)}")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, raw in data.items():
        path_ = f"{where}.{key}" if where else str(key)
        target = fields.get(str(key))
        if target is None:
            known = ", ".join(sorted(fields))
            problems.append(f"{path_}: unknown key (known keys here: {known})")
            continue
        if target.metadata.get("section"):
            values[target.name] = load_section(
                target.default_factory,  # type: ignore[arg-type]
                raw,
                path_,
                problems,
                unused,
                inside_unused=inside_unused or not target.metadata.get("used", True),
            )
            continue
        spec: Spec = target.metadata["spec"]
        if raw is None and target.default is None:
            values[target.name] = None
            continue
        try:
            values[target.name] = spec.parse(raw)
        except Invalid as error:
            problems.append(f"{path_}: {error}")
            continue
        except ConfigError as error:
            problems.extend(f"{path_}{p}" if p.startswith("[") else p for p in error.problems)
            continue
        if inside_unused or not spec.used:
            unused.append(path_)
    return cls(**values)


def dump_section(obj: Any, *, sanitize: bool) -> dict[str, Any]:
    """Plain data for YAML; secrets masked when ``sanitize``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("section"):
            out[f.name] = dump_section(value, sanitize=sanitize)
            continue
        spec: Spec | None = f.metadata.get("spec")
        if spec is None:
            continue
        if sanitize and spec.secret and value:
            out[f.name] = MASK
            continue
        dumped = spec.dump(value)
        if isinstance(dumped, list | tuple):
            dumped = [_dump_item(item, sanitize) for item in dumped]
        out[f.name] = dumped
    return out


def _dump_item(item: Any, sanitize: bool) -> Any:
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dump_section(item, sanitize=sanitize)
    return item


def iter_keys(cls: type[Any], where: str = "") -> list[tuple[str, Any, Spec | None, str]]:
    """Every key with its default and spec, for the configuration reference."""
    rows: list[tuple[str, Any, Spec | None, str]] = []
    for f in dataclasses.fields(cls):
        path_ = f"{where}.{f.name}" if where else f.name
        if not f.metadata:
            continue
        if f.metadata.get("section"):
            rows.append((path_, None, None, f.metadata.get("doc", "")))
            rows.extend(iter_keys(f.default_factory, path_))  # type: ignore[arg-type]
        else:
            spec = f.metadata["spec"]
            rows.append((path_, f.default, spec, spec.doc))
    return rows
