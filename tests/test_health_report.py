"""The kiosk's compact `health` event: written on a status change (rate-limited)
and as a heartbeat with the upload backlog, never every second."""

from __future__ import annotations

from gateway import health as healthmod
from gateway.health_report import HealthReporter
from gateway.journal import Journal


def panel(camera_ok: bool = True, pending: int = 0) -> dict:
    return {"thermometer": healthmod.device(True, "", "health.thermometer.fault"),
            "camera": healthmod.device(camera_ok, "no frame", "health.camera.fault"),
            "sync": healthmod.sync(True, pending, None)}


def test_health_events_are_few_and_compact(tmp_path):
    journal = Journal.open(tmp_path / "journal.db")
    clock = {"t": 1000.0}
    reporter = HealthReporter(journal, "east-1", min_interval_s=60, heartbeat_s=300, start_after_s=10,
                              monotonic=lambda: clock["t"])
    try:
        journal.append({"kind": "decision", "gate": "east-1", "decision": "admit", "reasons": []})
        assert reporter.tick(panel()) is None  # start-up: the devices are still coming up
        written = []
        for _ in range(600):  # ten minutes of once-a-second ticks, the camera failing at minute 2
            clock["t"] += 1
            event = reporter.tick(panel(camera_ok=clock["t"] < 1120))
            if event is not None:
                written.append((clock["t"], event))
        times = [t for t, _ in written]
        # The first report, the camera's fault as soon as the minimum interval allows, then a heartbeat.
        assert times == [1010.0, 1120.0, 1420.0]
        first = written[0][1]
        assert first["kind"] == "health"
        assert first["detail"] == {"devices": {"thermometer": "ok", "camera": "ok", "sync": "ok"}, "pending": 1}
        assert written[1][1]["detail"]["devices"]["camera"] == "fault"
        assert written[2][1]["detail"]["pending"] == 3  # the decision and the two health events before it
        assert len(journal.events(kind="health")) == 3
    finally:
        journal.close()


def test_a_flapping_device_is_reported_at_most_once_a_minute(tmp_path):
    journal = Journal.open(tmp_path / "journal.db")
    clock = {"t": 0.0}
    reporter = HealthReporter(journal, "east-1", min_interval_s=60, heartbeat_s=300, start_after_s=0,
                              monotonic=lambda: clock["t"])
    try:
        for second in range(120):
            clock["t"] = float(second)
            reporter.tick(panel(camera_ok=second % 2 == 0))
        assert len(journal.events(kind="health")) == 2  # at 0 s and at 60 s
    finally:
        journal.close()
