"""The dependency audit's verdict (scripts/dep_audit_verdict.py, run by scripts/audit-deps.sh): a known
vulnerability always fails, and a package that could not be looked up is never reported as clean."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dep_audit_verdict.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dep_audit_verdict", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLEAN = {"name": "flask", "version": "3.1.2", "vulns": []}
VULNERABLE = {
    "name": "jinja2",
    "version": "2.10",
    "vulns": [{"id": "GHSA-462w-v97r-4m45", "fix_versions": ["2.10.1"], "aliases": [], "description": ""}],
}
UNREACHABLE = {"name": "werkzeug", "version": "3.1.9", "skip_reason": "Dependency not found on PyPI"}


def test_a_known_vulnerability_fails_and_names_the_package_and_the_fix() -> None:
    code, lines = _module().verdict({"dependencies": [CLEAN, VULNERABLE]}, require_all_audited=False)
    assert code == 1
    assert "pip-audit: jinja2 2.10: GHSA-462w-v97r-4m45 (fixed in 2.10.1)" in lines
    assert "2 of 2 packages audited, 1 with known vulnerabilities" in lines[-1]


def test_all_packages_clean_passes() -> None:
    code, lines = _module().verdict({"dependencies": [CLEAN]}, require_all_audited=True)
    assert (code, lines) == (0, ["pip-audit: 1 of 1 packages audited, 0 with known vulnerabilities"])


def test_packages_that_could_not_be_looked_up_are_never_counted_as_audited() -> None:
    code, lines = _module().verdict({"dependencies": [CLEAN, UNREACHABLE]}, require_all_audited=False)
    assert code == 0
    assert "1 of 2 packages audited" in lines[0]
    assert "WARNING 1 packages could not be looked up" in lines[1] and "NOT audited" in lines[1]


def test_unaudited_packages_fail_where_the_audit_is_required() -> None:
    code, _ = _module().verdict({"dependencies": [CLEAN, UNREACHABLE]}, require_all_audited=True)
    assert code == 1


def test_a_vulnerability_fails_even_when_others_could_not_be_looked_up() -> None:
    code, _ = _module().verdict({"dependencies": [UNREACHABLE, VULNERABLE]}, require_all_audited=False)
    assert code == 1


def test_an_empty_or_missing_report_fails(tmp_path: Path) -> None:
    assert _module().verdict({"dependencies": []}, require_all_audited=False)[0] == 1
    missing = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "none.json"), "1"], capture_output=True, text=True
    )
    assert missing.returncode == 1 and "no report" in missing.stderr
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"dependencies": [VULNERABLE]}), encoding="utf-8")
    found = subprocess.run([sys.executable, str(SCRIPT), str(report), "1"], capture_output=True, text=True)
    assert found.returncode == 1 and "GHSA-462w-v97r-4m45" in found.stdout
