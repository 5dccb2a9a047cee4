"""Child processes as tests see them (Linux /proc): alive or not, and who a process's children are."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def children(pid: int) -> dict[int, list[str]]:
    """Direct children of ``pid`` with their argv."""
    found: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found[int(entry.name)] = argv
    return found


def writes_pid_then_sleeps(pid_file: Path, seconds: int = 60) -> list[str]:
    """A stand-in child that writes its pid to ``pid_file`` and sleeps."""
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep({seconds})"
    return [sys.executable, "-c", code]
