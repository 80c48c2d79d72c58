"""A chain double for the block tracker: a best chain that can be extended and reorganized.

It answers ``get_block_hash`` and ``get_block_header`` the way bitcoind does: error -8
for a height above the tip, error -5 for an unknown hash, ``confirmations: -1`` for a
block on a stale branch.
"""

from __future__ import annotations

import hashlib
from typing import Any


class FakeRpcError(Exception):
    """Shaped like the node client's RpcError: a code and a message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def block_hash(label: str) -> str:
    """A deterministic 64-hex block hash for a label."""
    return hashlib.sha256(label.encode()).hexdigest()


class FakeChain:
    """Best chain as a list of display hashes (index = height); stale blocks remembered."""

    def __init__(self, length: int = 1) -> None:
        self.best: list[str] = [block_hash(f"genesis-{n}") for n in range(length)]
        self.stale: set[str] = set()
        self.calls = 0
        self.down = False

    @property
    def tip(self) -> int:
        return len(self.best) - 1

    def extend(self, count: int, label: str = "main") -> list[str]:
        added = [block_hash(f"{label}-{len(self.best) + n}") for n in range(count)]
        self.best.extend(added)
        return added

    def add(self, hash_hex: str) -> int:
        self.best.append(hash_hex)
        return self.tip

    def reorg(self, from_height: int, count: int, label: str) -> None:
        """Replace the chain from ``from_height`` with ``count`` blocks of another branch."""
        self.stale.update(self.best[from_height:])
        del self.best[from_height:]
        self.extend(count, label)

    async def get_block_hash(self, height: int) -> str:
        self._call()
        if not 0 <= height <= self.tip:
            raise FakeRpcError(-8, "Block height out of range")
        return self.best[height]

    async def get_block_header(self, hash_hex: str) -> dict[str, Any]:
        self._call()
        if hash_hex in self.best:
            height = self.best.index(hash_hex)
            return {"hash": hash_hex, "height": height, "confirmations": self.tip - height + 1}
        if hash_hex in self.stale:
            return {"hash": hash_hex, "confirmations": -1}
        raise FakeRpcError(-5, "Block not found")

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionRefusedError("node down")
