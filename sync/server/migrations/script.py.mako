"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Expand only (README "Schema changes while replicas run"): new tables,
nullable columns, indexes with create_index_online. Drop things in a later
release's revision.
"""

from alembic import op

from sync.server.migrations import create_index_online, run_step  # noqa: F401

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
