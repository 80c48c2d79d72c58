"""Hashrate history (per worker and pool, per interval), block effort, and API tokens.

Revision ID: 0002_hashrate_api
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_hashrate_api"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "worker_hashrate",
        sa.Column("bucket", sa.Float(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("shares", sa.Integer(), nullable=False),
        sa.Column("difficulty", sa.Float(), nullable=False),
        sa.Column("first_share_at", sa.Float(), nullable=False),
        sa.Column("last_share_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "address", "worker", name="pk_worker_hashrate"),
    )
    op.create_index(
        "ix_worker_hashrate_address_bucket", "worker_hashrate", ["address", "bucket"]
    )

    op.create_table(
        "pool_hashrate",
        sa.Column("bucket", sa.Float(), nullable=False),
        sa.Column("shares", sa.Integer(), nullable=False),
        sa.Column("difficulty", sa.Float(), nullable=False),
        sa.Column("workers", sa.Integer(), nullable=False),
        sa.Column("miners", sa.Integer(), nullable=False),
        sa.Column("first_share_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name="pk_pool_hashrate"),
    )

    op.create_table(
        "block_effort",
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("network_difficulty", sa.Float(), nullable=False),
        sa.Column("share_difficulty", sa.Float(), nullable=False),
        sa.Column("effort", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("hash", name="pk_block_effort"),
    )

    op.create_table(
        "api_tokens",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_name", "api_tokens", ["name"])


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_table("block_effort")
    op.drop_table("pool_hashrate")
    op.drop_table("worker_hashrate")
