"""Capture thread, newest-frame-only, stale-frame watchdog and reconnect."""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import pytest

from drivers.camera import Camera, FakeCamera, OpenCVSource
from drivers.errors import CameraUnavailable, DriverError
from drivers.qr import decode
from drivers.render import render_frame, sample_pass_text


def _wait(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def clip(tmp_path):
    """A 20-frame MJPG clip at 40 fps; frames 10-14 show a pass."""
    path = tmp_path / "gate.avi"
    text = sample_pass_text(3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 40.0, (640, 480))
    assert writer.isOpened()
    for i in range(20):
        shown = text if 10 <= i < 15 else None
        writer.write(render_frame(shown, 640, 480, seed=7, scene_seed=1, noise_seed=i, hard=False))
    writer.release()
    return path, text


def test_capture_from_a_video_file_loops_and_decodes(clip):
    path, text = clip
    camera = Camera(OpenCVSource(str(path), 640, 480), stale_after_s=1.0)
    seen, found = [], set()
    with camera:
        frame = camera.wait_frame(0, timeout=3.0)
        assert frame is not None
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and len(seen) < 30:
            frame = camera.wait_frame(frame.seq, timeout=1.0)
            assert frame is not None
            assert frame.image.shape == (480, 640, 3)
            seen.append(frame.seq)
            found.update(decode(frame.image))
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert len(seen) >= 25  # more than the clip's 20 frames: it looped
    assert found == {text}
    assert camera.health() == (True, "ok")


def test_a_missing_file_is_reported_not_raised(tmp_path):
    camera = Camera(OpenCVSource(str(tmp_path / "nope.avi")), reopen_backoff_s=(0.05, 0.1))
    with camera:
        assert camera.wait_frame(0, timeout=0.3) is None
        ok, reason = camera.health()
        assert not ok and "no such video file" in reason
        with pytest.raises(CameraUnavailable):
            camera.check()
        assert camera.latest() is None


def test_newest_frame_only_and_dropped_frames_are_counted():
    camera = FakeCamera(160, 120, fps=100)
    with camera:
        first = camera.wait_frame(0)
        time.sleep(0.3)  # nobody takes frames meanwhile: they are dropped, not queued
        newest = camera.latest()
    assert newest.seq - first.seq >= 5
    assert camera.dropped >= newest.seq - first.seq - 2
    assert newest.mono_s > first.mono_s


def test_a_consumer_keeping_up_drops_nothing():
    camera = FakeCamera(160, 120, fps=10)
    with camera:
        frame = camera.wait_frame(0)
        for _ in range(6):
            frame = camera.wait_frame(frame.seq)
    assert camera.dropped == 0


def test_fake_camera_renders_the_pass_it_is_shown():
    text = sample_pass_text(1)
    camera = FakeCamera(1280, 720, fps=30)
    with camera:
        frame = camera.wait_frame(0)
        assert decode(frame.image) == []
        camera.show(text)
        # one frame read before show() may still be on its way to publication
        frame = camera.wait_frame(camera.frames + 1)
        assert decode(frame.image) == [text]
        assert not frame.image.flags.writeable  # shared frames are read-only
        camera.show(None)
        frame = camera.wait_frame(camera.frames + 1)
        assert decode(frame.image) == []


def test_fake_camera_frames_of_a_still_scene_differ_by_noise_only():
    camera = FakeCamera(320, 240, fps=60)
    with camera:
        a = camera.wait_frame(0)
        b = camera.wait_frame(a.seq)
    assert not np.array_equal(a.image, b.image)
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 6


def test_frozen_frames_trip_the_watchdog_then_replug_recovers(caplog):
    caplog.set_level(logging.WARNING, "drivers.camera")
    camera = FakeCamera(160, 120, fps=50, stale_after_s=0.3, reopen_backoff_s=(0.05, 0.2))
    with camera:
        assert camera.wait_frame(0) is not None
        camera.freeze()  # OpenCV keeps handing back the last frame after an unplug
        assert _wait(lambda: not camera.health()[0], 2.0)
        assert "the same frame for 0.3 s" in camera.health()[1]
        assert camera.latest() is None  # a stale frame is never handed out
        with pytest.raises(CameraUnavailable) as info:
            camera.check()
        assert isinstance(info.value, DriverError)
        time.sleep(0.5)  # reopen attempts fail while unplugged, with backoff
        assert not camera.health()[0]
        camera.replug()
        assert _wait(lambda: camera.health()[0], 2.0)
        assert camera.latest() is not None
    assert camera.reopens >= 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1  # once per outage
    assert sum("recovered" in m for m in messages) == 1


def test_unplugged_camera_reports_unavailable_and_reconnects():
    camera = FakeCamera(160, 120, fps=50, stale_after_s=0.2, reopen_backoff_s=(0.05, 0.2))
    with camera:
        first = camera.wait_frame(0)
        camera.unplug()
        assert _wait(lambda: not camera.health()[0], 2.0)
        assert "no frames for 0.2 s" in camera.health()[1]
        camera.replug()
        frame = camera.wait_frame(first.seq, timeout=3.0)
    assert frame is not None and frame.seq > first.seq


def test_camera_that_never_opens_keeps_retrying_with_backoff():
    opens = []

    class DeadSource:
        name = "dead"

        def open(self):
            opens.append(time.monotonic())
            raise OSError(19, "No such device")

        def read(self):
            raise AssertionError("never opened")

        def close(self):
            pass

    camera = Camera(DeadSource(), reopen_backoff_s=(0.02, 0.08))
    with camera:
        time.sleep(0.45)
        ok, reason = camera.health()
    assert not ok and "cannot open (OSError)" in reason
    assert isinstance(camera.error.__cause__, OSError)
    gaps = np.diff(opens)
    assert 4 <= len(opens) <= 12
    assert gaps[-1] >= 0.07  # backoff grew to its ceiling


def test_replay_images_and_video(tmp_path, clip):
    path, text = clip
    still = tmp_path / "pass.png"
    other = sample_pass_text(2)
    cv2.imwrite(str(still), render_frame(other, 640, 480, seed=2, hard=False))
    camera = FakeCamera(640, 480, fps=40)
    camera.replay([still, path])
    found = set()
    with camera:
        frame = camera.wait_frame(0)
        for _ in range(70):  # 40 frames of the still, then the clip
            frame = camera.wait_frame(frame.seq)
            found.update(decode(frame.image))
    assert found == {text, other}
    assert camera.health() == (True, "ok")  # a replayed still is not a stale camera


def test_replay_of_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CameraUnavailable, match="no such file"):
        FakeCamera().replay([tmp_path / "missing.png"])
