"""Firewall lists: IPs and CIDR blocks, IPv4 and IPv6, whitelist over blacklist."""

from __future__ import annotations

import pytest

from otedama.ops.firewall import AddressList, Firewall, FirewallError, parse_host


def test_single_addresses_and_blocks_of_both_families_match() -> None:
    lst = AddressList(["203.0.113.7", "198.51.100.0/24", "2001:db8::/32", "::1"])
    assert lst.contains(parse_host("203.0.113.7"))
    assert not lst.contains(parse_host("203.0.113.8"))
    assert lst.contains(parse_host("198.51.100.255"))
    assert not lst.contains(parse_host("198.51.101.0"))
    assert lst.contains(parse_host("2001:db8:1234::5"))
    assert not lst.contains(parse_host("2001:db9::1"))
    assert lst.contains(parse_host("::1"))


def test_ipv4_mapped_ipv6_peers_match_their_ipv4_entry() -> None:
    lst = AddressList(["192.0.2.0/24"])
    assert lst.contains(parse_host("::ffff:192.0.2.9"))
    mapped = AddressList(["::ffff:10.0.0.0/104"])
    assert mapped.contains(parse_host("10.1.2.3"))


def test_a_non_ip_peer_matches_nothing() -> None:
    assert parse_host("unix-socket") is None
    assert not AddressList(["0.0.0.0/0"]).contains(parse_host("unix-socket"))


def test_a_bad_entry_is_rejected_with_its_list_and_value() -> None:
    with pytest.raises(FirewallError, match=r"security\.firewall\.blacklist: 'example\.com'"):
        Firewall.from_lists([], ["example.com"])


def test_whitelist_wins_over_blacklist() -> None:
    firewall = Firewall.from_lists(["10.0.0.5"], ["10.0.0.0/8"])
    assert not firewall.blacklisted(parse_host("10.0.0.5"))
    assert firewall.whitelisted(parse_host("10.0.0.5"))
    assert firewall.blacklisted(parse_host("10.9.9.9"))


def test_lookup_cost_depends_on_prefix_lengths_not_list_length() -> None:
    """Ten thousand single addresses compile into one set: one mask to try."""
    lst = AddressList([f"10.{i // 256}.{i % 256}.1" for i in range(10000)])
    assert len(lst._masks) == 1
    assert lst.contains(parse_host("10.39.15.1"))
    assert not lst.contains(parse_host("10.39.15.2"))
