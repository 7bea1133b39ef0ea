"""The policy document: default, JSON loading, errors, newest version wins."""

from __future__ import annotations

import json

import pytest

from gateway.config import parse_config
from gateway.policy import PolicyError, default_policy, load_policy, newest, parse_policy, policy_from_settings


def test_default_is_closed_management():
    policy = default_policy()
    assert policy.version == 1
    assert policy.enforcement == "hard" and policy.visitor_mode == "deny"
    assert policy.health_code.red == "deny" and policy.health_code.yellow == "guard"
    assert policy.observation_blocks_exit and policy.passback == "deny"
    assert policy.courier_dropoff.zh


def test_round_trips_through_json(tmp_path):
    policy = parse_policy({"version": 3, "visitor_mode": "register", "enforcement": "soft",
                           "courier_dropoff": {"zh": "北门快递架"}, "passback_s": 60})
    path = tmp_path / "policy.json"
    path.write_text(policy.to_json(), encoding="utf-8")
    loaded = load_policy(path)
    assert loaded == policy
    assert loaded.courier_dropoff.as_dict() == {"zh": "北门快递架", "en": "北门快递架"}


@pytest.mark.parametrize(
    "document, message",
    [
        ('{"version": 2, "visiter_mode": "deny"}', "visiter_mode: unknown key"),
        ('{"version": 0}', "version = 0"),
        ('{"enforcement": "strict"}', "enforcement = 'strict'"),
        ('{"health_code": {"red": "maybe"}}', "health_code.red"),
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "not valid JSON"),
        ('{"preset": "level-9"}', "preset = 'level-9'"),
        ('{"disinfection_times": ["25:00"]}', "disinfection_times.0"),
        ('{"staffing": {"shift_h": 0}}', "staffing.shift_h"),
    ],
)
def test_bad_documents_name_the_key(document, message):
    with pytest.raises(PolicyError, match=message) as err:
        parse_policy(document, source="policy.json")
    assert str(err.value).startswith("policy.json:")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy(tmp_path / "nope.json")


def test_newest_version_wins():
    feb1 = parse_policy({"version": 1, "visitor_mode": "register"})
    feb9 = parse_policy({"version": 2, "visitor_mode": "deny"})
    assert newest(feb1, feb9) is feb9 and newest(feb9, feb1) is feb9
    assert newest(feb1, None) is feb1
    assert newest() == default_policy()


def test_policy_from_config(tmp_path):
    settings = parse_config(
        '[gate]\nid = "east-1"\nsite = "site-1"\n[policy]\nenforcement = "soft"\nvisitor_mode = "register"\n'
        "[passes]\npassback_s = 90\n",
        tmp_path / "gate.toml",
    )
    policy = policy_from_settings(settings)
    assert (policy.enforcement, policy.visitor_mode, policy.passback_s) == ("soft", "register", 90.0)

    (tmp_path / "policy.json").write_text(json.dumps({"version": 7, "enforcement": "hard"}))
    settings = parse_config(
        '[gate]\nid = "east-1"\nsite = "site-1"\n[policy]\nfile = "policy.json"\n', tmp_path / "gate.toml"
    )
    assert policy_from_settings(settings).version == 7


def test_escalation_presets_by_name_then_field_by_field():
    level2 = parse_policy({"version": 4, "preset": "level-2"})
    assert level2.level == "level-2" and level2.mask_required and level2.visitor_mode == "register"
    level3 = parse_policy({"version": 5, "preset": "level-3", "mask_required": False})
    assert level3.visitor_mode == "deny" and level3.unit_doors == "members_only"
    assert level3.health_code.required
    assert level3.mask_required is False  # the document's own field beats the preset
    # A saved policy keeps what it was made from, and loads back the same.
    assert parse_policy(level3.to_json()) == level3


def test_gate_rule_defaults():
    policy = default_policy()
    assert policy.staffing.shift_h == 12 and policy.staffing.unattended == "screen"
    assert policy.health_code_blocks_exit and not policy.mask_required and policy.closed_gates == []
    assert policy.disinfection_times == []  # no reminders until the community sets times
    assert parse_policy({"preset": "level-1"}).disinfection_times == ["08:00", "14:00", "20:00"]
