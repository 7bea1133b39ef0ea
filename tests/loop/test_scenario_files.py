"""Scenario files: both forms, clear errors for bad ones, signed pass templates."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest

from gateway.passes import load_public_keys, verify
from gateway.scenario import (
    DemoIssuer,
    PassTemplate,
    ScenarioError,
    load_scenario,
    parse_scenario,
    pass_texts,
    beijing_today,
    resolve_registry,
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_list_form_in_yaml_and_json(tmp_path):
    yaml_path = write(tmp_path, "a.yaml", "- {at: 2, qr: null, object_c: 36.1}\n- {at: 0, qr: 'CP1:x', sensor: fault}\n")
    json_path = write(tmp_path, "a.json", json.dumps([{"at": 0, "qr": None, "object_c": 36.1, "direction": "out"}]))
    scenario = load_scenario(yaml_path)
    assert [a.at for a in scenario.arrivals] == [0, 2]  # sorted by time
    assert scenario.arrivals[0].sensor == "fault" and scenario.arrivals[1].ambient_c == 22.0
    assert load_scenario(json_path).arrivals[0].direction == "out"


@pytest.mark.parametrize("text, message", [
    ("- {at: 0, qr: null, object_c: hot}", "a.yaml: arrivals[0].object_c = 'hot': must be a number"),
    ("- {at: 0, qr: null}", 'arrivals[0]: object_c is required (or sensor: "fault")'),
    ("- {at: 0, qr: null, object_c: 36, sensor: fault}", 'give object_c or sensor: "fault", not both'),
    ("- {at: 0, qr: null, object_c: 36, temp: 1}", "a.yaml: arrivals[0].temp: unknown key"),
    ("- {at: -1, qr: null, object_c: 36}", "arrivals[0].at = -1"),
    ("- {at: 0, qr: null, object_c: 36, direction: sideways}", "arrivals[0].direction = 'sideways'"),
    ("- {at: 0, qr: {pass: {kind: resident}}, object_c: 36}", "arrivals[0].qr.pass.person: required key is missing"),
    ("- {at: 0, qr: {pass: {person: a, kind: alien}}, object_c: 36}", "arrivals[0].qr.pass.kind = 'alien'"),
    ("[]", "a.yaml: no arrivals"),
    ("just text", "a.yaml: a scenario is a list of arrivals"),
    ("- {at: 0, qr: [unclosed", "a.yaml: not valid YAML"),
])
def test_bad_files_get_one_clear_line_each(tmp_path, text, message):
    with pytest.raises(ScenarioError) as err:
        load_scenario(write(tmp_path, "a.yaml", text))
    assert message in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.yaml")


def test_templates_are_really_signed_and_bad_ones_really_fail(tmp_path):
    pub = tmp_path / "keys" / "issuer.pub"
    issuer = DemoIssuer(pub, "site-1")
    keys = load_public_keys([pub])
    now = datetime.now(timezone.utc)
    good = issuer.sign(PassTemplate(person="r-1"))
    assert verify(good, keys, now).valid
    assert issuer.sign(PassTemplate(person="r-1")) == good  # same template, same pass: passback works
    assert verify(issuer.sign(PassTemplate(person="r-1", issuer="forged")), keys, now).reasons == ["bad_signature"]
    assert verify(issuer.sign(PassTemplate(person="r-1", issuer="unknown")), keys, now).reasons == ["unknown_issuer"]
    assert verify(issuer.sign(PassTemplate(person="r-1", from_days=-9, days=-2)), keys, now).reasons == ["expired"]
    courier = verify(issuer.sign(PassTemplate(person="c-1", kind="courier", site="site-2")), keys, now)
    assert (courier.kind, courier.site_id) == ("courier", "site-2")


def test_a_real_public_key_without_its_private_key_is_never_replaced(tmp_path):
    pub = tmp_path / "issuer.pub"
    DemoIssuer(pub, "site-1")
    (tmp_path / "issuer.key").unlink()
    before = pub.read_bytes()
    with pytest.raises(ScenarioError, match="no demo signing key"):
        DemoIssuer(pub, "site-1")
    assert pub.read_bytes() == before


def test_registry_dates_relative_to_today():
    changes = resolve_registry({"person": {"r-3": {"name": "吴敏", "observation_until": "+14d"}}}, date(2026, 2, 10))
    assert changes == [{"entity": "person", "entity_id": "r-3", "op": "upsert", "change_seq": 1,
                        "payload": {"name": "吴敏", "observation_until": "2026-02-24"}}]


def test_literal_texts_pass_through(sim_settings):
    scenario = parse_scenario([{"at": 0, "qr": "<b>hi</b>", "object_c": 36}, {"at": 1, "qr": None, "object_c": 36}])
    assert pass_texts(scenario, sim_settings) == ["<b>hi</b>", None]


@pytest.mark.parametrize("utc, beijing", [
    ("2026-02-10T15:59:00+00:00", "2026-02-10"),
    ("2026-02-10T16:00:00+00:00", "2026-02-11"),  # the kiosk's day has already turned
    ("2026-02-10T23:30:00+00:00", "2026-02-11"),
])
def test_relative_dates_count_from_the_beijing_day(utc, beijing):
    assert beijing_today(datetime.fromisoformat(utc)).isoformat() == beijing


def test_returnee_example_gives_14_days_of_observation(sim_settings):
    from pathlib import Path

    from gateway.journal import Journal
    from gateway.passes import PassVerdict
    from gateway.registry_copy import CHINA_TZ, registry_entry

    scenario = load_scenario(Path(__file__).resolve().parents[2] / "examples" / "returnee.yaml")
    arrival = datetime(2026, 2, 10, 9, 0, tzinfo=CHINA_TZ)  # arrives in the morning, Beijing time
    journal = Journal.open(sim_settings.journal.path)
    try:
        journal.apply_registry_page(resolve_registry(scenario.registry, arrival.date()), "")
        verdict = PassVerdict(valid=True, reasons=[], signature_ok=True, person_id="r-301", pass_id="p-r-301", kind="resident")
        days = [arrival.date().toordinal() + n for n in range(20)]
        observed = [registry_entry(journal, verdict, datetime.fromordinal(d).replace(hour=12, tzinfo=CHINA_TZ))[0].status
                    for d in days]
    finally:
        journal.close()
    # The day of arrival is day 1 (L1542 居家观察14天): days 1-14 observed, day 15 free.
    assert observed.count("under_observation") == 14 and observed[14] == "active"
