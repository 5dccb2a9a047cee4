"""A separate process that re-resolves every record, for the kill -9 test.

``python -m tests.identity.crash_worker DATA_DIR DATABASE_URL``

It prints ``ready`` once connected and about to start, so the test times its kill from the start of the
real work rather than from interpreter start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cdp.config import Settings
from cdp.identity.service import IdentityService
from cdp.platform import Platform


def main(argv: list[str]) -> None:
    data_dir, url = argv[:2]
    platform = Platform.open(Settings(data_dir=Path(data_dir), database_url=url))
    service = IdentityService(platform.db, platform.vault)
    print("ready", flush=True)
    service.resolve_all()
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
