"""Keyrings: safe file handling, versioning, retirement, env source."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from cdp.config import Settings
from cdp.vault import DecryptionError, KeyNotAvailable, KeyringError, open_keyring
from cdp.vault.keyring import EnvKeyring, FileKeyring, KeyEncryptionKeys, new_keyring_document


def test_created_key_file_is_private_and_in_a_private_directory(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "keyring.json"
    FileKeyring.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_create_refuses_to_overwrite_existing_keys(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    FileKeyring.create(path)
    before = path.read_bytes()
    with pytest.raises(KeyringError, match="refusing to overwrite"):
        FileKeyring.create(path)
    assert path.read_bytes() == before


def test_group_or_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    FileKeyring.create(path)
    os.chmod(path, 0o640)
    with pytest.raises(KeyringError, match="mode 0640; it must be 0600"):
        FileKeyring(path)


def test_missing_key_file_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="run `cdp init`"):
        FileKeyring(tmp_path / "absent.json")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        json.dumps({"format": "other"}),
        json.dumps({"format": "cdp-keyring/1", "keks": []}),
    ],
)
def test_malformed_key_file_is_a_keyring_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keyring.json"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyringError):
        FileKeyring(path)


def test_wrong_length_key_is_refused(tmp_path: Path) -> None:
    document = new_keyring_document()
    document["blind_index_key"] = base64.b64encode(b"short").decode()
    with pytest.raises(KeyringError, match="must be 32 bytes"):
        EnvKeyring(base64.b64encode(json.dumps(document).encode()).decode())


def test_wrap_unwrap_binds_the_associated_data(tmp_path: Path) -> None:
    keyring = FileKeyring.create(tmp_path / "k.json")
    blob = keyring.wrap(1, b"k" * 32, b"subject-a")
    assert keyring.unwrap(1, blob, b"subject-a") == b"k" * 32
    with pytest.raises(DecryptionError):
        keyring.unwrap(1, blob, b"subject-b")


def test_new_version_becomes_active_and_old_stays_usable_for_unwrap(tmp_path: Path) -> None:
    keyring = FileKeyring.create(tmp_path / "k.json")
    old_blob = keyring.wrap(1, b"d" * 32, b"aad")
    assert keyring.create_version() == 2
    assert keyring.active_version() == 2
    assert [(k.version, k.state) for k in keyring.versions()] == [(1, "decrypt_only"), (2, "active")]
    assert keyring.unwrap(1, old_blob, b"aad") == b"d" * 32
    reopened = FileKeyring(tmp_path / "k.json")
    assert reopened.active_version() == 2
    assert stat.S_IMODE((tmp_path / "k.json").stat().st_mode) == 0o600


def test_retired_kek_material_is_destroyed(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    keyring = FileKeyring.create(path)
    old_key = json.loads(path.read_text())["keks"][0]["key"]
    blob = keyring.wrap(1, b"d" * 32, b"aad")
    keyring.create_version()
    keyring.retire(1)
    assert old_key not in path.read_text()
    with pytest.raises(KeyNotAvailable, match="retired"):
        keyring.unwrap(1, blob, b"aad")


def test_only_decrypt_only_keks_can_retire(tmp_path: Path) -> None:
    keyring = FileKeyring.create(tmp_path / "k.json")
    with pytest.raises(KeyringError, match="active"):
        keyring.retire(1)


def test_other_process_rewrite_is_picked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running server must start wrapping under the new KEK soon after `cdp keys rotate` adds it."""
    path = tmp_path / "k.json"
    server_view = FileKeyring.create(path)
    FileKeyring(path).create_version()
    monkeypatch.setattr(server_view, "_checked_at", -1e9)
    assert server_view.active_version() == 2


def test_env_keyring_round_trip_and_is_read_only() -> None:
    document = new_keyring_document()
    keyring = EnvKeyring(base64.b64encode(json.dumps(document).encode()).decode())
    assert isinstance(keyring, KeyEncryptionKeys)
    blob = keyring.wrap(1, b"x" * 32, b"a")
    assert keyring.unwrap(1, blob, b"a") == b"x" * 32
    with pytest.raises(KeyringError, match="read-only"):
        keyring.create_version()


def test_settings_choose_the_provider(tmp_path: Path) -> None:
    document = new_keyring_document()
    data = base64.b64encode(json.dumps(document).encode()).decode()
    assert isinstance(open_keyring(Settings(data_dir=tmp_path, keyring="env", keyring_data=data)), EnvKeyring)
    with pytest.raises(KeyringError, match="CDP_KEYRING_DATA is empty"):
        open_keyring(Settings(data_dir=tmp_path, keyring="env"))
    with pytest.raises(KeyringError, match="unknown keyring source"):
        open_keyring(Settings(data_dir=tmp_path, keyring="kms:arn"))
