"""Running per-address totals of the PPLNS window (``window_totals``, ``window_state``).

The totals start out covering every share already in the database (``start`` NULL),
summed here from the shares table; the first share batch after the upgrade moves the
window on and subtracts what left it. A difficulty that is not a whole number of 2**-128
leaves the totals marked invalid (blocks are then weighed by the full scan until
``otedama stats --verify-window --rebuild``).

Self-contained: it defines what it creates and sums in plain Python, importing nothing
from the application.

Revision ID: 0004_window_totals
Revises: 0003_federation
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_window_totals"
down_revision: str | None = "0003_federation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The totals' unit: 2**-128 of a difficulty.
_UNITS = 1 << 128


def upgrade() -> None:
    totals = op.create_table(
        "window_totals",
        sa.Column("address", sa.Text(), nullable=False),
        # Units of 2**-128: exact numeric on PostgreSQL, decimal text on SQLite.
        sa.Column("weight", sa.Text().with_variant(sa.Numeric(), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("address", name="pk_window_totals"),
    )
    state = op.create_table(
        "window_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("start", sa.Float(), nullable=True),
        sa.Column("valid", sa.Integer(), nullable=False),
        sa.Column("newest", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_window_state"),
    )
    connection = op.get_bind()
    shares = sa.table(
        "shares", sa.column("address"), sa.column("difficulty"), sa.column("created_at")
    )
    sums: dict[str, int] = {}
    valid = True
    newest = connection.execute(sa.select(sa.func.max(shares.c.created_at))).scalar()
    rows = connection.execute(
        sa.select(shares.c.address, shares.c.difficulty), execution_options={"yield_per": 20_000}
    )
    for address, difficulty in rows:
        numerator, denominator = float(difficulty).as_integer_ratio()
        if _UNITS % denominator:
            valid = False
            break
        sums[address] = sums.get(address, 0) + numerator * (_UNITS // denominator)
    rows.close()
    if valid and sums:
        op.bulk_insert(
            totals,
            [{"address": a, "weight": str(w)} for a, w in sorted(sums.items()) if w],
        )
    op.bulk_insert(
        state,
        [
            {
                "id": 1,
                "start": None,
                "valid": 1 if valid else 0,
                "newest": None if newest is None else float(newest),
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("window_state")
    op.drop_table("window_totals")
