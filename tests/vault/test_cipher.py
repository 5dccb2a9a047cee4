"""Field encryption: every type round-trips; anything tampered, moved or mis-keyed fails loudly."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.vault import DecryptionError
from cdp.vault.cipher import FieldCipher
from cdp.vault.codec import FieldValue

KEY = os.urandom(32)
SAMPLES: list[FieldValue] = [
    None,
    "",
    "Zoë Müller-Łukasiewicz",
    "مرحبا 👋 \u202e",
    "x" * 10_000,
    0,
    -(2**70),
    3.141592653589793,
    float("inf"),
    True,
    False,
    date(1900, 1, 1),
    datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC),
    datetime(2024, 6, 1, 8, 0, tzinfo=timezone(timedelta(hours=-5))),
    Decimal("1234.5600"),
    b"\x00\xff binary",
    {"tier": "gold", "tags": ["a", "b"], "n": 3},
    [1, "two", None],
]


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
def test_every_field_type_round_trips_with_its_type(value: FieldValue) -> None:
    cipher = FieldCipher("s1", KEY, 1)
    blob = cipher.encrypt("source_record", "r1", "first_name", value)
    back = cipher.decrypt("source_record", "r1", "first_name", blob)
    assert back == value
    assert type(back) is type(value)


@given(
    st.one_of(
        st.none(),
        st.text(),
        st.integers(),
        st.booleans(),
        st.dates(),
        st.datetimes(timezones=st.just(UTC)),
        st.decimals(allow_nan=False, allow_infinity=False),
        st.binary(),
        st.floats(allow_nan=False),
        st.dictionaries(st.text(), st.one_of(st.text(), st.integers(), st.booleans())),
    )
)
def test_round_trip_property(value: FieldValue) -> None:
    cipher = FieldCipher("s1", KEY, 1)
    assert cipher.decrypt("t", "r", "f", cipher.encrypt("t", "r", "f", value)) == value


def test_same_value_encrypts_differently_each_time() -> None:
    cipher = FieldCipher("s1", KEY, 1)
    assert cipher.encrypt("t", "r", "f", "same") != cipher.encrypt("t", "r", "f", "same")


def test_ciphertext_does_not_contain_the_plaintext() -> None:
    blob = FieldCipher("s1", KEY, 1).encrypt("t", "r", "email", "canary.person@example.com")
    assert b"canary" not in blob


@pytest.mark.parametrize("position", [0, 1, 4, 5, 16, 17, -1])
def test_tampered_ciphertext_is_rejected(position: int) -> None:
    cipher = FieldCipher("s1", KEY, 1)
    blob = bytearray(cipher.encrypt("t", "r", "f", "secret value"))
    blob[position] ^= 0x01
    with pytest.raises(DecryptionError):
        cipher.decrypt("t", "r", "f", bytes(blob))


@pytest.mark.parametrize(
    ("table", "record", "field"),
    [("other_table", "r1", "email"), ("source_record", "r2", "email"), ("source_record", "r1", "phone")],
    ids=["other-table", "other-row", "other-field"],
)
def test_ciphertext_moved_to_another_place_fails(table: str, record: str, field: str) -> None:
    cipher = FieldCipher("s1", KEY, 1)
    blob = cipher.encrypt("source_record", "r1", "email", "a@example.com")
    with pytest.raises(DecryptionError, match="failed authentication"):
        cipher.decrypt(table, record, field, blob)


def test_wrong_key_version_is_a_clear_error() -> None:
    blob = FieldCipher("s1", KEY, 1).encrypt("t", "r", "f", "v")
    with pytest.raises(DecryptionError, match="data-key v1, subject key is v2"):
        FieldCipher("s1", KEY, 2).decrypt("t", "r", "f", blob)


def test_header_claiming_another_key_version_fails_authentication() -> None:
    """Rewriting the version byte to match the key is not enough: the version is in the AAD too."""
    blob = bytearray(FieldCipher("s1", KEY, 1).encrypt("t", "r", "f", "v"))
    blob[4] = 2
    with pytest.raises(DecryptionError, match="failed authentication"):
        FieldCipher("s1", KEY, 2).decrypt("t", "r", "f", bytes(blob))


def test_wrong_data_key_fails() -> None:
    blob = FieldCipher("s1", KEY, 1).encrypt("t", "r", "f", "v")
    with pytest.raises(DecryptionError):
        FieldCipher("s2", os.urandom(32), 1).decrypt("t", "r", "f", blob)


def test_truncated_and_garbage_ciphertexts_are_errors_not_garbage() -> None:
    cipher = FieldCipher("s1", KEY, 1)
    for blob in (b"", b"\x01", os.urandom(40), cipher.encrypt("t", "r", "f", "v")[:-1]):
        with pytest.raises(DecryptionError):
            cipher.decrypt("t", "r", "f", blob)


def test_error_messages_never_contain_the_value() -> None:
    cipher = FieldCipher("s1", KEY, 1)
    blob = bytearray(cipher.encrypt("t", "r", "email", "leak.me@example.com"))
    blob[-1] ^= 1
    with pytest.raises(DecryptionError) as info:
        cipher.decrypt("t", "r", "email", bytes(blob))
    assert "leak.me" not in str(info.value)


def test_unsupported_type_is_refused() -> None:
    with pytest.raises(TypeError):
        FieldCipher("s1", KEY, 1).encrypt("t", "r", "f", object())  # type: ignore[arg-type]


def test_strings_with_lone_surrogates_round_trip() -> None:
    """Quarantined rows keep undecodable source bytes as surrogate escapes; they must survive storage."""
    cipher = FieldCipher("s1", KEY, 1)
    raw = b"M\xfcller".decode("utf-8", errors="surrogateescape")
    for value in (raw, {"Name": raw}):
        assert cipher.decrypt("t", "r", "f", cipher.encrypt("t", "r", "f", value)) == value


def test_batch_encrypt_and_decrypt_agree_with_single_field_calls() -> None:
    cipher = FieldCipher("s1", KEY, 1)
    values: dict[str, FieldValue] = {"email": "a@example.com", "dob": date(1980, 1, 2), "none": None}
    blobs = cipher.encrypt_many("t", "r", values)
    assert cipher.decrypt_many("t", "r", blobs) == values
    assert {k: cipher.decrypt("t", "r", k, b) for k, b in blobs.items()} == values
    single = {k: cipher.encrypt("t", "r", k, v) for k, v in values.items()}
    assert cipher.decrypt_many("t", "r", single) == values


def test_batch_decrypt_reports_the_exact_field_that_fails() -> None:
    cipher = FieldCipher("s1", KEY, 1)
    blobs = cipher.encrypt_many("t", "r", {"email": "a@example.com", "city": "Leeds"})
    blobs["city"] = blobs["email"]  # moved between fields
    with pytest.raises(DecryptionError, match=r"t\.city of record r failed authentication"):
        cipher.decrypt_many("t", "r", blobs)
    other_version = FieldCipher("s1", KEY, 2).encrypt_many("t", "r", {"email": "x"})
    with pytest.raises(DecryptionError, match="data-key v2, subject key is v1"):
        cipher.decrypt_many("t", "r", other_version)
