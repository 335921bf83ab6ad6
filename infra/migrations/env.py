"""Alembic environment: migrations run on the connection the catalog hands over."""

from __future__ import annotations

from alembic import context

from infra.migrations.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic upgrade head` from a shell: use sqlalchemy.url from alembic.ini
    from sqlalchemy import engine_from_config, pool

    engine = engine_from_config(context.config.get_section(context.config.config_ini_section) or {},
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
