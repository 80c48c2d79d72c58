"""The devnet's data directory: append-only block file, atomic JSON documents, lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from otedama.node.devnet_store import DevnetStore, StoreError


def opened(path: Path) -> DevnetStore:
    store = DevnetStore(path)
    store.open()
    return store


def test_blocks_come_back_in_the_order_they_were_appended(tmp_path: Path) -> None:
    store = opened(tmp_path)
    for raw in (b"one", b"two" * 100, b"three"):
        store.append_block(raw)
    store.close()
    assert list(opened(tmp_path).read_blocks()) == [b"one", b"two" * 100, b"three"]


def test_a_record_torn_by_a_crash_is_cut_off_and_appending_continues(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append_block(b"kept")
    store.append_block(b"torn block")
    store.close()
    size = store.blocks_path.stat().st_size
    with open(store.blocks_path, "r+b") as f:
        f.truncate(size - 3)
    store = opened(tmp_path)
    assert list(store.read_blocks()) == [b"kept"]
    store.append_block(b"next")
    store.close()
    assert list(opened(tmp_path).read_blocks()) == [b"kept", b"next"]


def test_damage_before_the_end_stops_the_start_with_the_offset(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.append_block(b"first")
    store.append_block(b"second")
    store.close()
    data = bytearray(store.blocks_path.read_bytes())
    data[12] ^= 0xFF  # first byte of the first block
    store.blocks_path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"damaged at offset 0 \(checksum mismatch"):
        list(opened(tmp_path).read_blocks())


def test_a_second_process_cannot_use_the_same_data_dir(tmp_path: Path) -> None:
    first = opened(tmp_path)
    with pytest.raises(StoreError, match="in use by another devnet"):
        opened(tmp_path)
    first.close()
    opened(tmp_path).close()


def test_json_documents_are_replaced_whole(tmp_path: Path) -> None:
    store = opened(tmp_path)
    assert store.read_json("state.json") is None
    store.write_json("state.json", {"invalidated": ["aa"]})
    store.write_json("state.json", {"invalidated": ["aa", "bb"]})
    assert store.read_json("state.json") == {"invalidated": ["aa", "bb"]}
    assert not (tmp_path / "state.json.tmp").exists()
    (tmp_path / "wallet.json").write_text("{not json")
    with pytest.raises(StoreError, match=r"wallet\.json is not valid JSON"):
        store.read_json("wallet.json")
