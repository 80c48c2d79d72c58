"""SIGHUP for the pool's money settings: the fee, the fee address, the payout schedule.

:class:`PoolReload` is a reload hook (``hook(old, new)``, see
:class:`otedama.ops.lifecycle.NodeService`). It applies the keys in :data:`LIVE_KEYS`
to the running pool core, its ledger adapter and the payout processor, and logs each
change by key. What it does not apply (the pool's wallet address, the reward system)
the node logs as taking effect after a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from otedama.ledger.payouts import PayoutProcessor
from otedama.pool.core import LedgerLink, PoolCore

if TYPE_CHECKING:
    from otedama.config import Config

#: The pool keys a reload applies at once.
LIVE_KEYS = (
    "pool.fee_percentage",
    "pool.fee_address",
    "pool.minimum_payout",
    "pool.payout_interval",
)


class PoolReload:
    """Applies reloaded pool settings to the running core, ledger adapter and payouts."""

    log = Logger()

    def __init__(
        self,
        core: PoolCore,
        link: LedgerLink | None,
        payouts: PayoutProcessor,
        pool_address: str,
    ) -> None:
        self.core = core
        self.link = link
        self.payouts = payouts
        #: The running coinbase address (pool.wallet_address needs a restart).
        self.pool_address = pool_address

    def __call__(self, old: Config, new: Config) -> None:
        fee_address = new.pool.fee_address or self.pool_address
        before = old.pool.fee_address or self.pool_address
        if new.fee_basis_points != old.fee_basis_points or fee_address != before:
            self.core.apply_fee(new.fee_basis_points, fee_address)
            if self.link is not None:
                self.link.apply_fee(new.fee_basis_points, fee_address)
        if (
            new.pool.payout_interval != old.pool.payout_interval
            or new.pool.minimum_payout != old.pool.minimum_payout
        ):
            self.payouts.reschedule(new.pool.payout_interval, new.pool.minimum_payout)
        for key, was, now, effect in (
            (
                "pool.fee_percentage",
                old.pool.fee_percentage,
                new.pool.fee_percentage,
                "blocks recorded and SOLO coinbases built from now on",
            ),
            (
                "pool.fee_address",
                before,
                fee_address,
                "fees of blocks recorded and SOLO coinbases built from now on",
            ),
            (
                "pool.minimum_payout",
                f"{old.pool.minimum_payout} sat",
                f"{new.pool.minimum_payout} sat",
                "the next payout batch",
            ),
            (
                "pool.payout_interval",
                f"{old.pool.payout_interval:g} s",
                f"{new.pool.payout_interval:g} s",
                "the next payout tick is one new interval from now",
            ),
        ):
            if was != now:
                self.log.info(
                    "{key} changed from {old} to {new}; applied live ({effect})",
                    key=key,
                    old=str(was),
                    new=str(now),
                    effect=effect,
                )
