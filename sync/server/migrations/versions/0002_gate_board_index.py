"""events (gate_id, received_at): the gates board without a scan of every event.

For each gate the board asks for the oldest event received in the gate's
last upload (how far behind the kiosk is: `boards.gate_board`). No index
led by gate_id existed, so every gate cost a scan of the whole events table
(all sites, the whole retention period). An expand-only change: the index
is built concurrently on PostgreSQL while replicas keep inserting.
"""

from sync.server.migrations import create_index_online, drop_index_online

revision = "0002_gate_board_index"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

INDEX = "ix_events_gate_received"


def upgrade() -> None:
    create_index_online(INDEX, "events", ["gate_id", "received_at"])


def downgrade() -> None:
    drop_index_online(INDEX)
