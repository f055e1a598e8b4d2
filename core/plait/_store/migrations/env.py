"""Alembic environment for plait's run-history store.

plait runs migrations itself (``plait._store.database``), handing Alembic an open
``Connection`` through ``config.attributes["connection"]``; there is no alembic.ini. To write
a new revision, build the config in code::

    from alembic import command
    from plait._store.database import alembic_config
    command.revision(alembic_config(url="sqlite:///dev.db"), "add x", autogenerate=True)
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from plait._store.models import METADATA

config = context.config
# Autogenerate compares against the models; the migrations themselves never import them.
target_metadata = METADATA


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Use the caller's connection when given one, else connect to ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("plait migrations need config.attributes['connection'] or sqlalchemy.url")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    """Emit SQL for ``sqlalchemy.url`` without connecting (``alembic upgrade --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
