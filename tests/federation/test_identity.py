"""The node key: created once with mode 0600, reused, refused when others can read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from twisted.python import usage

from otedama.config import load_config, refused_start
from otedama.federation.identity import (
    KEY_FILE,
    Identity,
    IdentityError,
    key_file_problem,
    load_or_create,
    node_id_of,
    verify_signature,
)
from tests.conftest import ROOT


def test_first_start_creates_a_key_readable_only_by_its_owner(tmp_path: Path) -> None:
    identity = load_or_create(tmp_path / "data", "alpha")
    path = tmp_path / "data" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert identity.label == "alpha"
    assert len(identity.public_key) == 32
    assert identity.node_id == node_id_of(identity.public_key)
    assert len(identity.node_id) == 20


def test_the_key_survives_a_restart_and_deleting_it_makes_a_new_node(tmp_path: Path) -> None:
    first = load_or_create(tmp_path)
    again = load_or_create(tmp_path, "relabelled")
    assert again.public_key == first.public_key and again.node_id == first.node_id
    (tmp_path / KEY_FILE).unlink()
    fresh = load_or_create(tmp_path)
    assert fresh.public_key != first.public_key


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_key_others_can_read_is_refused_naming_the_file(tmp_path: Path, mode: int) -> None:
    load_or_create(tmp_path)
    path = tmp_path / KEY_FILE
    os.chmod(path, mode)
    with pytest.raises(IdentityError) as caught:
        load_or_create(tmp_path)
    assert str(path) in str(caught.value)
    assert f"chmod 600 {path}" in str(caught.value)


def test_a_damaged_key_file_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key")
    os.close(fd)
    with pytest.raises(IdentityError, match="not an Otedama key file"):
        load_or_create(tmp_path)
    assert path.read_bytes() == b"not a key"


def test_signatures_verify_only_for_the_signed_bytes_and_key() -> None:
    one, other = Identity.generate(), Identity.generate()
    signature = one.sign(b"message")
    assert verify_signature(one.public_key, b"message", signature)
    assert not verify_signature(one.public_key, b"messagf", signature)
    assert not verify_signature(other.public_key, b"message", signature)
    assert not verify_signature(one.public_key, b"message", signature[:-1])
    assert not verify_signature(b"\x00" * 31, b"message", signature)


def federation_config(data_dir: Path, enabled: bool = True) -> Path:
    """The embedded default with the federation switched on (or not) and ``data_dir``."""
    text = (ROOT / "etc" / "otedama.yaml").read_text(encoding="utf-8")
    text = text.replace("data_dir: ./data", f"data_dir: {data_dir}")
    assert f"data_dir: {data_dir}" in text
    path = data_dir.parent / "otedama.yaml"
    path.write_text(f"{text}\nfederation:\n  enabled: {str(enabled).lower()}\n", "utf-8")
    return path


def test_a_key_others_can_read_refuses_the_start_in_one_line_naming_the_fix(
    tmp_path: Path,
) -> None:
    from otedama.tap import Options

    data = tmp_path / "data"
    load_or_create(data)
    key = data / KEY_FILE
    os.chmod(key, 0o644)
    config = load_config(federation_config(data), env={})
    assert refused_start(config) == [
        f"federation.enabled: federation key {key} is readable by group or others (mode "
        f"0644); whoever reads it can speak for this node. Run: chmod 600 {key}"
    ]
    with pytest.raises(usage.UsageError) as info:
        Options().parseOptions(["--config", str(federation_config(data))])
    assert "refusing to start" in str(info.value) and f"chmod 600 {key}" in str(info.value)
    # With the federation off the key is not the node's business.
    assert refused_start(load_config(federation_config(data, enabled=False), env={})) == []


def test_a_missing_or_private_key_lets_the_node_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = load_config(federation_config(data), env={})
    assert key_file_problem(data) is None and refused_start(config) == []
    load_or_create(data)
    assert key_file_problem(data) is None and refused_start(config) == []


def test_a_damaged_key_refuses_the_start_and_stays_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    fd = os.open(data / KEY_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key")
    os.close(fd)
    problem = key_file_problem(data)
    assert problem is not None and "not an Otedama key file" in problem
    assert (data / KEY_FILE).read_bytes() == b"not a key"
