"""Firewall lists: ``security.firewall.whitelist`` and ``blacklist`` as IPs or CIDR blocks.

Pure and precompiled: every entry becomes an ``ip_network``; single addresses go into a
set (one hash lookup), blocks are grouped by prefix length, so a lookup is one masked
set lookup per distinct prefix length (at most 33 for IPv4, 129 for IPv6, in practice a
handful) however long the lists are. IPv4-mapped IPv6 peers (``::ffff:192.0.2.1``, what a
dual-stack listener reports) are matched as their IPv4 address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["AddressList", "Firewall", "FirewallError", "parse_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FirewallError(ValueError):
    """A list entry that is neither an IP address nor a CIDR block."""


def parse_host(host: str) -> IPAddress | None:
    """The peer's address (IPv4-mapped IPv6 unwrapped), or None for a non-IP peer."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class AddressList:
    """A set of IPs and CIDR blocks with a lookup that does not grow with the list."""

    def __init__(self, entries: Iterable[str], where: str = "list") -> None:
        self.entries: tuple[str, ...] = tuple(entries)
        # (version, prefix length) -> network addresses as ints, masked.
        self._blocks: dict[tuple[int, int], set[int]] = {}
        self._masks: list[tuple[int, int, int]] = []
        for entry in self.entries:
            try:
                network = ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise FirewallError(
                    f"{where}: {entry!r} is neither an IP address nor a CIDR block "
                    "(examples: 203.0.113.7, 198.51.100.0/24, 2001:db8::/32)"
                ) from None
            if isinstance(network, ipaddress.IPv6Network):
                mapped = network.network_address.ipv4_mapped
                if mapped is not None and network.prefixlen >= 96:
                    network = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
            key = (network.version, network.prefixlen)
            if key not in self._blocks:
                self._blocks[key] = set()
                bits = 32 if network.version == 4 else 128
                mask = ((1 << network.prefixlen) - 1) << (bits - network.prefixlen)
                self._masks.append((network.version, network.prefixlen, mask))
            self._blocks[key].add(int(network.network_address))
        # Longest prefixes first: single addresses are the common case.
        self._masks.sort(key=lambda item: -item[1])

    def __bool__(self) -> bool:
        return bool(self._masks)

    def __len__(self) -> int:
        return len(self.entries)

    def contains(self, address: IPAddress | None) -> bool:
        """True when ``address`` is in one of the list's addresses or blocks."""
        if address is None or not self._masks:
            return False
        version, value = address.version, int(address)
        blocks = self._blocks
        for net_version, prefix, mask in self._masks:
            if net_version == version and (value & mask) in blocks[(version, prefix)]:
                return True
        return False


@dataclass(frozen=True)
class Firewall:
    """``security.firewall``: whitelisted peers are never limited or banned; blacklisted
    ones are refused at accept. A peer on both lists is whitelisted (an operator's own
    exception to a block). Disabled, both lists are empty."""

    whitelist: AddressList = field(default_factory=lambda: AddressList(()))
    blacklist: AddressList = field(default_factory=lambda: AddressList(()))

    @classmethod
    def from_lists(cls, whitelist: Iterable[str], blacklist: Iterable[str]) -> Firewall:
        """Compile both lists; ``FirewallError`` names the bad entry and its list."""
        return cls(
            AddressList(whitelist, "security.firewall.whitelist"),
            AddressList(blacklist, "security.firewall.blacklist"),
        )

    def whitelisted(self, address: IPAddress | None) -> bool:
        return self.whitelist.contains(address)

    def blacklisted(self, address: IPAddress | None) -> bool:
        return not self.whitelist.contains(address) and self.blacklist.contains(address)
