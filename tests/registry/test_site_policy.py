"""The site policy form: validated by the kiosk's Policy model, versioned, in the gate feed."""

from __future__ import annotations

from gateway.policy import parse_policy
from gateway.registry_copy import settings_under
from sync.server import registry, site_policy


def test_a_published_policy_is_the_next_version_and_parses_at_the_kiosk(db):
    assert site_policy.current(db, "site-1")["version"] == 0
    doc, errors = site_policy.publish(db, "site-1", {"visitor_mode": "register", "enforcement": "soft",
                                                     "threshold_c": "37.0", "offset_c": "0.6"}, by="王主任",
                                      expected_version=0)
    assert errors == {} and doc["version"] == 1
    changes, _, _ = registry.feed_page(db, "site-1", 0, 10)
    (pushed,) = [c["payload"] for c in changes if c["entity"] == "policy"]
    policy = parse_policy(pushed, source="feed")
    assert (policy.version, policy.visitor_mode, policy.enforcement, policy.threshold_c, policy.offset_c) == \
        (1, "register", "soft", 37.0, 0.6)
    doc, _ = site_policy.publish(db, "site-1", {"visitor_mode": "deny"}, by="王主任", expected_version=1)
    assert (doc["version"], doc["visitor_mode"], doc["threshold_c"]) == (2, "deny", 37.0)


def test_bad_values_are_refused_per_field_and_nothing_is_published(db):
    doc, errors = site_policy.publish(db, "site-1", {"threshold_c": "40", "offset_c": "abc",
                                                     "visitor_mode": "maybe"}, by="x")
    assert doc is None and set(errors) == {"threshold_c", "offset_c", "visitor_mode"}
    assert registry.head(db, "site-1") == 0


def test_a_stale_form_does_not_overwrite_a_newer_policy(db):
    site_policy.publish(db, "site-1", {"visitor_mode": "register"}, by="a", expected_version=0)
    doc, errors = site_policy.publish(db, "site-1", {"visitor_mode": "deny"}, by="b", expected_version=0)
    assert doc is None and "version" in errors


def test_the_policys_threshold_and_offset_replace_the_configs(sim_settings):
    policy = parse_policy({"version": 2, "threshold_c": 37.0, "offset_c": 0.9})
    temperature = settings_under(policy, sim_settings).temperature
    assert (temperature.threshold_c, temperature.offset_c) == (37.0, 0.9)
    assert settings_under(parse_policy({"version": 3}), sim_settings) is sim_settings


def test_sheets_mask_names_when_the_site_chooses(db):
    assert site_policy.mask_names(db, "site-1") is False
    site_policy.set_mask_names(db, "site-1", True, by="王主任")
    assert site_policy.mask_names(db, "site-1") is True and site_policy.mask_names(db, "site-2") is False
