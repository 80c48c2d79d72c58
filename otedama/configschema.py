"""Declarative config schema machinery: typed fields, parsers, errors with key paths.

`otedama.config` describes the sections with frozen dataclasses whose fields carry a
`Spec` (parser, formatter, whether this version acts on the key, whether it is secret).
`load_section` walks a YAML mapping against a dataclass, collects *every* problem with
its key path, and returns the frozen object; `dump_section` turns it back into plain
YAML-ready data for `otedama config export`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

from otedama.chain.rpcjson import AmountError, btc_to_sats

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


#: Longest value echoed whole in an error message.
_ECHO = 60


def _describe(value: Any) -> str:
    """A value as an error message shows it; huge values are summarised, not echoed."""
    if isinstance(value, str):
        if len(value) > _ECHO:
            return f'"{value[:_ECHO]}…" ({len(value)} characters)'
        return f'"{value}"'
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a whole number of about {int(value.bit_length() * 0.30103) + 1} digits"
    if value is None:
        return "nothing (null)"
    return repr(value)


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise Invalid(f"expected true/false, got {_describe(value)}")


#: No config number needs more: whole numbers fit in a signed 64-bit column.
MAX_INTEGER = 2**63 - 1
#: Longest text accepted for a number (``0.00000546``, ``1099511627776``, ``1.5e-3``).
MAX_NUMBER_TEXT = 40
#: Decimal exponents a config number may have: difficulties reach about 10**67 (the
#: sha256d limit), nothing useful is below 10**-30. Bounding the exponent before a value
#: becomes a Fraction or an int keeps ``1e999999999`` from building a huge integer.
MAX_EXPONENT = 80
MIN_EXPONENT = -30
#: Longest duration accepted (ten years): a timer beyond it is a typo.
MAX_DURATION = 10 * 365 * 86400.0


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected a whole number, got {_describe(value)}")
        if abs(value) > MAX_INTEGER:
            raise Invalid(f"expected a whole number <= {MAX_INTEGER}, got {_describe(value)}")
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
        if isinstance(value, int) and abs(value) > MAX_INTEGER:
            raise Invalid(f"expected a number <= {MAX_INTEGER}, got {_describe(value)}")
        if not math.isfinite(value):
            raise Invalid(f"expected a finite number, got {value}")
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
    """``30s``, ``2h``, ``3600s``, ``500ms`` or bare seconds -> seconds (at most ten years)."""
    seconds: Decimal | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid(f"expected a finite duration, got {value}")
        if value < 0:
            raise Invalid(f"expected a duration >= 0, got {_describe(value)}")
        seconds = Decimal(value) if abs(value) <= MAX_INTEGER else None
    elif isinstance(value, str) and len(value) <= MAX_NUMBER_TEXT:
        match = _DURATION.match(value)
        if match:
            amount, unit = match.groups()
            seconds = Decimal(amount) * _UNITS[unit or "s"]
    if seconds is None and not isinstance(value, int | float):
        raise Invalid(f"expected a duration like 30s, 2h, 500ms or seconds, got {_describe(value)}")
    if seconds is None or seconds > Decimal(MAX_DURATION):
        raise Invalid(f"expected a duration of at most 3650d, got {_describe(value)}")
    return float(seconds)


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
        result: int | None = None
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INTEGER:
            result = value * bare_unit
        elif isinstance(value, str) and len(value) <= MAX_NUMBER_TEXT:
            match = _SIZE.match(value)
            if match:
                amount, unit = match.groups()
                scale = _SIZE_UNITS[unit.lower()] if unit else bare_unit
                if Decimal(amount).adjusted() <= MAX_EXPONENT:
                    result = int(Decimal(amount) * scale)
        if result is None:
            raise Invalid(
                f"expected a size like 100MB, 1GiB or a whole number, got {_describe(value)}"
            )
        if result > MAX_INTEGER:
            raise Invalid(f"expected a size of at most {MAX_INTEGER} bytes, got {_describe(value)}")
        return result

    return parse


def dump_size(value: int) -> str:
    """Bytes as ``size`` reads them back: ``1MiB``, ``4KiB``, else ``1500B``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale and value % scale == 0:
            return f"{value // scale}{unit}"
    return f"{value}B"


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
    """A config number as an exact Decimal, bounded in length and magnitude first.

    Decimal arithmetic on the result stays cheap, and turning it into a Fraction or an
    int cannot build a huge integer (``1e999999999`` is refused here, at once).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise Invalid(f"expected {what}, got {_describe(value)}")
    if isinstance(value, int) and abs(value) > MAX_INTEGER:
        raise Invalid(f"expected {what}, got {_describe(value)} (too large)")
    # str() first: YAML floats like 0.001 must not carry binary noise.
    text = str(value).strip()
    if len(text) > MAX_NUMBER_TEXT:
        raise Invalid(
            f"expected {what}, got {_describe(value)} (at most {MAX_NUMBER_TEXT} characters)"
        )
    try:
        result = Decimal(text)
    except InvalidOperation:
        raise Invalid(f"expected {what}, got {_describe(value)}") from None
    if not result.is_finite():
        raise Invalid(f"expected {what}, got {_describe(value)}")
    if result and not MIN_EXPONENT <= result.adjusted() <= MAX_EXPONENT:
        raise Invalid(
            f"expected {what}, got {_describe(value)} "
            f"(its size must lie between 1e{MIN_EXPONENT} and 1e{MAX_EXPONENT})"
        )
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
#: Bitcoin's supply cap in coins: no amount in a config can be larger.
MAX_COINS = 21_000_000


def coin_amount(value: Any) -> int:
    """An amount in coins (``0.001``) -> integer satoshis, exactly."""
    result = _decimal(value, "an amount in coins (e.g. 0.001)")
    if result < 0:
        raise Invalid(f"expected an amount >= 0, got {_describe(value)}")
    if result > MAX_COINS:
        raise Invalid(f"expected an amount of at most {MAX_COINS} coins, got {_describe(value)}")
    try:
        return btc_to_sats(result)
    except AmountError:
        raise Invalid(f"expected at most 8 decimal places, got {_describe(value)}") from None


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
