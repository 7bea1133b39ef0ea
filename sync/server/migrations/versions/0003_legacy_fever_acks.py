"""Fever acknowledgements an older kiosk sent (`fever_ack`) become fever cases
closed at the gate, as new uploads do (schema._v_tidy_legacy_fever_acks)."""

from sync.server.migrations import run_step
from sync.server.schema import _v_tidy_legacy_fever_acks

revision = "0003_legacy_fever_acks"
down_revision = "0002_gate_board_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_step(_v_tidy_legacy_fever_acks)
