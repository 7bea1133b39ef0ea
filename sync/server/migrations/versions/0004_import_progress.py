"""Import progress kept in the database, so every replica sees it and a
restart does not lose it (schema._v_tidy_import_progress; expand-only: one
nullable column)."""

from sync.server.migrations import run_step
from sync.server.schema import _v_tidy_import_progress

revision = "0004_import_progress"
down_revision = "0003_legacy_fever_acks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_step(_v_tidy_import_progress)
