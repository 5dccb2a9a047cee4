"""Memoized normalizers for bulk work (ingestion chunks, ``cdp resolve-file``).

Names, cities, countries, streets and postcodes repeat across customers and sources, and the normalizers
are pure, so a bounded in-process cache removes most of their per-row cost on a large file. One set of
caches serves every caller in a process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from cdp.identity import normalize as norm

CACHE_SIZE: Final = 1 << 18

normalize_name = lru_cache(maxsize=CACHE_SIZE)(norm.normalize_name)
name_match_keys = lru_cache(maxsize=CACHE_SIZE)(norm.name_match_keys)
name_match_key = lru_cache(maxsize=CACHE_SIZE)(norm.name_match_key)
nickname_keys = lru_cache(maxsize=CACHE_SIZE)(norm.nickname_keys)
phonetic_key = lru_cache(maxsize=CACHE_SIZE)(norm.phonetic_key)
normalize_country = lru_cache(maxsize=1024)(norm.normalize_country)
normalize_postcode = lru_cache(maxsize=CACHE_SIZE)(norm.normalize_postcode)
parse_address_line = lru_cache(maxsize=CACHE_SIZE)(norm.parse_address_line)
normalize_street = lru_cache(maxsize=CACHE_SIZE)(norm.normalize_street)
split_full_name = lru_cache(maxsize=CACHE_SIZE)(norm.split_full_name)
