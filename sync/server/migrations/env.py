"""Alembic's environment for the registry, configured by sync.server.schema_upgrade (no alembic.ini).

Online, the caller hands over the connection: on SQLite one already inside a
BEGIN IMMEDIATE transaction (so the whole upgrade is one transaction and one
writer at a time); on PostgreSQL one outside any transaction, holding the
migration lock, and each revision runs in its own transaction so a revision
may build an index concurrently outside one (autocommit_block).
"""

from alembic import context

config = context.config

if context.is_offline_mode():
    context.configure(dialect_name=config.attributes["dialect_name"], literal_binds=True,
                      transaction_per_migration=True)
else:
    context.configure(connection=config.attributes["connection"], transaction_per_migration=True)

with context.begin_transaction():
    context.run_migrations()
