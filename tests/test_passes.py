"""Signed passes: format, verification, hostile input, key files, CLI."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import passes
from gateway.passes import (
    ID_BUDGET,
    MAX_LEN,
    PREFIX,
    PassFormatError,
    PassKeyError,
    generate_keypair,
    issue_pass,
    key_id,
    load_private_key,
    load_public_keys,
    verify,
)

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def issuer():
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def keys(issuer):
    return {key_id(issuer): issuer.public_key()}


def make_pass(key, **changes) -> str:
    fields = dict(
        pass_id="P7K2M9QX4B",
        person_id="R-0301-02",
        site_id="site-1",
        kind="resident",
        valid_from=T0,
        valid_to=T0 + timedelta(days=14),
    )
    fields.update(changes)
    return issue_pass(key, **fields)


def raw_of(text: str) -> bytes:
    body = text[len(PREFIX):]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def text_of(raw: bytes) -> str:
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- format and round trip --------------------------------------------------------


def test_issued_pass_is_short_ascii_with_version_prefix_and_verifies(issuer, keys):
    text = make_pass(issuer)
    assert text.startswith("CP1:") and text.isascii() and len(text) <= MAX_LEN

    verdict = verify(text, keys, T0 + timedelta(hours=1))

    assert verdict.valid and verdict.reasons == [] and verdict.signature_ok
    assert (verdict.pass_id, verdict.person_id, verdict.site_id, verdict.kind) == (
        "P7K2M9QX4B", "R-0301-02", "site-1", "resident",
    )
    assert verdict.valid_from == T0 and verdict.valid_to == T0 + timedelta(days=14)
    assert verdict.kid == key_id(issuer)


def test_key_id_is_short_stable_and_the_same_for_private_and_public(issuer):
    kid = key_id(issuer.public_key())
    assert kid == key_id(issuer) == key_id(issuer.public_key())
    assert len(kid) == 8 and int(kid, 16) >= 0
    assert kid != key_id(Ed25519PrivateKey.generate())


@pytest.mark.parametrize("kind", passes.KINDS)
def test_every_kind_round_trips(issuer, keys, kind):
    assert verify(make_pass(issuer, kind=kind), keys, T0).kind == kind


def test_ids_may_use_the_whole_budget_but_not_more(issuer, keys):
    # Three ids that together use exactly the budget still make a <=160 pass.
    a, b = "A" * (ID_BUDGET - 10), "B" * 5
    longest = make_pass(issuer, pass_id=a, person_id=b, site_id="C" * 5)
    assert len(longest) <= MAX_LEN and verify(longest, keys, T0).valid
    with pytest.raises(PassFormatError, match="at most 37 characters"):
        make_pass(issuer, pass_id=a + "X", person_id=b, site_id="C" * 5)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"person_id": "张三"}, "person_id"),
        ({"site_id": ""}, "site_id"),
        ({"pass_id": "a b"}, "pass_id"),
        ({"kind": "alien"}, "kind"),
        ({"valid_to": T0}, "after valid_from"),
        ({"valid_from": datetime(1960, 1, 1, tzinfo=timezone.utc)}, "1970-2106"),
    ],
)
def test_bad_fields_are_refused_at_issue_time(issuer, changes, message):
    with pytest.raises(PassFormatError, match=message):
        make_pass(issuer, **changes)


# --- validity window ----------------------------------------------------------------


def test_validity_window_is_from_inclusive_to_exclusive(issuer, keys):
    text = make_pass(issuer, valid_to=T0 + timedelta(days=1))
    assert verify(text, keys, T0 - timedelta(seconds=1)).reasons == ["not_yet_valid"]
    assert verify(text, keys, T0).valid
    assert verify(text, keys, T0 + timedelta(days=1) - timedelta(seconds=1)).valid
    expired = verify(text, keys, T0 + timedelta(days=1))
    assert expired.reasons == ["expired"] and not expired.valid and expired.signature_ok
    assert expired.person_id == "R-0301-02"  # the payload is still reported


def test_naive_now_is_utc_and_a_non_datetime_now_fails_closed(issuer, keys):
    text = make_pass(issuer)
    assert verify(text, keys, T0.replace(tzinfo=None) + timedelta(hours=1)).valid
    assert verify(text, keys, "2026-02-01").reasons == ["expired"]


# --- signatures and issuers -----------------------------------------------------------


def test_pass_from_another_issuer_is_unknown_issuer(keys):
    verdict = verify(make_pass(Ed25519PrivateKey.generate()), keys, T0)
    assert verdict.reasons == ["unknown_issuer"] and not verdict.signature_ok


def test_changed_payload_is_bad_signature(issuer, keys):
    raw = bytearray(raw_of(make_pass(issuer, person_id="R-0301-02")))
    at = bytes(raw).index(b"R-0301-02") + len("R-0301-0")
    raw[at] = ord("3")  # R-0301-03: someone else's flat
    verdict = verify(text_of(bytes(raw)), keys, T0)
    assert verdict.reasons == ["bad_signature"] and verdict.person_id == "R-0301-03"
    assert not verdict.signature_ok


def test_forgery_under_a_trusted_key_id_is_bad_signature(issuer, keys):
    forger = Ed25519PrivateKey.generate()
    raw = bytearray(raw_of(make_pass(forger)))
    raw[:4] = bytes.fromhex(key_id(issuer))
    # Re-sign the payload with the forger's key under the trusted kid.
    payload = bytes(raw[:-64])
    forged = text_of(payload + forger.sign(PREFIX.encode() + payload))
    assert verify(forged, keys, T0).reasons == ["bad_signature"]


def test_key_rotation_verifies_passes_of_every_held_key(issuer):
    new = Ed25519PrivateKey.generate()
    both = {key_id(k): k.public_key() for k in (issuer, new)}
    assert verify(make_pass(issuer), both, T0).valid
    assert verify(make_pass(new), both, T0).valid


# --- malformed and hostile input ------------------------------------------------------


def _near_valid(issuer) -> list[str]:
    text = make_pass(issuer)
    return [
        text[:-1],  # truncated by one character
        text[: len(text) // 2],  # truncated by half
        text + "A",  # one character more
        text + "AAAA",  # three more bytes after the signature
        text.lower(),
        " " + text,
        text + "\n",
        "CP2:" + text[4:],  # a future version
        "cp1:" + text[4:],
        text.replace("CP1:", "CP1"),
        PREFIX + text[4:] + "=",  # padding is not canonical
        PREFIX,
    ]


HOSTILE = [
    "",
    " ",
    "\x00",
    "\x00" * 100,
    "'; DROP TABLE events; --",
    "' OR '1'='1",
    "1; DELETE FROM registry WHERE 1=1",
    "<script>alert(1)</script>",
    '<img src=x onerror="fetch(\'//evil\')">',
    "javascript:alert(document.cookie)",
    "{{7*7}}${7*7}",
    "A" * 5000,
    "CP1:" + "A" * 5000,
    "CP1:" + "A" * 156,
    "\x1b[2J\x1b[31mOPEN\x1b[0m",
    "\r\n\t\x07\x08\x7f",
    "通行证：张三 3号楼 2单元",
    "CP1:通行证",
    "CP1:\u202e\u200b",
    "\ufeffCP1:AAAA",
    "https://example.com/pass?id=1",
    "WIFI:S:gate;T:WPA;P:secret;;",
    "CP1:////",
    "CP1:++++",
    "CP1:A",
    "CP1:AA",
    "CP1:" + "_" * 120,
    "\udcff",  # a lone surrogate, as a bad decoder might produce
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:20]))
def test_hostile_text_is_malformed_without_exception(keys, text):
    verdict = verify(text, keys, T0)
    assert not verdict.valid and verdict.reasons == ["malformed"] and verdict.detail


def test_near_valid_passes_are_refused(issuer, keys):
    for text in _near_valid(issuer):
        verdict = verify(text, keys, T0)
        assert not verdict.valid, text
        assert verdict.reasons == ["malformed"], (text, verdict)


@pytest.mark.parametrize("value", [None, b"CP1:AAAA", 42, 4.2, ["CP1:"], {"a": 1}, object(), bytearray(5)])
def test_non_text_is_malformed(keys, value):
    assert verify(value, keys, T0).reasons == ["malformed"]


def test_every_single_bit_flip_of_a_valid_pass_is_refused(issuer, keys):
    text = make_pass(issuer)
    tried = 0
    for i, ch in enumerate(text):
        for bit in range(7):  # stay within ASCII
            flipped = text[:i] + chr(ord(ch) ^ (1 << bit)) + text[i + 1 :]
            verdict = verify(flipped, keys, T0)
            assert not verdict.valid, (i, bit, flipped)
            assert verdict.reasons and set(verdict.reasons) <= {"malformed", "bad_signature", "unknown_issuer"}
            tried += 1
    assert tried == 7 * len(text)


def test_non_canonical_base64_of_the_same_bytes_is_refused(issuer, keys):
    text = make_pass(issuer, pass_id="P7K2M9QX4BZ")  # 106 bytes: 4 spare bits at the end
    raw = raw_of(text)
    # With 4 trailing unused bits in the last character, other spellings
    # decode to the same bytes; only the canonical one is a pass.
    assert len(raw) % 3 == 1
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    same_bytes = [
        text[:-1] + c for c in alphabet
        if c != text[-1] and raw_of(text[:-1] + c) == raw
    ]
    assert same_bytes
    for variant in same_bytes:
        assert verify(variant, keys, T0).reasons == ["malformed"]


@given(st.text(max_size=400))
@settings(max_examples=400, deadline=None)
def test_any_text_never_raises_and_is_never_valid(text):
    verdict = verify(text, {}, T0)
    assert not verdict.valid and verdict.reasons


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_any_bytes_behind_the_prefix_are_refused(issuer, keys, data):
    verdict = verify(text_of(data), keys, T0)
    assert not verdict.valid
    assert set(verdict.reasons) <= {"malformed", "bad_signature", "unknown_issuer"}


@given(st.one_of(st.none(), st.integers(), st.floats(), st.binary(), st.lists(st.text())))
@settings(max_examples=100, deadline=None)
def test_any_object_never_raises(value):
    assert verify(value, {}, T0).reasons == ["malformed"]


# --- key files ------------------------------------------------------------------------


def test_generated_key_files_load(tmp_path):
    private_pem, public_pem = generate_keypair()
    (tmp_path / "issuer.key").write_bytes(private_pem)
    (tmp_path / "issuer.pub").write_bytes(public_pem)
    private = load_private_key(tmp_path / "issuer.key")
    keys = load_public_keys([tmp_path / "issuer.pub"])
    assert list(keys) == [key_id(private)]
    assert verify(make_pass(private), keys, T0).valid


def test_bad_key_files_give_clear_errors(tmp_path):
    private_pem, _ = generate_keypair()
    (tmp_path / "priv.key").write_bytes(private_pem)
    (tmp_path / "junk.pub").write_text("hello")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pub").write_bytes(
        ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    cases = [
        ([tmp_path / "missing.pub"], "no such key file"),
        ([tmp_path / "junk.pub"], "not a PEM public key"),
        ([tmp_path / "priv.key"], "is a private key"),
        ([tmp_path / "ec.pub"], "expected an Ed25519 public key"),
    ]
    for paths, message in cases:
        with pytest.raises(PassKeyError, match=message) as err:
            load_public_keys(paths)
        assert str(paths[0]) in str(err.value)
    with pytest.raises(PassKeyError, match="not an unencrypted PEM private key"):
        load_private_key(tmp_path / "junk.pub")


# --- CLI --------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60,
        # TZ in POSIX form (China time, UTC+8) needs no tz database on the machine.
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TZ": "CST-8"},
    )


@pytest.fixture(scope="module")
def cli_keys(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli")
    result = cli("keys", "new", "--out", "keys", cwd=work)
    assert result.returncode == 0, result.stderr
    return work


def test_keys_new_writes_a_private_key_only_the_owner_can_read(cli_keys):
    private = cli_keys / "keys" / "issuer.key"
    assert private.stat().st_mode & 0o077 == 0
    assert (cli_keys / "keys" / "issuer.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = cli("keys", "new", "--out", "keys", cwd=cli_keys)
    assert again.returncode == 1
    assert again.stderr.startswith("checkpoint: error:") and "--force" in again.stderr


def test_pass_issue_png_decodes_to_the_printed_text(cli_keys):
    import cv2
    import zxingcpp

    result = cli(
        "pass", "issue", "--key", "keys/issuer.key", "--person", "R-0301-02", "--site", "site-1",
        "--kind", "resident", "--days", "14", "--png", "pass.png", cwd=cli_keys,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout.strip()
    assert text.startswith("CP1:") and len(text) <= 160
    image = cv2.imread(str(cli_keys / "pass.png"))
    assert image is not None
    assert [r.text for r in zxingcpp.read_barcodes(image)] == [text]


def test_pass_verify_exit_codes_and_at(cli_keys):
    issued = cli(
        "pass", "issue", "--key", "keys/issuer.key", "--person", "V-001", "--site", "site-1",
        "--kind", "visitor", "--days", "1", "--from", "2026-02-01T08:00+08:00", cwd=cli_keys,
    )
    assert issued.returncode == 0, issued.stderr
    text = issued.stdout.strip()

    ok = cli("pass", "verify", "--pub", "keys/issuer.pub", "--at", "2026-02-01T12:00+08:00", text, cwd=cli_keys)
    assert ok.returncode == 0, ok.stderr
    verdict = json.loads(ok.stdout)
    assert verdict["valid"] is True and verdict["reasons"] == []
    assert verdict["person_id"] == "V-001" and verdict["kind"] == "visitor"
    assert verdict["valid_from"] == "2026-02-01T00:00:00Z"

    # No UTC offset: local time (UTC+8 here), so 07:59 is before the start.
    early = cli("pass", "verify", "--pub", "keys/issuer.pub", "--at", "2026-02-01T07:59", text, cwd=cli_keys)
    assert early.returncode == 1 and json.loads(early.stdout)["reasons"] == ["not_yet_valid"]

    late = cli("pass", "verify", "--pub", "keys/issuer.pub", "--at", "2026-02-02T08:00+08:00", text, cwd=cli_keys)
    assert late.returncode == 1 and json.loads(late.stdout)["reasons"] == ["expired"]

    elsewhere = cli(
        "pass", "verify", "--pub", "keys/issuer.pub", "--at", "2026-02-01T12:00+08:00",
        "--site", "site-2", text, cwd=cli_keys,
    )
    assert elsewhere.returncode == 1 and json.loads(elsewhere.stdout)["reasons"] == ["wrong_site"]

    junk = cli("pass", "verify", "--pub", "keys/issuer.pub", "<script>alert(1)</script>", cwd=cli_keys)
    assert junk.returncode == 1 and json.loads(junk.stdout)["reasons"] == ["malformed"]


def test_pass_cli_errors_are_one_line(cli_keys):
    cases = [
        (["pass", "issue", "--key", "nope.key", "--person", "a", "--site", "s", "--kind", "resident",
          "--days", "1"], "no such key file"),
        (["pass", "issue", "--key", "keys/issuer.key", "--person", "a", "--site", "s", "--kind", "alien",
          "--days", "1"], "must be one of"),
        (["pass", "issue", "--key", "keys/issuer.key", "--person", "a", "--site", "s", "--kind", "staff",
          "--days", "0"], "--days"),
        (["pass", "issue", "--key", "keys/issuer.key", "--person", "a", "--site", "s", "--kind", "staff",
          "--days", "1", "--from", "yesterday"], "ISO 8601"),
        (["pass", "verify", "--pub", "keys/issuer.key", "CP1:x"], "is a private key"),
    ]
    for args, message in cases:
        result = cli(*args, cwd=cli_keys)
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("checkpoint: error:") and message in lines[0], lines
