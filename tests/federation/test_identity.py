"""The node key: created once with mode 0600, reused, refused when others can read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from otedama.federation.identity import (
    KEY_FILE,
    Identity,
    IdentityError,
    load_or_create,
    node_id_of,
    verify_signature,
)


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
