import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import EX_CONFIG, ConfigError, load_config, parse_config

MINIMAL = '[gate]\nid = "east-1"\nsite = "site-1"\n'


def problems_of(text, name="gate.toml"):
    with pytest.raises(ConfigError) as err:
        parse_config(text, name)
    return err.value.problems


def test_minimal_config_gets_defaults():
    s = parse_config(MINIMAL)
    assert s.gate.id == "east-1"
    assert s.temperature.threshold_c == 37.3
    assert s.hardware.kind == "fake"
    assert s.screen.port == 8080
    assert s.sync is None


def test_wrong_type_names_file_key_value_and_expectation():
    (line,) = problems_of(MINIMAL + '[temperature]\nthreshold_c = "hot"\n')
    assert line.startswith("gate.toml: temperature.threshold_c = 'hot': ")
    assert "number" in line


def test_unknown_key_is_an_error():
    (line,) = problems_of(MINIMAL + "[temperature]\nthreshhold_c = 37.5\n")
    assert line == (
        "gate.toml: temperature.threshhold_c: unknown key (check the spelling; see deploy/*.toml)"
    )


def test_unknown_section_is_an_error():
    (line,) = problems_of(MINIMAL + "[camra]\nfps = 5\n")
    assert line.startswith("gate.toml: camra: unknown key")


def test_out_of_range_value():
    (line,) = problems_of(MINIMAL + "[outputs]\nrelay_pin = 41\n")
    assert line == "gate.toml: outputs.relay_pin = 41: must be a BCM GPIO number 2-27"


def test_threshold_bounds():
    (line,) = problems_of(MINIMAL + "[temperature]\nthreshold_c = 45.0\n")
    assert "temperature.threshold_c = 45.0" in line and "39" in line


def test_every_problem_is_reported_at_once():
    lines = problems_of('[gate]\nid = ""\n[screen]\nport = 0\n')
    keys = sorted(line.split(":")[1].split(" =")[0].strip() for line in lines)
    assert keys == ["gate.id", "gate.site", "screen.port"]
    assert any("required key is missing" in line for line in lines)


def test_bad_toml():
    (line,) = problems_of('[gate\nid = "x"\n')
    assert line.startswith("gate.toml: not valid TOML:")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.toml")
    assert err.value.problems == [f"{tmp_path / 'nope.toml'}: no such config file"]


def test_relative_paths_resolve_against_the_config_file(tmp_path, write_config):
    sub = tmp_path / "etc"
    sub.mkdir()
    path = sub / "gate.toml"
    path.write_text(
        MINIMAL + '[passes]\nissuer_keys = ["keys/a.pub", "/abs/b.pub"]\n'
        '[journal]\npath = "journal.db"\n'
    )
    s = load_config(path)
    assert s.journal.path == sub / "journal.db"
    assert [str(k) for k in s.passes.issuer_keys] == [str(sub / "keys/a.pub"), "/abs/b.pub"]


def test_sync_needs_exactly_one_token():
    (line,) = problems_of(MINIMAL + '[sync]\nserver = "http://x:8700"\n')
    assert line == "gate.toml: sync: give exactly one of token or token_file"


def test_shared_output_pins_rejected():
    (line,) = problems_of(MINIMAL + "[outputs]\nrelay_pin = 17\nbuzzer_pin = 17\n")
    assert line == "gate.toml: outputs: each output needs its own pin"


@pytest.mark.parametrize("name", ["deploy/gate.example.toml", "deploy/sim.toml"])
def test_shipped_examples_are_valid(name):
    s = load_config(name)
    assert s.gate.id


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True
    )


def test_check_config_cli_ok():
    r = run_cli("check-config", "deploy/sim.toml")
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_check_config_cli_bad_exits_78_without_traceback(write_config):
    path = write_config(MINIMAL + "[outputs]\nrelay_pin = 41\nopen_s = -1\n")
    r = run_cli("check-config", str(path))
    assert r.returncode == EX_CONFIG
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "Traceback" not in r.stderr
    assert all(line.startswith("gate.toml: outputs.") for line in lines)


def test_the_demo_and_the_simulator_keep_their_data_apart():
    """A simulation beside ./scripts/demo must not write into the demo's journal."""
    ROOT = Path(__file__).resolve().parents[1]
    demo = load_config(ROOT / "deploy" / "demo.toml")
    sim = load_config(ROOT / "deploy" / "sim.toml")
    assert Path(demo.journal.path).parent != Path(sim.journal.path).parent
    assert {Path(k).parent for k in demo.passes.issuer_keys}.isdisjoint(
        Path(k).parent for k in sim.passes.issuer_keys)
    assert demo.screen.port != sim.screen.port
