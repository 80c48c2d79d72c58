"""The federation section of the config: used, off by default, and refused with SOLO."""

from __future__ import annotations

import pytest

from otedama.config import ConfigError, load_config
from tests.conftest import ROOT


def test_the_embedded_default_keeps_the_federation_off_and_the_section_is_used() -> None:
    config = load_config(ROOT / "etc" / "otedama.yaml", env={})
    assert not config.federation.enabled
    production = load_config(ROOT / "etc" / "production.yaml", env={})
    assert production.federation.enabled
    assert production.federation.bootstrap_peers == (
        "peer1.example.com:4444",
        "peer2.example.com:4444",
    )
    assert production.federation.reputation_threshold == 0.5
    assert not any(w.startswith("federation") for w in production.unused_warnings())


def test_a_federation_cannot_pay_solo_miners_in_the_coinbase() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            data={"federation": {"enabled": True}, "pool": {"rewards": {"system": "SOLO"}}},
            env={},
        )
    assert any(p.startswith("federation.enabled: a federation splits") for p in info.value.problems)
