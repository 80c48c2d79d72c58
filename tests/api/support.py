"""Helpers for the API's in-process tests: a migrated SQLite ledger, a config, the site."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from twisted.internet import task

from otedama.api.resource import ApiPolicy
from otedama.api.service import ApiParts, build_api
from otedama.config import Config, load_config
from otedama.ledger import db
from otedama.pool.core import PoolCore
from otedama.pool.ports import RewardScheme, SubmitOutcome, SubmitResult
from tests.pool.support import NETWORK, POOL, ScriptedSubmitter

T = TypeVar("T")


class SyncStore:
    """The ledger store's ``run`` on a real SQLite engine, answered at once (tests only)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def run(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.begin() as connection:
            return fn(connection)


def migrated_engine(tmp_path: Path) -> Engine:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}", pool_size=1)
    with engine.begin() as connection:
        db.upgrade(connection)
    return engine


def devnet_config(tmp_path: Path, extra: str = "") -> Config:
    path = tmp_path / "otedama.yaml"
    path.write_text(
        f"""
app:
  data_dir: {tmp_path / "data"}
chain:
  network: devnet
  backend: devnet
pool:
  wallet_address: {POOL}
stratum:
  address: 0.0.0.0:3333
database:
  url: sqlite:///{tmp_path / "ledger.sqlite"}
{extra}
""",
        encoding="utf-8",
    )
    return load_config(path)


def site(
    tmp_path: Path,
    policy: ApiPolicy,
    clock: task.Clock | None = None,
    store: SyncStore | None = None,
    **parts: Any,
) -> tuple[ApiParts, SyncStore, task.Clock, PoolCore]:
    """The API over a migrated SQLite ledger; ``parts`` go to ``build_api`` (payouts, …)."""
    clock = clock or task.Clock()
    clock.advance(1_000_000)
    store = store or SyncStore(migrated_engine(tmp_path))
    core = pool_core(clock)
    api = build_api(devnet_config(tmp_path), clock, store, core, policy=policy, **parts)
    return api, store, clock, core


async def body(response: Any) -> Any:
    import treq

    return await treq.json_content(response)


def pool_core(clock: Any) -> PoolCore:
    """A PPLNS pool core whose block submissions the chain accepts."""
    return PoolCore(
        NETWORK,
        POOL,
        RewardScheme.PPLNS,
        100,
        ScriptedSubmitter(SubmitResult(SubmitOutcome.ACCEPTED)),
        clock=clock,
    )
