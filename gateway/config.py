"""Kiosk configuration: one TOML file, validated at start-up.

Every key has a description and bounds; unknown keys are errors, so a typo is
caught at start-up instead of silently falling back to a default. Relative
paths are resolved against the directory of the config file.

    settings = load_config("gate.toml")     # raises ConfigError

`ConfigError.problems` holds one line per problem, each naming the file, the
key path, the value and what was expected, e.g.::

    gate.toml: outputs.relay_pin = 41: must be a BCM GPIO number 2-27
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from gateway.files import read_text_file

EX_CONFIG = 78  # sysexits.h: a bad config must not make systemd restart-loop


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = Path(path)
        self.problems = problems
        super().__init__("\n".join(problems))


def _bcm_pin(value: int | None) -> int | None:
    if value is not None and not 2 <= value <= 27:
        raise ValueError("must be a BCM GPIO number 2-27")
    return value


BcmPin = Annotated[int | None, AfterValidator(_bcm_pin)]
Identifier = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The rules a config posts when it names none (the policy-built rules replace them).
DEFAULT_RULES = (
    "出入请出示通行证，佩戴口罩，配合测温",
    "体温≥37.3℃者请到发热门诊就诊",
    "快递外卖请放至指定位置，不得入内",
)


class GateSettings(Section):
    id: Identifier = Field(description="This gate's id, unique within the site")
    site: Identifier = Field(description="The community (site) this gate belongs to")
    direction: Literal["in", "out", "both"] = Field(
        "both", description="Which way people pass: in, out or both (a lane that does both)"
    )
    name: str = Field("", max_length=64, description="Name shown on the guard screen, e.g. 东门")
    rules: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=lambda: list(DEFAULT_RULES),
        max_length=20,
        description="Rules posted at this entrance (公示), shown on the screen; the kiosk builds the "
        "main rules from the policy in force (gateway/posted.py) and adds lines given here",
    )


class TemperatureSettings(Section):
    threshold_c: float = Field(
        37.3, ge=34.0, le=39.0, description="Fever threshold, body-equivalent, inclusive"
    )
    offset_c: float = Field(
        0.0, ge=-2.0, le=5.0, description="Skin-to-body compensation added to the raw object value"
    )
    floor_c: float = Field(
        30.0, ge=20.0, le=35.0, description="Raw object below this means nobody there / too far"
    )
    ceiling_c: float = Field(43.0, ge=40.0, le=50.0, description="Raw object above this is not real")
    spread_c: float = Field(
        0.3, gt=0.0, le=2.0, description="Max spread (max-min) of a stable sample window"
    )
    min_samples: int = Field(5, ge=1, le=100, description="Samples in a stable window")
    sample_hz: float = Field(10.0, gt=0.0, le=50.0, description="Thermometer sampling rate")
    reading_timeout_s: float = Field(
        6.0, gt=0.0, le=60.0, description="Pass shown but no stable reading: give up after this"
    )
    remeasure_window_s: float = Field(
        120.0, ge=0.0, le=1800.0, description="A second reading within this confirms or clears a flag"
    )
    ambient_min_c: float = Field(16.0, ge=-40.0, le=40.0, description="Warn below this ambient")
    ambient_max_c: float = Field(40.0, ge=0.0, le=60.0, description="Warn above this ambient")
    compensation: dict[str, float] = Field(
        default_factory=dict,
        description='Optional extra offset by ambient, e.g. {"10" = 0.8, "20" = 0.4}; interpolated',
    )

    @model_validator(mode="after")
    def _ambient_band(self):
        if self.ambient_min_c >= self.ambient_max_c:
            raise ValueError("ambient_min_c must be below ambient_max_c")
        if self.floor_c >= self.ceiling_c:
            raise ValueError("floor_c must be below ceiling_c")
        for key in self.compensation:
            try:
                float(key)
            except ValueError:
                raise ValueError(f"compensation key {key!r} must be an ambient temperature") from None
        return self


class PassSettings(Section):
    issuer_keys: list[Path] = Field(
        default_factory=list, max_length=16, description="Issuer public keys (PEM files)"
    )
    passback_s: float = Field(
        30.0, ge=0.0, le=3600.0, description="Same pass, same direction within this: passback"
    )


class HardwareSettings(Section):
    kind: Literal["fake", "pi"] = Field(
        "fake", description="fake: simulated devices; pi: real MLX90614, camera and GPIO"
    )


class ThermometerSettings(Section):
    i2c_bus: int = Field(1, ge=0, le=20, description="Linux I2C bus number (/dev/i2c-N)")
    address: int = Field(0x5A, ge=0x03, le=0x77, description="MLX90614 SMBus address")
    frequency_hz: int = Field(
        50_000, ge=10_000, le=100_000, description="SMBus clock; the MLX90614 needs 10-100 kHz"
    )
    retries: int = Field(3, ge=0, le=10, description="Retries of a failed I2C read")


class CameraSettings(Section):
    source: str = Field(
        "0", min_length=1, description="Device index (0), a file path, a stream URL, or 'picamera2'"
    )
    width: int = Field(1280, ge=160, le=3840, description="Capture width in pixels")
    height: int = Field(720, ge=120, le=2160, description="Capture height in pixels")
    fps: float = Field(30.0, gt=0.0, le=120.0, description="Capture frame rate")
    stale_after_s: float = Field(
        2.0, gt=0.0, le=60.0, description="No new (or only identical) frames for this: camera lost"
    )


class QrSettings(Section):
    backend: Literal["zxing", "pyzbar"] = Field("zxing", description="QR decoder backend")


class OutputSettings(Section):
    relay_pin: BcmPin = Field(17, description="BCM pin driving the gate relay")
    relay_active_high: bool = Field(True, description="False for active-low relay boards")
    open_s: float = Field(3.0, gt=0.0, le=60.0, description="How long the gate stays open")
    buzzer_pin: BcmPin = Field(None, description="BCM pin of the buzzer (optional)")
    green_pin: BcmPin = Field(None, description="BCM pin of the green light (optional)")
    red_pin: BcmPin = Field(None, description="BCM pin of the red light (optional)")
    amber_pin: BcmPin = Field(None, description="BCM pin of the amber light (optional)")
    beam_pin: BcmPin = Field(
        None, description="BCM pin of an optional pass-through beam (an input): closes the gate once "
        "one person has passed, logs a tailgate when broken twice in one opening"
    )

    @model_validator(mode="after")
    def _distinct_pins(self):
        pins = [
            p
            for p in (self.relay_pin, self.buzzer_pin, self.green_pin, self.red_pin, self.amber_pin, self.beam_pin)
            if p is not None
        ]
        if len(pins) != len(set(pins)):
            raise ValueError("each output needs its own pin")
        return self


class PolicySettings(Section):
    enforcement: Literal["hard", "soft"] = Field(
        "hard", description="hard: deny on fever/failure (guard may override); soft: admit and alert"
    )
    visitor_mode: Literal["register", "deny"] = Field(
        "deny", description="register (1 Feb rule) or deny unless a filed special case (9 Feb rule)"
    )
    file: Path | None = Field(
        None, description="Optional local policy document (JSON); the registry's copy wins when newer"
    )


class JournalSettings(Section):
    path: Path = Field(Path("journal.db"), description="The offline SQLite log")
    retention_days: int = Field(
        14, ge=1, le=3650, description="Purge acked events older than this; unacked rows are kept"
    )
    min_free_mb: int = Field(
        50, ge=0, le=100_000, description="Below this much free disk the guard gets an alarm"
    )


class ScreenSettings(Section):
    host: str = Field("127.0.0.1", description="Address the guard screen listens on")
    port: int = Field(8080, ge=1, le=65535, description="Port of the guard screen")
    language: Literal["zh", "en"] = Field("zh", description="Default language of the screen")
    pin: str | None = Field(
        None,
        pattern=r"^[0-9]{4,8}$",
        description="PIN required from anywhere but localhost (guard booth over the LAN)",
    )

    @model_validator(mode="after")
    def _long_pin_off_localhost(self):
        # Off localhost the PIN is all that stands between the LAN and the gate.
        if self.host not in ("127.0.0.1", "::1", "localhost") and self.pin and len(self.pin) < 6:
            raise ValueError(f"a screen listening on {self.host} needs a PIN of 6 or more digits")
        return self


class SyncSettings(Section):
    server: str = Field(description="Registry server URL", pattern=r"^https?://")
    token: str | None = Field(None, min_length=16, description="This gate's bearer token")
    token_file: Path | None = Field(None, description="File holding the gate's bearer token")
    interval_s: float = Field(30.0, ge=1.0, le=3600.0, description="Periodic sync interval")
    staleness_limit_h: float = Field(
        24.0, gt=0.0, le=720.0, description="Registry older than this: degraded mode"
    )
    request_timeout_s: float = Field(
        5.0, ge=0.2, le=120.0,
        description="Give up on one request after this and retry later (uploads are exactly once anyway)",
    )

    @model_validator(mode="after")
    def _one_token(self):
        if (self.token is None) == (self.token_file is None):
            raise ValueError("give exactly one of token or token_file")
        return self


class Settings(Section):
    gate: GateSettings
    temperature: TemperatureSettings = TemperatureSettings()
    passes: PassSettings = PassSettings()
    hardware: HardwareSettings = HardwareSettings()
    thermometer: ThermometerSettings = ThermometerSettings()
    camera: CameraSettings = CameraSettings()
    qr: QrSettings = QrSettings()
    outputs: OutputSettings = OutputSettings()
    policy: PolicySettings = PolicySettings()
    journal: JournalSettings = JournalSettings()
    screen: ScreenSettings = ScreenSettings()
    sync: SyncSettings | None = None

    source: Path | None = Field(None, exclude=True, description="The file this came from")


_PATH_KEYS = (
    ("passes", "issuer_keys"),
    ("policy", "file"),
    ("journal", "path"),
    ("sync", "token_file"),
)


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make relative paths relative to the config file, not to the cwd."""

    def resolve(value):
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str(base / value)
        return value

    for section, key in _PATH_KEYS:
        table = raw.get(section)
        if not isinstance(table, dict) or key not in table:
            continue
        value = table[key]
        table[key] = [resolve(v) for v in value] if isinstance(value, list) else resolve(value)


def _format_error(name: str, raw: dict[str, Any], err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{name}: {loc}: required key is missing"
    if err["type"] == "extra_forbidden":
        return f"{name}: {loc}: unknown key (check the spelling; see deploy/*.toml)"
    value = err.get("input")
    if isinstance(value, dict):  # a section-level check: name the section only
        return f"{name}: {loc or '(top level)'}: {msg}"
    return f"{name}: {loc} = {value!r}: {msg}"


def parse_config(text: str, path: Path | str = "config.toml") -> Settings:
    """Validate TOML text. Paths resolve against `path`'s directory."""
    path = Path(path)
    name = path.name
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"{name}: not valid TOML: {exc}"]) from None
    _resolve_paths(raw, path.resolve().parent)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems = [_format_error(name, raw, e) for e in exc.errors()]
        raise ConfigError(path, problems) from None
    return settings.model_copy(update={"source": path.resolve()})


def load_config(path: Path | str) -> Settings:
    """Read and validate a config file; raises ConfigError with every problem."""
    path = Path(path)
    text = read_text_file(path, "config", lambda problem: ConfigError(path, [problem]))
    return parse_config(text, path)


def read_token(sync: SyncSettings) -> str:
    """The gate's bearer token, from the config or its token file."""
    if sync.token is not None:
        return sync.token
    try:
        token = Path(sync.token_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(sync.token_file, [f"{sync.token_file}: cannot read token: {exc}"]) from None
    if not token:
        raise ConfigError(sync.token_file, [f"{sync.token_file}: token file is empty"])
    return token
