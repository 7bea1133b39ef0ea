"""One rule for "is the registry copy too old to vouch for a pass?".

Used by `decide` (through the loop), the guard screen's health panel and the
sync worker's status, so they never disagree (issue 11: mid-snapshot, decide
said stale and the screen said ok). Judged at the journal's *trusted* now.

Returns a reason code, or None when the copy is fresh:

- ``registry_never_synced``: a syncing kiosk that never got a copy;
- ``registry_incomplete``: stopped in the middle of a snapshot, which may
  lack revocations;
- ``registry_stale``: the last update is older than `staleness_limit_h`.

A kiosk without `[sync]` (`staleness_limit_h` None) runs on the entries it
was given and is never stale.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sync.protocol import SNAPSHOT_IN_PROGRESS


def registry_staleness(synced_at: datetime | None, cursor: str | None, now: datetime,
                       staleness_limit_h: float | None) -> str | None:
    if staleness_limit_h is None:
        return None
    if synced_at is None or cursor is None:
        return "registry_never_synced"
    if cursor == SNAPSHOT_IN_PROGRESS:
        return "registry_incomplete"
    if now - synced_at > timedelta(hours=staleness_limit_h):
        return "registry_stale"
    return None


def journal_staleness(journal, staleness_limit_h: float | None) -> str | None:
    """The rule applied to a journal's registry copy at its trusted now."""
    return registry_staleness(journal.registry_synced_at(), journal.registry_cursor(), journal.trusted_now(),
                              staleness_limit_h)
