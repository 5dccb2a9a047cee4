"""The verdict on a pip-audit JSON report (scripts/audit-deps.sh): fail on any known vulnerability, and
never count a package that could not be looked up as clean.

    python scripts/dep_audit_verdict.py REPORT.json PIP_AUDIT_EXIT_STATUS

pip-audit grades no severity, so the issue's "zero high findings" is enforced as zero findings.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def verdict(report: dict[str, Any], *, require_all_audited: bool) -> tuple[int, list[str]]:
    """The exit status and the lines to print for one pip-audit report."""
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = [d for d in deps if not d.get("skip_reason")]
    vulnerable = [d for d in audited if d.get("vulns")]
    lines = []
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            lines.append(f"pip-audit: {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixed})")
    lines.append(
        f"pip-audit: {len(audited)} of {len(deps)} packages audited, "
        f"{len(vulnerable)} with known vulnerabilities"
    )
    if skipped:
        lines.append(
            f"pip-audit: WARNING {len(skipped)} packages could not be looked up "
            f"(first: {skipped[0]['name']}: {skipped[0]['skip_reason']}); they are NOT audited"
        )
    if vulnerable:
        return 1, lines
    if skipped and require_all_audited:
        return 1, lines
    if not deps:
        return 1, [*lines, "pip-audit: the report lists no dependencies at all"]
    return 0, lines


def main(argv: list[str]) -> int:
    path, status = argv[1], int(argv[2])
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, ValueError):
        print(f"pip-audit: no report (pip-audit exited {status})", file=sys.stderr)
        return 1
    code, lines = verdict(report, require_all_audited=os.environ.get("CDP_REQUIRE_DEP_AUDIT") == "1")
    for line in lines:
        print(line, file=sys.stderr if "WARNING" in line else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
