"""A separate process that carries out an erasure or a retention sweep, for the kill -9 tests.

``python -m tests.dsr.crash_worker erase DATA_DIR DATABASE_URL REQUEST_ID``
``python -m tests.dsr.crash_worker sweep DATA_DIR DATABASE_URL LEASE_SECONDS``

It prints ``ready`` once it is connected and about to start, so the test times its kill from the start of
the real work rather than from interpreter start-up.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cdp.config import Settings
from cdp.dsr.service import DsrService
from cdp.platform import Platform
from cdp.retention.policy import RetentionPolicy
from cdp.retention.sweep import RetentionSweeper

SWEEP_AS_OF = datetime(2040, 1, 1, tzinfo=UTC)


def main(argv: list[str]) -> None:
    command, data_dir, url = argv[:3]
    settings = Settings(data_dir=Path(data_dir), database_url=url, dsr_erasure_requires_approval=False)
    platform = Platform.open(settings)
    if command == "erase":
        service = DsrService.for_platform(platform)
        print("ready", flush=True)
        service.process(uuid.UUID(argv[3]))
    elif command == "sweep":
        sweeper = RetentionSweeper(
            platform.db,
            platform.vault,
            RetentionPolicy.load(),
            batch_size=100,
            lease=timedelta(seconds=float(argv[3])),
        )
        print("ready", flush=True)
        sweeper.run(now=SWEEP_AS_OF)
    else:
        raise SystemExit(f"unknown command {command}")
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
