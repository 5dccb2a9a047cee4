"""The `cdp` command end to end: the real console module in a subprocess, in a scratch directory, with a
controlled environment — so what is asserted is exactly what an operator sees."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

KEY_FILE = Path("var/keys/keyring.json")
DB_FILE = Path("var/data/cdp.db")
BAD_PG_PASSWORD = "pw123456"
BAD_PG_URL = f"postgresql+psycopg://u:{BAD_PG_PASSWORD}@127.0.0.1:1/x"

# Variables that would change what the CLI prints or which settings it reads.
_SCRUBBED = {"COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_") and k not in _SCRUBBED}
    env.update(extra)
    return env


def cdp(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdp", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Assert the documented failure shape: exit status 2, one `error: ...` line on stderr, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    assert result.returncode == 2, f"exit {result.returncode}\nstderr:\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got {len(lines)}:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@dataclass(frozen=True)
class Kek:
    active: bool
    state: str
    data_keys: int


_KEK_ROW = re.compile(r"^\W*v(\d+)( \(active\))?\W+(\w+)\W+([\d,]+)\W*$")


def kek_table(stdout: str) -> dict[int, Kek]:
    """Parse the `keys status` table into {version: Kek}."""
    rows = {}
    for line in stdout.splitlines():
        match = _KEK_ROW.match(line.strip())
        if match:
            version, active, state, count = match.groups()
            rows[int(version)] = Kek(bool(active), state, int(count.replace(",", "")))
    assert rows, f"no KEK rows in:\n{stdout}"
    return rows


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory where `cdp init` ran; tests copy it instead of paying for init each time."""
    template = tmp_path_factory.mktemp("initialized")
    ok(cdp(template, "init"))
    return template


@pytest.fixture
def workdir(initialized: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(initialized, work)  # copy2 keeps the 0600/0700 modes
    assert _mode(work / KEY_FILE) == 0o600
    return work


# --- init -------------------------------------------------------------------------------------------


def test_init_creates_a_0600_key_file_in_a_0700_directory_and_the_database(tmp_path: Path) -> None:
    stdout = ok(cdp(tmp_path, "init"))

    key_file = tmp_path / KEY_FILE
    assert key_file.is_file()
    assert _mode(key_file) == 0o600
    assert _mode(key_file.parent) == 0o700
    assert list(key_file.parent.iterdir()) == [key_file]  # no temp files left behind
    assert (tmp_path / DB_FILE).is_file()
    assert key_file.parent != (tmp_path / DB_FILE).parent
    assert "keys: created" in stdout
    assert "migrated to the latest schema" in stdout


def test_init_twice_keeps_the_same_keys_and_succeeds(workdir: Path) -> None:
    key_file = workdir / KEY_FILE
    keys_before = key_file.read_bytes()  # written by the first `cdp init`

    stdout = ok(cdp(workdir, "init"))

    assert key_file.read_bytes() == keys_before
    assert _mode(key_file) == 0o600
    assert "kept existing" in stdout


def test_init_with_config_option_uses_the_data_dir_of_the_toml_file(tmp_path: Path) -> None:
    custom = tmp_path / "custom-data"
    config = tmp_path / "site.toml"
    config.write_text(f'[cdp]\ndata_dir = "{custom}"\n', encoding="utf-8")
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    ok(cdp(cwd, "--config", str(config), "init"))

    assert _mode(custom / "keys" / "keyring.json") == 0o600
    assert _mode(custom / "keys") == 0o700
    assert (custom / "data" / "cdp.db").is_file()
    assert not (cwd / "var").exists()
    # and later commands with the same --config find those keys and that database
    assert kek_table(ok(cdp(cwd, "--config", str(config), "keys", "status")))[1].active


def test_init_with_an_unreachable_database_fails_without_making_keys(tmp_path: Path) -> None:
    result = cdp(tmp_path, "init", CDP_DATABASE_URL=BAD_PG_URL)

    line = one_line_error(result)
    assert "cannot connect to database" in line
    assert BAD_PG_PASSWORD not in result.stderr + result.stdout
    assert not (tmp_path / KEY_FILE).exists()


# --- demo data and keys -----------------------------------------------------------------------------


def _ingested_records(stdout: str) -> int:
    found = re.search(r"ingested: ([\d,]+) new or changed records", stdout)
    assert found, stdout
    return int(found[1].replace(",", ""))


def test_seed_then_rotate_moves_every_data_key_to_the_new_kek_and_retires_the_old(workdir: Path) -> None:
    seeded = ok(cdp(workdir, "demo", "seed", "--people", "40"))
    assert "demo data: 40 fictitious people in 4 sources" in seeded
    records = _ingested_records(seeded)
    assert records > 40  # the same people appear in several sources
    # deterministic for a seed: the same customers again change nothing
    again = ok(cdp(workdir, "demo", "seed", "--people", "40"))
    assert "ingested: 0 new or changed records, 0 interactions" in again

    before = kek_table(ok(cdp(workdir, "keys", "status")))
    keys = before[1].data_keys
    assert keys >= records  # one data key per record, plus one per quarantined row
    assert before == {1: Kek(active=True, state="active", data_keys=keys)}

    rotated = ok(cdp(workdir, "keys", "rotate"))
    assert f"rotated to KEK v2: {keys} data keys rewrapped" in rotated
    assert "retired (key material destroyed): v1" in rotated

    after = kek_table(ok(cdp(workdir, "keys", "status")))
    assert after == {
        1: Kek(active=False, state="retired", data_keys=0),
        2: Kek(active=True, state="active", data_keys=keys),
    }
    assert _mode(workdir / KEY_FILE) == 0o600  # the rewritten key file is still private


@pytest.mark.postgres
def test_init_and_demo_seed_work_on_postgresql(tmp_path: Path, postgres_schema_url: str) -> None:
    stdout = ok(cdp(tmp_path, "init", CDP_DATABASE_URL=postgres_schema_url))
    assert "postgresql+psycopg://" in stdout
    assert not (tmp_path / DB_FILE).exists()  # nothing went to the SQLite default

    seeded = ok(cdp(tmp_path, "demo", "seed", "--people", "40", CDP_DATABASE_URL=postgres_schema_url))
    records = _ingested_records(seeded)
    assert records > 40

    status = kek_table(ok(cdp(tmp_path, "keys", "status", CDP_DATABASE_URL=postgres_schema_url)))
    assert status[1].active and status[1].data_keys >= records


# --- bad configuration: one line, exit 2, no traceback ----------------------------------------------


def test_missing_key_file_is_one_error_line_telling_to_run_init(workdir: Path) -> None:
    (workdir / KEY_FILE).unlink()

    line = one_line_error(cdp(workdir, "keys", "status"))

    assert "not found" in line
    assert "cdp init" in line


def test_key_file_readable_by_others_is_refused_with_the_fix(workdir: Path) -> None:
    (workdir / KEY_FILE).chmod(0o644)

    line = one_line_error(cdp(workdir, "demo", "seed", "--people", "1"))

    assert "0644" in line
    assert "chmod 600" in line


def test_corrupted_key_file_is_one_error_line(workdir: Path) -> None:
    (workdir / KEY_FILE).write_text("{ this is not json", encoding="utf-8")

    line = one_line_error(cdp(workdir, "keys", "status"))

    assert "not JSON" in line


def test_unreachable_database_is_one_error_line_without_the_password(workdir: Path) -> None:
    result = cdp(workdir, "keys", "status", CDP_DATABASE_URL=BAD_PG_URL)

    line = one_line_error(result)
    assert "cannot connect to database" in line
    assert "127.0.0.1:1" in line
    assert BAD_PG_PASSWORD not in result.stderr
    assert BAD_PG_PASSWORD not in result.stdout


def test_unknown_keyring_kind_is_one_error_line(workdir: Path) -> None:
    line = one_line_error(cdp(workdir, "keys", "status", CDP_KEYRING="vault:foo"))

    assert "vault:foo" in line


def test_unmigrated_database_is_one_error_line_telling_to_run_init(workdir: Path) -> None:
    for leftover in (workdir / DB_FILE).parent.iterdir():
        leftover.unlink()  # keys stay, the database is brand new and empty

    line = one_line_error(cdp(workdir, "keys", "status"))

    assert "run `cdp init`" in line


def test_missing_config_file_is_one_error_line(tmp_path: Path) -> None:
    line = one_line_error(cdp(tmp_path, "--config", "absent.toml", "init"))

    assert "absent.toml" in line
    assert not (tmp_path / "var").exists()


def test_non_integer_port_is_one_error_line(tmp_path: Path) -> None:
    line = one_line_error(cdp(tmp_path, "init", CDP_PORT="eighty"))

    assert "port" in line
    assert not (tmp_path / "var").exists()


def test_long_error_message_is_not_wrapped_on_a_narrow_non_terminal_stderr(tmp_path: Path) -> None:
    # Rich wraps at 80 columns when stderr is a pipe; an error line must stay one line regardless.
    deep = tmp_path / ("d" * 70) / ("e" * 70)
    deep.mkdir(parents=True)
    key_file = deep / "keyring.json"
    key_file.write_text("{}", encoding="utf-8")
    key_file.chmod(0o644)

    line = one_line_error(cdp(tmp_path, "keys", "status", CDP_KEYRING=f"file:{key_file}"))

    assert line.endswith(f"(run: chmod 600 {key_file})")


def test_rotate_signing_key_makes_a_new_signer_each_time(workdir: Path) -> None:
    first = ok(cdp(workdir, "keys", "rotate-signing"))
    second = ok(cdp(workdir, "keys", "rotate-signing"))
    kid = re.compile(r"new signing key (\S+);")
    first_kid, second_kid = kid.search(first), kid.search(second)
    assert first_kid and second_kid and first_kid[1] != second_kid[1]
