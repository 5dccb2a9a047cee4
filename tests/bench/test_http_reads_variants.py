"""``bench.http_reads --variant``: settings to try beside the authorized server, parsed strictly."""

from __future__ import annotations

import pytest

from bench.http_reads import parse_variant


def test_a_variant_is_a_label_and_cdp_settings() -> None:
    assert parse_variant("mmap0:CDP_SQLITE_SERVER_MMAP_MIB=0, CDP_SQLITE_CACHE_MIB=8") == (
        "mmap0",
        {"CDP_SQLITE_SERVER_MMAP_MIB": "0", "CDP_SQLITE_CACHE_MIB": "8"},
    )


@pytest.mark.parametrize(
    "raw",
    [
        "CDP_SQLITE_SERVER_MMAP_MIB=0",  # no label
        ":CDP_SQLITE_SERVER_MMAP_MIB=0",  # empty label
        "plain:CDP_SQLITE_SERVER_MMAP_MIB=0",  # a fixed server's label
        "x:PATH=/tmp",  # not a cdp setting
        "x:CDP_WORKERS",  # no value
        "x:",  # nothing to try
    ],
)
def test_a_malformed_variant_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="--variant"):
        parse_variant(raw)
