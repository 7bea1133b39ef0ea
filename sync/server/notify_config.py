"""Which channels the registry sends street-office notices to: a TOML file
given to `checkpoint registry serve --notify FILE`.

    offline_after_min = 30        # a gate silent this long: one gate_offline notice
    retry_base_s = 10             # first retry after ~10 s, doubling, jittered
    retry_cap_s = 1800            # ... up to 30 minutes apart, never giving up

    [[channels]]
    name = "street-office-mail"
    type = "email"                # email | webhook | mqtt
    sites = ["site-1", "site-2"]  # default ["*"]: every site on this registry
    notices = ["fever_case", "gate_unstaffed", "gate_offline"]   # the default
    host = "smtp.example.org"
    port = 587
    security = "starttls"         # none | starttls | tls
    username = "gate"
    password_file = "smtp.password"
    sender = "gate@example.org"
    recipients = ["duty@street.example.org"]

    [[channels]]
    name = "district-hook"
    type = "webhook"
    url = "https://district.example.org/hooks/gates"
    secret_file = "webhook.secret"   # HMAC-SHA256 key

    [[channels]]
    name = "dashboard"
    type = "mqtt"
    host = "127.0.0.1"
    topic_prefix = "checkpoint"      # publishes <prefix>/<site>/<kind>, QoS 1

Secrets live in files beside the config (paths relative to it), never in it.
Unknown keys are refused; errors name the file, the key and the value.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.config import ConfigError
from gateway.files import read_text_file

NOTICE_KINDS = ("fever_case", "gate_unstaffed", "gate_offline")
NoticeKind = Literal["fever_case", "gate_unstaffed", "gate_offline"]
SiteId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9_.-]*)$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Channel(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    sites: list[SiteId] = Field(default_factory=lambda: ["*"], min_length=1)
    notices: list[NoticeKind] = Field(default_factory=lambda: list(NOTICE_KINDS), min_length=1)
    timeout_s: float = Field(10.0, gt=0, le=120, description="One delivery attempt's time limit")

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data):
        if isinstance(data, dict):
            inline = sorted(k for k in ("password", "secret") if k in data)
            if inline:
                raise ValueError(f"{inline[0]}: put it in a file and name it with {inline[0]}_file")
        return data

    def wants(self, site_id: str, kind: str) -> bool:
        return kind in self.notices and ("*" in self.sites or site_id in self.sites)


class EmailChannel(_Channel):
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password_file: Path | None = None
    sender: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    recipients: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)
    password: str | None = Field(None, exclude=True, repr=False, description="read from password_file")


class WebhookChannel(_Channel):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    secret_file: Path
    secret: bytes = Field(b"", exclude=True, repr=False, description="read from secret_file")


class MqttChannel(_Channel):
    type: Literal["mqtt"]
    host: str = Field(min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    tls: bool = False
    username: str | None = None
    password_file: Path | None = None
    topic_prefix: str = Field("checkpoint", min_length=1, max_length=100, pattern=r"^[^#+]+$")
    password: str | None = Field(None, exclude=True, repr=False, description="read from password_file")


Channel = Annotated[Union[EmailChannel, WebhookChannel, MqttChannel], Field(discriminator="type")]


class NotifyConfig(_Strict):
    offline_after_min: float = Field(30.0, gt=0, le=7 * 24 * 60)
    retry_base_s: float = Field(10.0, ge=0.1, le=3600)
    retry_cap_s: float = Field(1800.0, ge=1, le=86400)
    channels: list[Channel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self):
        names = [c.name for c in self.channels]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"channel names must be unique; repeated: {', '.join(doubled)}")
        return self

    def wants(self, kind: str) -> bool:
        return any(kind in c.notices for c in self.channels)


def _format_error(name: str, err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{name}: {loc}: required key is missing"
    if err["type"] == "extra_forbidden":
        return f"{name}: {loc}: unknown key (check the spelling)"
    value = err.get("input")
    if isinstance(value, dict):
        return f"{name}: {loc or '(top level)'}: {msg}"
    return f"{name}: {loc} = {value!r}: {msg}"


def _read_secret(config_path: Path, secret: Path, key: str) -> str:
    path = secret if secret.is_absolute() else config_path.resolve().parent / secret
    text = read_text_file(path, "secret", lambda problem: ConfigError(config_path, [f"{config_path.name}: {key}: {problem}"]))
    if not text.strip():
        raise ConfigError(config_path, [f"{config_path.name}: {key}: {path} is empty"])
    return text.strip()


def parse_notify_config(text: str, path: Path | str = "notify.toml") -> NotifyConfig:
    """Validate TOML text and read the secret files it names (relative to `path`)."""
    path = Path(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"{path.name}: not valid TOML: {exc}"]) from None
    try:
        config = NotifyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(path, [_format_error(path.name, e) for e in exc.errors()]) from None
    channels = []
    for i, channel in enumerate(config.channels):
        where = f"channels.{i}"
        if isinstance(channel, WebhookChannel):
            secret = _read_secret(path, channel.secret_file, f"{where}.secret_file")
            channel = channel.model_copy(update={"secret": secret.encode("utf-8")})
        elif channel.password_file is not None:
            password = _read_secret(path, channel.password_file, f"{where}.password_file")
            channel = channel.model_copy(update={"password": password})
        channels.append(channel)
    return config.model_copy(update={"channels": channels})


def load_notify_config(path: Path | str) -> NotifyConfig:
    """Read and validate the notify config; raises gateway.config.ConfigError."""
    path = Path(path)
    text = read_text_file(path, "notify config", lambda problem: ConfigError(path, [problem]))
    return parse_notify_config(text, path)
