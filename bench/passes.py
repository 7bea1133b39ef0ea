"""How fast can a kiosk check passes? Prints verifications per second.

Baseline, measured in the same run: a raw Ed25519 verify of the same signed
bytes with `cryptography` (the floor no pass format can beat). The ratio
shows what the pass format costs on top: parsing, base64 and the checks.
Also timed: rejecting hostile text (no signature check needed) and a full
verify + decide() for one arrival.

Targets: verify() and verify() + decide() at least 0.5x the raw verify (the
signature is the work; the format must not double it), and rejecting
hostile text faster than one raw verify.

    .venv/bin/python -m bench.passes [--seconds 2]

A Pi 4 is several times slower than a desktop, but even a tenth of these
figures is far above what one gate sees (a person every few seconds).
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import Row, finish, slowed
from gateway.decision import GateMoment, RegistryEntry, decide
from gateway.passes import PREFIX, issue_pass, key_id, verify
from gateway.policy import default_policy
from gateway.thermometry import Reading


def rates(fns: dict, seconds: float, rounds: int = 5) -> dict[str, float]:
    """Calls per second of each fn(), over about `seconds` of wall time each,
    interleaved in rounds so that a busy machine slows them all alike."""
    calls = {name: 0 for name in fns}
    spent = {name: 0.0 for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            while True:
                for _ in range(16):
                    fn()
                calls[name] += 16
                if time.perf_counter() - start >= seconds / rounds:
                    break
            spent[name] += time.perf_counter() - start
    return {name: calls[name] / spent[name] for name in fns}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args(argv)

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    keys = {key_id(key): public}
    now = datetime(2026, 2, 10, 8, 0, tzinfo=timezone.utc)
    text = issue_pass(
        key, pass_id="P7K2M9QX4B", person_id="R-0301-02", site_id="site-1", kind="resident",
        valid_from=now - timedelta(days=1), valid_to=now + timedelta(days=13),
    )
    body = text[len(PREFIX):]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    signed, signature = PREFIX.encode() + raw[:-64], raw[-64:]
    hostile = "'; DROP TABLE events; --<script>alert(1)</script>" + "A" * 100

    assert verify(text, keys, now).valid
    reading = Reading(status="ok", object_c=36.5, ambient_c=22.0, offset_c=0.0, body_c=36.5, mono_s=1.0)
    entry = RegistryEntry(person_id="R-0301-02", site_id="site-1")
    policy = default_policy()
    moment = GateMoment("site-1", "in", now, 1000.0)

    measured = rates({
        "baseline": lambda: public.verify(signature, signed),
        # slowed(): the bench's test hook, off by default; never on the baseline.
        "full": slowed(lambda: verify(text, keys, now)),
        "reject": slowed(lambda: verify(hostile, keys, now)),
        "arrival": slowed(lambda: decide(verify(text, keys, now), reading, entry, policy, moment, threshold_c=37.3)),
    }, args.seconds)
    baseline, full, reject, arrival = (measured[k] for k in ("baseline", "full", "reject", "arrival"))

    print(f"pass length: {len(text)} characters")
    rows = [
        ("baseline: raw Ed25519 verify", baseline),
        ("verify() of a valid pass", full),
        ("verify() rejecting hostile text", reject),
        ("verify() + decide() per arrival", arrival),
    ]
    for label, value in rows:
        print(f"{label:<34}{value:>12,.0f} /s   ratio to baseline {value / baseline:6.2f}")
    anchor = "raw Ed25519 verify"
    return finish([
        Row("passes", "verify() of a valid pass", full, "/s", anchor, baseline, ">= 0.5x anchor",
            full >= 0.5 * baseline),
        Row("passes", "verify() + decide() per arrival", arrival, "/s", anchor, baseline, ">= 0.5x anchor",
            arrival >= 0.5 * baseline),
        Row("passes", "verify() rejecting hostile text", reject, "/s", anchor, baseline, ">= 1x anchor",
            reject >= baseline),
    ])


if __name__ == "__main__":
    sys.exit(main())
