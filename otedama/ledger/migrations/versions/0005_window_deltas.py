"""Per-batch additions to the PPLNS window totals (``window_deltas``).

Share batches no longer update ``window_totals`` and ``window_state`` themselves (one
row every batch wrote, so concurrent batch commits waited for each other): each appends
one ``window_deltas`` row, and a periodic fold adds them to the totals and moves the
window on. The totals of 0004 stay as they are; the table starts empty. On PostgreSQL
``window_totals`` gets a fill factor of 50 (its updates stay on their page).

Revision ID: 0005_window_deltas
Revises: 0004_window_totals
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_window_deltas"
down_revision: str | None = "0004_window_totals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "window_deltas",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("start", sa.Float(), nullable=True),
        sa.Column("newest", sa.Float(), nullable=False),
        sa.Column("oldest", sa.Float(), nullable=True),
        # Arrays on PostgreSQL (summed by the server); JSON and decimal text on SQLite.
        sa.Column(
            "addresses",
            sa.Text().with_variant(postgresql.ARRAY(sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "weights",
            sa.Text().with_variant(postgresql.ARRAY(sa.Numeric()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name="pk_window_deltas"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Folds update the totals several times a second: with half of each page free
        # the updates stay on their page (HOT) and the table a block read scans stays
        # small instead of growing by a dead row per update.
        op.execute("ALTER TABLE window_totals SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE window_totals RESET (fillfactor)")
    # The deltas not yet folded are lost with the table: recount the totals from the
    # shares, as 0004 did, so the older code finds them right.
    connection = op.get_bind()
    op.drop_table("window_deltas")
    state = connection.execute(sa.text("SELECT start, valid FROM window_state WHERE id = 1")).first()
    connection.execute(sa.text("DELETE FROM window_totals"))
    if state is None or not state.valid:
        return
    query = "SELECT address, difficulty FROM shares"
    params = {}
    if state.start is not None:
        query += " WHERE created_at > :start"
        params["start"] = float(state.start)
    units = 1 << 128
    sums: dict[str, int] = {}
    for address, difficulty in connection.execute(sa.text(query), params):
        numerator, denominator = float(difficulty).as_integer_ratio()
        if units % denominator:
            connection.execute(sa.text("UPDATE window_state SET valid = 0 WHERE id = 1"))
            return
        sums[address] = sums.get(address, 0) + numerator * (units // denominator)
    totals = sa.table("window_totals", sa.column("address"), sa.column("weight"))
    rows = [{"address": a, "weight": str(w)} for a, w in sorted(sums.items()) if w]
    if rows:
        op.bulk_insert(totals, rows)
