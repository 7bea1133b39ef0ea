"""Signed passes: a short ASCII text in a QR code, verified offline.

A pass looks like ``CP1:<base64url>`` and is at most 160 characters, so its
QR code stays small enough to print and to scan at a distance. The base64url
part (no padding, canonical) decodes to::

    kid        4 bytes   first 4 bytes of SHA-256 of the issuer's raw public key
    kind       1 byte    see KIND_CODES (codes are never reused)
    valid_from 4 bytes   unsigned seconds since 1970-01-01 UTC, big-endian
    valid_to   4 bytes   same; the pass is valid while valid_from <= now < valid_to
    pass_id    1 byte length + ASCII
    person_id  1 byte length + ASCII
    site_id    1 byte length + ASCII
    signature  64 bytes  Ed25519 over b"CP1:" + everything above

The version prefix is signed too, so a payload cannot be replayed under a
future format. Binary rather than readable text because the 64-byte signature
already takes 86 of the 160 characters; this leaves 37 characters for the three
ids together.

`verify()` never raises: anything that is not a well-formed pass, whatever its
type, length or bytes, comes back as a verdict with reason ``malformed``.
Revocation, person status and the gate's site are the registry's and the
decision's business (`gateway.decision`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PREFIX = "CP1:"
MAX_LEN = 160
SIGNATURE_LEN = 64
KID_LEN = 4

# Stable wire codes. Append new kinds; never renumber or reuse a code.
KIND_CODES: dict[str, int] = {
    "resident": 1,
    "staff": 2,  # property management, community workers
    "volunteer": 3,  # one-day shift volunteers (SPEC rule 14)
    "visitor": 4,
    "courier": 5,  # delivery riders: never admitted, pointed to the drop-off
    "vehicle": 6,  # a community vehicle: pass_id carries the plate, person_id the household (gateway/vehicles.py)
}
KINDS: tuple[str, ...] = tuple(KIND_CODES)
_KIND_BY_CODE = {code: kind for kind, code in KIND_CODES.items()}

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_HEADER = struct.Struct(">4sBII")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_TS = 2**32 - 1
# Characters left for pass_id + person_id + site_id together (37 for CP1).
ID_BUDGET = (MAX_LEN - len(PREFIX)) * 3 // 4 - SIGNATURE_LEN - _HEADER.size - 3


class PassKeyError(ValueError):
    """A key file is missing, unreadable, or not an Ed25519 key of the right kind."""


class PassFormatError(ValueError):
    """Pass fields that cannot be encoded (bad id, too long, bad dates)."""


@dataclass(frozen=True)
class PassVerdict:
    """What `verify()` found. Payload fields are None when the text did not parse.

    `signature_ok` tells whether the payload fields can be trusted: for a
    forged pass they are what the forger wrote.
    """

    valid: bool
    reasons: list[str]
    detail: str = ""
    kid: str | None = None
    pass_id: str | None = None
    person_id: str | None = None
    site_id: str | None = None
    kind: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    signature_ok: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready verdict (times as ISO 8601 UTC)."""
        return {
            "valid": self.valid,
            "reasons": list(self.reasons),
            "detail": self.detail,
            "kid": self.kid,
            "pass_id": self.pass_id,
            "person_id": self.person_id,
            "site_id": self.site_id,
            "kind": self.kind,
            "valid_from": _iso(self.valid_from),
            "valid_to": _iso(self.valid_to),
            "signature_ok": self.signature_ok,
        }


@dataclass(frozen=True)
class _Parsed:
    kid: str
    kind: str
    valid_from: datetime
    valid_to: datetime
    pass_id: str
    person_id: str
    site_id: str
    signed: bytes = field(repr=False)
    signature: bytes = field(repr=False)


# --- keys ---------------------------------------------------------------------------


def generate_keypair() -> tuple[bytes, bytes]:
    """A new issuer key pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, public_pem(private.public_key())


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(public_key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Short stable id of an issuer key: 8 hex digits of SHA-256 of the raw public key."""
    if isinstance(public_key, Ed25519PrivateKey):
        public_key = public_key.public_key()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KID_LEN].hex()


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """Read an issuer private key (PEM). Raises PassKeyError naming the file."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PassKeyError(f"{path}: not an unencrypted PEM private key ({_short(exc)})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PassKeyError(f"{path}: is a {type(key).__name__}, expected an Ed25519 private key")
    return key


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """Read one issuer public key (PEM). Raises PassKeyError naming the file."""
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        raise PassKeyError(f"{path}: is a private key; give the kiosk only the .pub file")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise PassKeyError(f"{path}: not a PEM public key ({_short(exc)})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PassKeyError(f"{path}: is a {type(key).__name__}, expected an Ed25519 public key")
    return key


def load_public_keys(paths: Iterable[Path | str]) -> dict[str, Ed25519PublicKey]:
    """Issuer public keys by key id, for `verify()`."""
    return {key_id(key): key for key in map(load_public_key, paths)}


def _read_key_file(path: Path | str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PassKeyError(f"{path}: no such key file") from None
    except OSError as exc:
        raise PassKeyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > 64_000:
        raise PassKeyError(f"{path}: too large to be a key file ({len(data)} bytes)")
    return data


def _short(exc: Exception) -> str:
    return str(exc).split("\n")[0][:120] or type(exc).__name__


# --- issuing ------------------------------------------------------------------------


def issue_pass(
    private_key: Ed25519PrivateKey,
    *,
    pass_id: str,
    person_id: str,
    site_id: str,
    kind: str,
    valid_from: datetime,
    valid_to: datetime,
) -> str:
    """Sign a pass and return its QR text (ASCII, at most 160 characters).

    Ids must match ``[A-Za-z0-9][A-Za-z0-9_.-]*``; times must be timezone-aware
    (a naive time is taken as UTC) and are stored to the second. Raises
    PassFormatError when the fields cannot make a valid pass.
    """
    for name, value in (("pass_id", pass_id), ("person_id", person_id), ("site_id", site_id)):
        if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
            raise PassFormatError(
                f"{name} = {value!r}: must be 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)"
            )
    if kind not in KIND_CODES:
        raise PassFormatError(f"kind = {kind!r}: must be one of {', '.join(KINDS)}")
    start, end = _to_ts(valid_from, "valid_from"), _to_ts(valid_to, "valid_to")
    if end <= start:
        raise PassFormatError("valid_to must be after valid_from")
    payload = _HEADER.pack(
        bytes.fromhex(key_id(private_key)), KIND_CODES[kind], start, end
    ) + b"".join(_lv(v) for v in (pass_id, person_id, site_id))
    signature = private_key.sign(PREFIX.encode() + payload)
    text = PREFIX + _b64encode(payload + signature)
    if len(text) > MAX_LEN:
        raise PassFormatError(
            f"pass would be {len(text)} characters (limit {MAX_LEN}): shorten the ids; "
            f"pass_id + person_id + site_id may total at most {ID_BUDGET} characters"
        )
    return text


def _lv(value: str) -> bytes:
    raw = value.encode("ascii")
    return bytes([len(raw)]) + raw


def _to_ts(moment: datetime, name: str) -> int:
    if not isinstance(moment, datetime):
        raise PassFormatError(f"{name} must be a datetime")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    seconds = int((moment - _EPOCH).total_seconds())
    if not 0 <= seconds <= _MAX_TS:
        raise PassFormatError(f"{name} = {moment.isoformat()}: outside 1970-2106")
    return seconds


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- verifying ----------------------------------------------------------------------


def verify(text: object, keys: Mapping[str, Ed25519PublicKey], now: datetime) -> PassVerdict:
    """Check a scanned text against the issuer keys at moment `now`.

    Pass the *trusted* now (max of wall clock and the journal's watermark), so
    a clock rolled back cannot revive an expired pass. Never raises: anything
    unparseable is ``malformed``; then ``unknown_issuer``, ``bad_signature``,
    ``not_yet_valid`` or ``expired``. Validity is only judged once the
    signature holds.
    """
    parsed = _parse(text)
    if isinstance(parsed, str):
        return PassVerdict(valid=False, reasons=["malformed"], detail=parsed)
    fields = dict(
        kid=parsed.kid,
        pass_id=parsed.pass_id,
        person_id=parsed.person_id,
        site_id=parsed.site_id,
        kind=parsed.kind,
        valid_from=parsed.valid_from,
        valid_to=parsed.valid_to,
    )
    key = keys.get(parsed.kid) if isinstance(keys, Mapping) else None
    if key is None:
        return PassVerdict(
            valid=False, reasons=["unknown_issuer"], detail=f"no issuer key {parsed.kid}", **fields
        )
    try:
        key.verify(parsed.signature, parsed.signed)
    except (InvalidSignature, AttributeError, TypeError, ValueError):
        return PassVerdict(
            valid=False, reasons=["bad_signature"], detail="signature does not match", **fields
        )
    reasons = validity_reasons(parsed.valid_from, parsed.valid_to, now)
    return PassVerdict(
        valid=not reasons,
        reasons=list(reasons),
        detail=_validity_detail(reasons, fields),
        signature_ok=True,
        **fields,
    )


def validity_reasons(valid_from: datetime, valid_to: datetime, now: datetime) -> tuple[str, ...]:
    """('not_yet_valid',), ('expired',) or () for valid_from <= now < valid_to.

    A naive `now` is taken as UTC. A `now` that is not a datetime at all cannot
    prove validity, so the pass counts as expired (fail closed).
    """
    if not isinstance(now, datetime):
        return ("expired",)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    if now < valid_from:
        return ("not_yet_valid",)
    if now >= valid_to:
        return ("expired",)
    return ()


def _validity_detail(reasons: tuple[str, ...], fields: dict) -> str:
    if "expired" in reasons:
        return f"expired at {_iso(fields['valid_to'])}"
    if "not_yet_valid" in reasons:
        return f"valid from {_iso(fields['valid_from'])}"
    return ""


def _parse(text: object) -> _Parsed | str:
    """The parsed pass, or a short English reason why it is malformed."""
    if not isinstance(text, str):
        return f"not text ({type(text).__name__})"
    if len(text) > MAX_LEN:
        return f"too long ({len(text)} > {MAX_LEN} characters)"
    if not text.isascii():
        return "not ASCII"
    if not text.startswith(PREFIX):
        if re.match(r"CP\d+:", text):
            return f"unsupported pass version {text.split(':', 1)[0]}"
        return "not a pass (wrong prefix)"
    body = text[len(PREFIX):]
    if not _B64URL.fullmatch(body) or len(body) % 4 == 1:
        return "bad base64url"
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return "bad base64url"
    # Only the canonical spelling is accepted: otherwise unused low bits of the
    # last character would give other texts for the same signed bytes.
    if _b64encode(raw) != body:
        return "non-canonical base64url"
    if len(raw) < _HEADER.size + 3 + SIGNATURE_LEN:
        return "truncated"
    payload, signature = raw[:-SIGNATURE_LEN], raw[-SIGNATURE_LEN:]
    kid, kind_code, start, end = _HEADER.unpack_from(payload)
    kind = _KIND_BY_CODE.get(kind_code)
    if kind is None:
        return f"unknown pass kind code {kind_code}"
    ids: list[str] = []
    offset = _HEADER.size
    for _ in range(3):
        if offset >= len(payload):
            return "truncated"
        length = payload[offset]
        value = payload[offset + 1 : offset + 1 + length]
        if len(value) != length:
            return "truncated"
        try:
            decoded = value.decode("ascii")
        except UnicodeDecodeError:
            return "id is not ASCII"
        if not ID_PATTERN.fullmatch(decoded):
            return "bad id"
        ids.append(decoded)
        offset += 1 + length
    if offset != len(payload):
        return "trailing bytes"
    if end <= start:
        return "valid_to is not after valid_from"
    return _Parsed(
        kid=kid.hex(),
        kind=kind,
        valid_from=datetime.fromtimestamp(start, timezone.utc),
        valid_to=datetime.fromtimestamp(end, timezone.utc),
        pass_id=ids[0],
        person_id=ids[1],
        site_id=ids[2],
        signed=PREFIX.encode() + payload,
        signature=signature,
    )


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
