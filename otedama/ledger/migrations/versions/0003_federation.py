"""Federation: peer reputation, the federation window, and income from coinbases.

Revision ID: 0003_federation
Revises: 0002_hashrate_api
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_federation"
down_revision: str | None = "0002_hashrate_api"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "federation_peers",
        sa.Column("peer_key", sa.LargeBinary(), nullable=False),
        sa.Column("good", sa.Float(), nullable=False),
        sa.Column("bad", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("peer_key", name="pk_federation_peers"),
    )
    op.create_table(
        "federation_window",
        sa.Column("share_hash", sa.LargeBinary(), nullable=False),
        sa.Column("node_id", sa.LargeBinary(), nullable=False),
        sa.Column("payout_script", sa.LargeBinary(), nullable=False),
        sa.Column("work", sa.Text(), nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("share_hash", name="pk_federation_window"),
    )
    op.create_index("ix_federation_window_time", "federation_window", ["time"])
    op.create_table(
        "federation_income",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("block_id", Id, nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("finder_node_id", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_federation_income"),
        sa.ForeignKeyConstraint(
            ["block_id"], ["blocks.id"], name="fk_federation_income_block_id_blocks"
        ),
        sa.UniqueConstraint("hash", name="uq_federation_income_hash"),
    )
    op.create_index("ix_federation_income_height", "federation_income", ["height"])


def downgrade() -> None:
    op.drop_table("federation_income")
    op.drop_table("federation_window")
    op.drop_table("federation_peers")
