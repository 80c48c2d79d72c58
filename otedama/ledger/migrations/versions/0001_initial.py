"""The initial ledger schema: shares, share batches, blocks, journal, payouts.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("difficulty", sa.Float(), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("share_hash", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_shares"),
    )
    op.create_index("ix_shares_created_at", "shares", ["created_at"])
    op.create_index("ix_shares_address_created_at", "shares", ["address", "created_at"])

    op.create_table(
        "share_batches",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_share_batches"),
    )

    op.create_table(
        "blocks",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("finder_address", sa.Text(), nullable=False),
        sa.Column("finder_worker", sa.Text(), nullable=False),
        sa.Column("reward", sa.BigInteger(), nullable=False),
        sa.Column("scheme", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("confirmations", sa.Integer(), nullable=False),
        sa.Column("found_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_blocks"),
        sa.UniqueConstraint("hash", name="uq_blocks_hash"),
    )
    op.create_index("ix_blocks_status", "blocks", ["status"])
    op.create_index("ix_blocks_found_at", "blocks", ["found_at"])

    op.create_table(
        "payout_batches",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("txid", sa.Text(), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_payout_batches"),
        sa.UniqueConstraint("comment", name="uq_payout_batches_comment"),
    )
    op.create_index("ix_payout_batches_state", "payout_batches", ["state"])

    op.create_table(
        "payout_items",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("batch_id", Id, nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_payout_items"),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["payout_batches.id"], name="fk_payout_items_batch_id_payout_batches"
        ),
    )
    op.create_index("ix_payout_items_batch_id", "payout_items", ["batch_id"])

    op.create_table(
        "journal",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("block_id", Id, nullable=True),
        sa.Column("batch_id", Id, nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_journal"),
        sa.ForeignKeyConstraint(["block_id"], ["blocks.id"], name="fk_journal_block_id_blocks"),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["payout_batches.id"], name="fk_journal_batch_id_payout_batches"
        ),
    )
    op.create_index("ix_journal_address", "journal", ["address"])
    op.create_index("ix_journal_block_id", "journal", ["block_id"])
    op.create_index("ix_journal_batch_id", "journal", ["batch_id"])


def downgrade() -> None:
    op.drop_table("journal")
    op.drop_table("payout_items")
    op.drop_table("payout_batches")
    op.drop_table("blocks")
    op.drop_table("share_batches")
    op.drop_table("shares")
