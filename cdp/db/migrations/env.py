"""Alembic environment: runs on the connection of the Database passed in by cdp.db.migrate."""

from alembic import context

from cdp.db.models import Base

config = context.config
database = config.attributes["database"]

with database.engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=database.is_sqlite,
        compare_type=True,
    )
    context.run_migrations()
