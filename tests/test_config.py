"""Settings: laptop-safe defaults → TOML file → CDP_* environment, with every mistake a ConfigurationError.

Every test passes ``environ`` explicitly (and runs in an empty working directory) so the real
environment and any ./cdp.toml of the developer never leak in.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdp.config import Settings, load_settings
from cdp.errors import CdpError, ConfigurationError


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def _toml(tmp_path: Path, body: str, name: str = "settings.toml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


# --- defaults ---------------------------------------------------------------------------------------


def test_defaults_are_a_local_sqlite_demo_with_a_file_keyring_on_loopback() -> None:
    settings = load_settings(environ={})

    assert settings.data_dir == Path("var")
    assert settings.database_url == f"sqlite:///{Path('var') / 'data' / 'cdp.db'}"
    assert settings.keyring == f"file:{Path('var') / 'keys' / 'keyring.json'}"
    assert settings.keyring_kind == "file"
    assert settings.keyring_path == Path("var") / "keys" / "keyring.json"
    assert settings.keyring_data == ""
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.workers == 2 * (os.cpu_count() or 1)  # sync workers: two per core


def test_database_and_key_file_follow_data_dir_when_not_set_explicitly(tmp_path: Path) -> None:
    data_dir = tmp_path / "somewhere"

    settings = load_settings(environ={"CDP_DATA_DIR": str(data_dir)})

    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite:///{data_dir / 'data' / 'cdp.db'}"
    assert settings.keyring_path == data_dir / "keys" / "keyring.json"
    # the key file lives in its own directory, apart from the database
    assert settings.keyring_path.parent != (data_dir / "data")


def test_key_file_and_database_are_in_separate_directories_by_default() -> None:
    settings = Settings()
    db_path = Path(settings.database_url.removeprefix("sqlite:///"))

    assert db_path.parent != settings.keyring_path.parent


def test_explicit_database_url_and_keyring_are_not_replaced_by_derived_defaults(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "CDP_DATA_DIR": str(tmp_path / "d"),
            "CDP_DATABASE_URL": "postgresql+psycopg://app@db/cdp",
            "CDP_KEYRING": "env",
        }
    )

    assert settings.database_url == "postgresql+psycopg://app@db/cdp"
    assert settings.keyring_kind == "env"


def test_keyring_path_of_a_non_file_keyring_is_a_configuration_error() -> None:
    settings = load_settings(environ={"CDP_KEYRING": "env"})

    with pytest.raises(ConfigurationError, match="no file path"):
        _ = settings.keyring_path


# --- TOML file --------------------------------------------------------------------------------------


def test_top_level_toml_keys_apply(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        'data_dir = "/srv/cdp"\nhost = "192.0.2.10"\nport = 9001\nworkers = 5\nrotation_batch_size = 50\n',
    )

    settings = load_settings(environ={}, config_file=path)

    assert settings.data_dir == Path("/srv/cdp")
    assert settings.database_url == "sqlite:////srv/cdp/data/cdp.db"
    assert settings.keyring_path == Path("/srv/cdp/keys/keyring.json")
    assert settings.host == "192.0.2.10"
    assert settings.port == 9001
    assert settings.workers == 5
    assert settings.rotation_batch_size == 50


def test_values_in_a_cdp_table_apply(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[cdp]\nhost = "10.0.0.7"\nport = 8443\ndatabase_url = "sqlite:////x/y.db"\n')

    settings = load_settings(environ={}, config_file=path)

    assert settings.host == "10.0.0.7"
    assert settings.port == 8443
    assert settings.database_url == "sqlite:////x/y.db"


def test_environment_overrides_toml(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'host = "192.0.2.10"\nport = 9001\nworkers = 5\n')

    settings = load_settings(environ={"CDP_PORT": "9100", "CDP_HOST": "127.0.0.2"}, config_file=path)

    assert settings.port == 9100
    assert settings.host == "127.0.0.2"
    assert settings.workers == 5  # not overridden: the TOML value stays


def test_environment_overrides_a_cdp_table_too(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[cdp]\nport = 9001\n")

    settings = load_settings(environ={"CDP_PORT": "9100"}, config_file=path)

    assert settings.port == 9100


def test_empty_environment_variable_does_not_override_toml(tmp_path: Path) -> None:
    path = _toml(tmp_path, "port = 9001\n")

    settings = load_settings(environ={"CDP_PORT": ""}, config_file=path)

    assert settings.port == 9001


def test_cdp_config_environment_variable_names_the_toml_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, "port = 9002\n")

    settings = load_settings(environ={"CDP_CONFIG": str(path)})

    assert settings.port == 9002


def test_cdp_toml_in_the_working_directory_is_read_when_present() -> None:
    Path("cdp.toml").write_text("port = 9003\n", encoding="utf-8")

    settings = load_settings(environ={})

    assert settings.port == 9003


def test_missing_implicit_cdp_toml_is_not_an_error() -> None:
    assert not Path("cdp.toml").exists()

    assert load_settings(environ={}).port == 8000


def test_unknown_top_level_toml_key_is_refused_by_name(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'port = 9001\ncolour = "blue"\n')

    with pytest.raises(ConfigurationError, match="colour"):
        load_settings(environ={}, config_file=path)


def test_unknown_key_in_cdp_table_is_refused_by_name(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[cdp]\nport = 9001\ndatabase = "sqlite:////x.db"\n')

    with pytest.raises(ConfigurationError, match="database"):
        load_settings(environ={}, config_file=path)


def test_keyring_data_in_toml_is_refused_and_not_echoed(tmp_path: Path) -> None:
    secret = "c2VjcmV0LWtleXJpbmctZG9jdW1lbnQ="
    path = _toml(tmp_path, f'keyring = "env"\nkeyring_data = "{secret}"\n')

    with pytest.raises(ConfigurationError, match="keyring_data") as caught:
        load_settings(environ={}, config_file=path)

    assert "CDP_KEYRING_DATA" in str(caught.value)
    assert secret not in str(caught.value)


def test_keyring_data_in_cdp_table_is_refused(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[cdp]\nkeyring_data = "abc"\n')

    with pytest.raises(ConfigurationError, match="keyring_data"):
        load_settings(environ={}, config_file=path)


def test_keyring_data_from_the_environment_is_accepted() -> None:
    settings = load_settings(environ={"CDP_KEYRING": "env", "CDP_KEYRING_DATA": "ZG9j"})

    assert settings.keyring_data == "ZG9j"


def test_explicit_cdp_config_pointing_to_a_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(environ={"CDP_CONFIG": str(missing)})


def test_explicit_config_file_argument_pointing_to_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(environ={}, config_file=tmp_path / "nope.toml")


def test_malformed_toml_is_a_configuration_error(tmp_path: Path) -> None:
    path = _toml(tmp_path, "port = = 3\n")

    with pytest.raises(ConfigurationError, match="cannot read config file"):
        load_settings(environ={}, config_file=path)


def test_toml_value_of_the_wrong_type_is_a_configuration_error(tmp_path: Path) -> None:
    path = _toml(tmp_path, "host = 5\n")

    with pytest.raises(ConfigurationError, match="host"):
        load_settings(environ={}, config_file=path)


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["abc", "80.5", "8o8o"])
def test_non_integer_port_in_environment_is_a_configuration_error(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="port"):
        load_settings(environ={"CDP_PORT": raw})


@pytest.mark.parametrize("port", ["0", "-1", "65536", "100000"])
def test_port_out_of_range_is_a_configuration_error(port: str) -> None:
    with pytest.raises(ConfigurationError, match="port must be between 1 and 65535"):
        load_settings(environ={"CDP_PORT": port})


def test_port_out_of_range_in_toml_is_a_configuration_error(tmp_path: Path) -> None:
    path = _toml(tmp_path, "port = 70000\n")

    with pytest.raises(ConfigurationError, match="port"):
        load_settings(environ={}, config_file=path)


@pytest.mark.parametrize("port", ["1", "65535"])
def test_port_range_bounds_are_accepted(port: str) -> None:
    assert load_settings(environ={"CDP_PORT": port}).port == int(port)


def test_zero_workers_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="workers"):
        load_settings(environ={"CDP_WORKERS": "0"})


def test_zero_rotation_batch_size_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="rotation_batch_size"):
        load_settings(environ={"CDP_ROTATION_BATCH_SIZE": "0"})


def test_configuration_errors_are_cdp_errors_so_the_cli_prints_one_line() -> None:
    with pytest.raises(CdpError):
        load_settings(environ={"CDP_PORT": "abc"})


# --- secrets ----------------------------------------------------------------------------------------


def test_repr_never_shows_keyring_data() -> None:
    secret = "U1VQRVItU0VDUkVULUtFWVJJTkctRE9DVU1FTlQ="
    settings = load_settings(environ={"CDP_KEYRING": "env", "CDP_KEYRING_DATA": secret})

    assert settings.keyring_data == secret  # it is there ...
    assert secret not in repr(settings)  # ... but never printed
    assert secret not in str(settings)
    assert secret not in f"{settings!r} {settings}"
    assert "keyring_data" not in repr(settings)


def test_with_overrides_replaces_only_given_values_and_still_hides_keyring_data() -> None:
    settings = load_settings(environ={"CDP_KEYRING": "env", "CDP_KEYRING_DATA": "SECRETSECRET"})

    changed = settings.with_overrides(port=9009, host=None)

    assert changed.port == 9009
    assert changed.host == settings.host
    assert changed.keyring_data == "SECRETSECRET"
    assert "SECRETSECRET" not in repr(changed)


def test_with_overrides_validates_the_new_values() -> None:
    with pytest.raises(ConfigurationError, match="port"):
        Settings().with_overrides(port=0)


def test_non_table_cdp_section_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("cdp = 5\n")
    with pytest.raises(ConfigurationError, match="must be a table"):
        load_settings(environ={}, config_file=path)


def test_settings_outside_the_cdp_table_are_refused_not_ignored(tmp_path: Path) -> None:
    path = tmp_path / "mixed.toml"
    path.write_text('port = 9000\n[cdp]\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigurationError, match="under \\[cdp\\]"):
        load_settings(environ={}, config_file=path)


@pytest.mark.parametrize("value", ["true", "8000.9"])
def test_integer_settings_refuse_booleans_and_floats(tmp_path: Path, value: str) -> None:
    path = tmp_path / "typed.toml"
    path.write_text(f"port = {value}\n")
    with pytest.raises(ConfigurationError, match="port"):
        load_settings(environ={}, config_file=path)
