"""Real-or-fake selection, `checkpoint scan` and `checkpoint selftest`."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from gpiozero import Device

from drivers.camera import FakeCamera
from drivers.errors import DriverError
from drivers.hardware import build_hardware
from drivers.outputs import GateOutputs
from drivers.render import qr_modules, render_frame, sample_pass_text
from drivers.thermometer import FakeThermometer
from gateway.cli import main
from gateway.commands.hardware_cmd import SELFTEST_TEXT
from gateway.config import load_config, parse_config

CONFIG = '[gate]\nid = "east-1"\nsite = "site-1"\n'


def test_fake_hardware_is_the_real_classes_over_fakes():
    settings = parse_config(CONFIG + '[camera]\nwidth = 320\nheight = 240\n')
    with build_hardware(settings) as hw:
        assert hw.is_fake
        assert isinstance(hw.thermometer, FakeThermometer)
        assert isinstance(hw.camera, FakeCamera)
        assert isinstance(hw.outputs, GateOutputs)
        hw.thermometer.set(36.6, 21.0)
        assert hw.thermometer.read() == (36.61, 20.99)
        hw.camera.start()
        assert hw.camera.wait_frame(0).image.shape == (240, 320, 3)
        hw.outputs.open_for(5)
        assert hw.outputs.is_open
    assert not hw.outputs.is_open  # closing the bundle closes the gate


def test_two_fake_kiosks_do_not_share_pins():
    settings = parse_config(CONFIG)
    with build_hardware(settings), build_hardware(settings):
        pass


def test_pi_hardware_off_pi_is_a_clear_error_never_a_fake(monkeypatch):
    settings = parse_config(CONFIG + '[hardware]\nkind = "pi"\n')
    with pytest.raises(DriverError) as info:
        build_hardware(settings)
    assert "I2C" in str(info.value) or "Blinka" in str(info.value) or "GPIO" in str(info.value)
    # the relay it had already claimed was released (closed) on the way out
    with GateOutputs(settings.outputs):
        pass
    Device.pin_factory.reset()


def test_pi_with_picamera2_missing_names_the_package():
    settings = parse_config(CONFIG + '[hardware]\nkind = "pi"\n[camera]\nsource = "picamera2"\n')
    with pytest.raises(DriverError, match="python3-picamera2"):
        build_hardware(settings)


def test_scan_prints_one_line_per_file(tmp_path, capsys):
    text = sample_pass_text(1)
    photo, empty, tiny = tmp_path / "photo.jpg", tmp_path / "empty.png", tmp_path / "tiny.png"
    cv2.imwrite(str(photo), render_frame(text, 1280, 720, seed=1, hard=False))
    cv2.imwrite(str(empty), render_frame(None, 640, 480, seed=2))
    # a pass rendered at 1 pixel per module, cropped to the code (no quiet zone)
    cv2.imwrite(str(tiny), np.where(qr_modules(text) == 1, 0, 255).astype(np.uint8)[4:-4, 4:-4])
    assert main(["scan", str(photo), str(empty), str(tiny)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{photo}\t{text}", f"{empty}", f"{tiny}\t{text}"]


def test_scan_json_and_unreadable_files(tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert main(["scan", "--json", "--backend", "pyzbar", str(bad), str(tmp_path / "missing.png")]) == 1
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert rows == [
        {"file": str(bad), "texts": [], "error": "not an image OpenCV can read"},
        {"file": str(tmp_path / "missing.png"), "texts": [], "error": "no such file"},
    ]
    assert f"checkpoint: error: {bad}: not an image OpenCV can read" in captured.err


def test_scan_escapes_control_characters(tmp_path, capsys):
    import segno

    path = tmp_path / "odd.png"
    segno.make("line1\nline2\ttab", micro=False).save(str(path), scale=6)
    assert main(["scan", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}\tline1\\nline2\\ttab\n"


def test_selftest_on_fake_hardware_passes_every_part(write_config, capsys):
    path = write_config(CONFIG + "[outputs]\nbuzzer_pin = 22\ngreen_pin = 5\n[camera]\nwidth = 640\nheight = 480\n")
    assert main(["selftest", "--config", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "selftest of gate east-1, hardware fake"
    verdicts = {line.split()[1]: line.split()[0] for line in out[1:]}
    assert verdicts == {"thermometer": "PASS", "camera": "PASS", "relay": "PASS"}
    assert SELFTEST_TEXT[:40] in out[2]
    assert "buzzer and green light signalled" in out[3]


def test_selftest_reports_a_failing_thermometer(write_config, capsys, monkeypatch):
    path = write_config(CONFIG)
    real_build = build_hardware

    def broken(settings):
        hw = real_build(settings)
        hw.thermometer.set_absent(True)
        return hw

    monkeypatch.setattr("drivers.hardware.build_hardware", broken)
    assert main(["selftest", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  thermometer  thermometer at 0x5a: object_temperature failed 4 times" in out
    assert "PASS  camera" in out


def test_selftest_with_a_bad_config_exits_78(write_config):
    path = write_config(CONFIG + "[outputs]\nrelay_pin = 41\n")
    assert main(["selftest", "--config", str(path)]) == 78


def test_selftest_on_pi_hardware_off_pi_is_one_line(write_config, capsys):
    path = write_config(CONFIG + '[hardware]\nkind = "pi"\n')
    assert main(["selftest", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("checkpoint: error: hardware: ") and err.count("\n") == 1
    Device.pin_factory.reset()


def test_config_loads_with_default_backend_zxing(write_config):
    assert load_config(write_config(CONFIG)).qr.backend == "zxing"
