"""Vehicles (L607, L611, L1123, L1125, L424): the vehicle pass, every occupant measured, outside vehicles refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.decision import GateMoment
from gateway.messages import MESSAGES
from gateway.passes import PassFormatError, issue_pass, key_id, verify
from gateway.policy import Policy
from gateway.vehicles import (
    Occupant,
    PlateError,
    VehicleException,
    decide_vehicle,
    issue_vehicle_pass,
    normalise_plate,
    plate_from_pass_id,
    plate_id,
)

T0 = datetime(2026, 2, 10, 8, 0, tzinfo=timezone.utc)
KEY = Ed25519PrivateKey.generate()
KEYS = {key_id(KEY): KEY.public_key()}
PLATE = "京A12345"


def vehicle_pass(plate=PLATE, site="site-1", days=30):
    return verify(issue_vehicle_pass(KEY, plate=plate, household="h-8-1-401", site_id=site,
                                     valid_from=T0 - timedelta(days=1), valid_to=T0 + timedelta(days=days)), KEYS, T0)


def test_plates_travel_in_the_pass_id_and_back():
    assert normalise_plate(" 京a·12345 ") == PLATE
    assert plate_id(PLATE) == "BJ-A12345" and plate_from_pass_id("BJ-A12345.2") == PLATE
    assert plate_from_pass_id("粤B-D12345") is None and plate_from_pass_id("p-r-101") is None
    assert normalise_plate("粤BD12345") == "粤BD12345"  # new-energy plates have six characters
    with pytest.raises(PlateError):
        normalise_plate("ABC123")
    with pytest.raises(PassFormatError):
        issue_vehicle_pass(KEY, plate="火星1", household="h-1", site_id="s", valid_from=T0, valid_to=T0 + timedelta(1))
    verdict = vehicle_pass()
    assert verdict.valid and verdict.kind == "vehicle" and verdict.person_id == "h-8-1-401"


TWO_OK = [Occupant(36.5, "张伟"), Occupant(36.8)]
ONE_HOT = [Occupant(36.5, "张伟"), Occupant(37.5)]
CASES = [
    ("community vehicle, both occupants normal", vehicle_pass(), PLATE, TWO_OK, {}, "admit", ["ok"], False),
    ("one occupant at 37.5 stops the vehicle", vehicle_pass(), PLATE, ONE_HOT, {}, "deny", ["fever"], True),
    ("an occupant not measured", vehicle_pass(), PLATE, [Occupant(36.5), Occupant(None)], {}, "deny",
     ["no_reading"], False),
    ("nobody entered", vehicle_pass(), PLATE, [], {}, "deny", ["no_reading"], False),
    ("outside vehicle refused", None, "冀B54321", TWO_OK, {}, "deny", ["vehicle_outside"], False),
    ("outside vehicle, the guard's exception", None, "冀B54321", TWO_OK,
     {"exception": VehicleException("王师傅", "救护车")}, "admit", ["vehicle_outside", "vehicle_exception"], False),
    ("an exception never lifts a fever", None, "冀B54321", ONE_HOT,
     {"exception": VehicleException("王师傅", "送货")}, "deny", ["vehicle_outside", "fever", "vehicle_exception"], True),
    ("pass of another car", vehicle_pass("京A99999"), PLATE, TWO_OK, {}, "deny", ["vehicle_no_pass"], False),
    ("a person's pass is not a vehicle pass",
     verify(issue_pass(KEY, pass_id="p-1", person_id="r-1", site_id="site-1", kind="resident",
                       valid_from=T0 - timedelta(1), valid_to=T0 + timedelta(9)), KEYS, T0),
     PLATE, TWO_OK, {}, "deny", ["vehicle_no_pass"], False),
    ("expired vehicle pass", vehicle_pass(days=-0.5), PLATE, TWO_OK, {}, "deny", ["expired"], False),
    ("revoked vehicle pass", vehicle_pass(), PLATE, TWO_OK, {"revoked": True}, "deny", ["revoked"], False),
    ("wrong site", vehicle_pass(site="site-9"), PLATE, TWO_OK, {}, "deny", ["wrong_site"], False),
]


@pytest.mark.parametrize("name, verdict, plate, occupants, kw, expect, reasons, flagged", CASES, ids=[c[0] for c in CASES])
def test_vehicle_table(name, verdict, plate, occupants, kw, expect, reasons, flagged):
    moment = GateMoment("site-1", "in", T0, 100.0, gate_id="car-1")
    decision, ledger = decide_vehicle(verdict, plate, occupants, Policy(), moment, threshold_c=37.3, **kw)
    assert (decision.decision, decision.reasons, decision.flagged) == (expect, reasons, flagged)
    assert decision.guard_message in MESSAGES and decision.public_message in MESSAGES
    assert ledger["plate"] == plate and [o["body_c"] for o in ledger["occupants"]] == [o.body_c for o in occupants]
    if flagged:
        assert decision.public_message == "public.see_staff"  # the queue never learns of a fever


def test_leaving_without_a_pass_and_a_closed_vehicle_gate():
    moment = GateMoment("site-1", "out", T0, 100.0, gate_id="car-1")
    decision, _ = decide_vehicle(None, "冀B54321", [Occupant(36.6)], Policy(), moment, threshold_c=37.3)
    assert decision.decision == "admit"
    closed = Policy(closed_gates=["car-1"])
    decision, _ = decide_vehicle(vehicle_pass(), PLATE, TWO_OK, closed, moment, threshold_c=37.3)
    assert decision.reasons == ["gate_closed"] and decision.public_message == "public.gate_closed"
