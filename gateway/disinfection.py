"""Thermometers disinfected at set times (L613 测量体温仪器要定时进行消毒).

The policy lists the times of day (Beijing time, "HH:MM"). A slot is *due*
from its time, *overdue* after `disinfection_overdue_min`, *done* when a
disinfection was logged from a little before its time (`EARLY_MIN`) until
the next slot, and *missed* when the next slot (or the day's end) came
without one. Each logged disinfection counts for one slot only.

    slots = disinfection_slots(policy.disinfection_times, done_times, day, now, policy.disinfection_overdue_min)
    report = disinfection_report(...)   # {"done": 2, "missed": 1, "slots": [...]} for a day's report

Pure: the caller passes the logged times (the journal's or the registry's
``ledger.disinfections`` events) and the time.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable

BEIJING = timezone(timedelta(hours=8))
EARLY_MIN = 30  # disinfecting up to this long before the set time counts for it


def disinfection_slots(times: Iterable[str], done: Iterable[datetime], day: date, now: datetime,
                       overdue_min: float) -> list[dict]:
    """Each set time of `day` with its status: upcoming, due, overdue, done or missed."""
    starts = sorted(datetime.combine(day, time.fromisoformat(t), BEIJING) for t in set(times))
    day_end = datetime.combine(day + timedelta(days=1), time(0), BEIJING)
    unused = sorted(_aware(d) for d in done)
    slots = []
    for i, start in enumerate(starts):
        window_end = starts[i + 1] - timedelta(minutes=EARLY_MIN) if i + 1 < len(starts) else day_end
        match = next((d for d in unused if start - timedelta(minutes=EARLY_MIN) <= d < window_end), None)
        if match is not None:
            unused.remove(match)
            status = "done"
        elif now < start:
            status = "upcoming"
        elif now >= window_end:
            status = "missed"
        elif now >= start + timedelta(minutes=overdue_min):
            status = "overdue"
        else:
            status = "due"
        slots.append({"time": start.strftime("%H:%M"), "status": status,
                      "done_at": match.astimezone(BEIJING).isoformat(timespec="minutes") if match else None})
    return slots


def disinfection_report(times: Iterable[str], done: Iterable[datetime], day: date, now: datetime,
                        overdue_min: float) -> dict:
    """Done and missed for a day's report; slots still open count as neither."""
    slots = disinfection_slots(times, done, day, now, overdue_min)
    return {
        "day": day.isoformat(),
        "done": sum(s["status"] == "done" for s in slots),
        "missed": sum(s["status"] == "missed" for s in slots),
        "slots": slots,
    }


def reminder(slots: list[dict]) -> dict | None:
    """What the guard screen shows: the most urgent slot that needs doing, if any."""
    for status in ("overdue", "due"):
        for slot in slots:
            if slot["status"] == status:
                return {"status": status, "time": slot["time"]}
    return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
