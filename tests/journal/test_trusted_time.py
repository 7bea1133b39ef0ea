"""Trusted time cannot be poisoned (issue 11): a forward jump of the OS clock
must not raise the watermark for good; the server's time bounds it."""

from datetime import datetime, timedelta, timezone

import pytest

from gateway.clock import FakeClock
from gateway.journal import Journal

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def journal(tmp_path, clock):
    j = Journal.open(tmp_path / "journal.db", clock=clock)
    yield j
    j.close()


def near(a: datetime, b: datetime, seconds: float = 5) -> bool:
    return abs((a - b).total_seconds()) <= seconds


def test_a_forward_jump_of_the_clock_does_not_raise_the_watermark_for_good(journal, clock):
    journal.record_server_time(T0)
    clock.advance(10)
    clock.wall = T0 + 30 * DAY  # the OS clock jumps a month ahead, still "synced"
    journal.append({"kind": "decision"})
    assert near(journal.watermark(), T0 + timedelta(seconds=10), 301)
    assert near(journal.trusted_now(), T0 + timedelta(seconds=10))  # the server's time, not the jumped clock
    assert journal.clock_refused()  # and the guard is told
    clock.wall = T0 + timedelta(seconds=20)  # the clock comes back
    clock.mono_ns += 10 * 10**9
    assert near(journal.trusted_now(), T0 + timedelta(seconds=20))
    assert not journal.clock_refused()


def test_a_watermark_already_poisoned_is_repaired_by_the_server_time(journal, clock):
    clock.wall = T0 + 30 * DAY  # no server contact yet: nothing to bound it with
    journal.append({"kind": "decision"})
    assert journal.watermark() == T0 + 30 * DAY
    journal.record_server_time(T0)
    assert journal.watermark() == T0
    clock.wall = T0
    assert journal.trusted_now() == T0


def test_after_a_reboot_the_clock_does_not_raise_the_watermark_until_the_server_answers(journal, clock):
    journal.record_server_time(T0)
    rebooted = FakeClock(T0 + 30 * DAY, boot_id="second-boot")  # booted with a wrong but "synced" clock
    journal.clock = rebooted
    journal.append({"kind": "decision"})
    assert journal.watermark() == T0
    journal.record_server_time(T0 + timedelta(hours=1))
    assert near(journal.trusted_now(), T0 + timedelta(hours=1))


def test_a_kiosk_that_never_synced_keeps_the_plain_watermark(journal, clock):
    journal.append({"kind": "decision"})
    clock.wall = T0 - DAY  # rolled back: the watermark still holds
    assert journal.trusted_now() == T0
    assert not journal.clock_refused()
