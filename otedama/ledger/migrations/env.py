"""Alembic environment for the ledger schema.

Run through :mod:`otedama.ledger.db` (``otedama migrate up``), which builds the Alembic
config in code and passes an open connection in ``config.attributes["connection"]``; no
``alembic.ini`` is needed. With a plain URL in ``sqlalchemy.url`` it connects itself.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from otedama.ledger.db import make_engine
from otedama.ledger.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "", pool_size=1)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


_main()
