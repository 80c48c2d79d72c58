"""The ledger's tables, as SQLAlchemy Core metadata.

Amounts are signed integer satoshis (``BIGINT``); times are float epoch seconds.
The ``journal`` is append-only: every money movement is a new row, and a balance is
the sum of an address's rows (see :mod:`otedama.ledger.stats`). The Alembic migrations
in ``otedama/ledger/migrations`` create exactly these tables; a change here needs a new
migration.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Text,
)

#: Primary keys: BIGINT on PostgreSQL, INTEGER on SQLite (only ``INTEGER PRIMARY KEY``
#: is an auto-incrementing rowid there).
Id = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Block states.
PENDING = "pending"
CONFIRMED = "confirmed"
ORPHANED = "orphaned"
#: Never in the chain: a solved candidate the daemon refused or never received.
REJECTED = "rejected"
BLOCK_STATES = (PENDING, CONFIRMED, ORPHANED, REJECTED)

# Journal entry kinds.
CREDIT = "credit"
FEE = "fee"
ORPHAN_REVERSAL = "orphan_reversal"
PAYOUT = "payout"
PAYOUT_REVERSAL = "payout_reversal"
JOURNAL_KINDS = (CREDIT, FEE, ORPHAN_REVERSAL, PAYOUT, PAYOUT_REVERSAL)

# Payout batch states.
BATCH_COMMITTED = "committed"
BATCH_SENT = "sent"
BATCH_CONFIRMED = "confirmed"
BATCH_FAILED = "failed"
BATCH_STATES = (BATCH_COMMITTED, BATCH_SENT, BATCH_CONFIRMED, BATCH_FAILED)

shares = Table(
    "shares",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_at", Float, nullable=False),
    Column("address", Text, nullable=False),
    Column("worker", Text, nullable=False),
    # The weight: the share difficulty in force when the share was accepted.
    Column("difficulty", Float, nullable=False),
    Column("job_id", Text, nullable=False),
    Column("height", Integer, nullable=False),
    Column("share_hash", LargeBinary, nullable=True),
    Index(None, "created_at"),
    Index(None, "address", "created_at"),
)

#: One row per share batch written, inserted in the same transaction as its shares.
#: A batch replayed from the spool after a crash is skipped when its key is here,
#: so no share is counted twice.
share_batches = Table(
    "share_batches",
    metadata,
    Column("key", Text, primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("count", Integer, nullable=False),
)

blocks = Table(
    "blocks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("height", Integer, nullable=False),
    # Display (RPC) hex.
    Column("hash", Text, nullable=False, unique=True),
    Column("finder_address", Text, nullable=False),
    Column("finder_worker", Text, nullable=False),
    # Satoshis: the coinbase value that goes to this pool.
    Column("reward", BigInteger, nullable=False),
    Column("scheme", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("confirmations", Integer, nullable=False),
    Column("found_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index(None, "status"),
    Index(None, "found_at"),
)

payout_batches = Table(
    "payout_batches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("state", Text, nullable=False),
    # Carried in the wallet call (e.g. "otedama-payout-<id>") to reconcile after a crash.
    Column("comment", Text, nullable=False, unique=True),
    Column("txid", Text, nullable=True),
    Column("total", BigInteger, nullable=False),
    Column("error", Text, nullable=True),
    Index(None, "state"),
)

payout_items = Table(
    "payout_items",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("batch_id", Id, ForeignKey("payout_batches.id"), nullable=False),
    Column("address", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Index(None, "batch_id"),
)

journal = Table(
    "journal",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_at", Float, nullable=False),
    Column("address", Text, nullable=False),
    Column("kind", Text, nullable=False),
    # Signed satoshis: credits positive, payouts negative.
    Column("amount", BigInteger, nullable=False),
    Column("block_id", Id, ForeignKey("blocks.id"), nullable=True),
    Column("batch_id", Id, ForeignKey("payout_batches.id"), nullable=True),
    Column("note", Text, nullable=False, default=""),
    Index(None, "address"),
    Index(None, "block_id"),
    Index(None, "batch_id"),
)

#: Hashrate history, one row per worker per interval (``bucket`` is the interval's start,
#: a multiple of the interval in epoch seconds); written by :mod:`otedama.ledger.history`.
worker_hashrate = Table(
    "worker_hashrate",
    metadata,
    Column("bucket", Float, primary_key=True),
    Column("address", Text, primary_key=True),
    Column("worker", Text, primary_key=True),
    Column("shares", Integer, nullable=False),
    # The sum of the interval's share difficulties.
    Column("difficulty", Float, nullable=False),
    # The interval's first share: a rate right after a start spans from here, not
    # from the interval's start.
    Column("first_share_at", Float, nullable=False),
    Column("last_share_at", Float, nullable=False),
    Index(None, "address", "bucket"),
)

#: The pool's totals per interval (same buckets as ``worker_hashrate``).
pool_hashrate = Table(
    "pool_hashrate",
    metadata,
    Column("bucket", Float, primary_key=True),
    Column("shares", Integer, nullable=False),
    Column("difficulty", Float, nullable=False),
    Column("workers", Integer, nullable=False),
    Column("miners", Integer, nullable=False),
    Column("first_share_at", Float, nullable=False),
)

#: Each found block's effort: the share difficulty of its round over the network
#: difficulty (1.0 = as many hashes as expected), computed once when it is found.
block_effort = Table(
    "block_effort",
    metadata,
    Column("hash", Text, primary_key=True),
    Column("network_difficulty", Float, nullable=False),
    Column("share_difficulty", Float, nullable=False),
    Column("effort", Float, nullable=False),
)

#: Bearer tokens of the API's admin endpoints: only the SHA-256 of a token is stored.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Index(None, "name"),
)

# -- federation (migration 0003_federation) -----------------------------------------------

#: Peer reputation evidence (``otedama.federation.reputation.PeerRecord``), saved
#: periodically and restored at start so a restart forgets no offence.
federation_peers = Table(
    "federation_peers",
    metadata,
    Column("peer_key", LargeBinary, primary_key=True),
    Column("good", Float, nullable=False),
    Column("bad", Float, nullable=False),
    Column("updated", Float, nullable=False),
)

#: The verified federation shares of the window (``WindowEntry``), so a restarted node's
#: coinbases still pay the window it had. ``work`` is a decimal string (up to 2**256).
federation_window = Table(
    "federation_window",
    metadata,
    Column("share_hash", LargeBinary, primary_key=True),
    Column("node_id", LargeBinary, nullable=False),
    Column("payout_script", LargeBinary, nullable=False),
    Column("work", Text, nullable=False),
    Column("time", BigInteger, nullable=False),
    Index(None, "time"),
)

#: What the chain paid this node's payout script in a block's coinbase, whoever found it.
#: Each row has the ``blocks`` row that takes the income through maturity and credits it.
federation_income = Table(
    "federation_income",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("block_id", Id, ForeignKey("blocks.id"), nullable=False),
    Column("height", Integer, nullable=False),
    # Display (RPC) hex.
    Column("hash", Text, nullable=False, unique=True),
    Column("amount", BigInteger, nullable=False),
    # Hex node id the coinbase commits to ("" when none).
    Column("finder_node_id", Text, nullable=False),
    Column("seen_at", Float, nullable=False),
    Index(None, "height"),
)

#: The PPLNS window's running per-address totals (:mod:`otedama.ledger.window`): with
#: the pending ``window_deltas``, the exact summed difficulty of each address's shares
#: created after ``window_state.start``, in units of 2**-128: it outgrows BIGINT, so
#: ``numeric`` on PostgreSQL and decimal text on SQLite (whose numbers are at most 64-bit).
window_totals = Table(
    "window_totals",
    metadata,
    Column("address", Text, primary_key=True),
    Column("weight", Text().with_variant(Numeric(), "postgresql"), nullable=False),
    # Half of each page left free: a fold's update of a total then stays on its page (a
    # HOT update, pruned by the next reader), so the table a block read scans stays small.
    postgresql_with={"fillfactor": "50"},
)

#: Each share batch's addition to ``window_totals`` (append-only, one row a batch, so
#: concurrent batches never write the same row): per address, the summed difficulty of
#: the batch's shares created after ``start`` (the totals' start when it was written),
#: in the same units; ``newest`` is the batch's newest share time, ``oldest`` the oldest
#: of the shares summed (NULL: none, all were behind the start). Folded into the
#: totals and deleted by :func:`otedama.ledger.window.fold`. PostgreSQL keeps the two
#: lists as arrays (summed by the server); SQLite as JSON and comma-separated text.
window_deltas = Table(
    "window_deltas",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("start", Float, nullable=True),
    Column("newest", Float, nullable=False),
    Column("oldest", Float, nullable=True),
    Column("addresses", Text().with_variant(ARRAY(Text), "postgresql"), nullable=False),
    Column("weights", Text().with_variant(ARRAY(Numeric), "postgresql"), nullable=False),
)

#: One row (id 1): where the running totals start, whether they can be trusted, and
#: the newest share time they have seen. No row means "every share, valid".
window_state = Table(
    "window_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("start", Float, nullable=True),
    Column("valid", Integer, nullable=False),
    Column("newest", Float, nullable=True),
)
