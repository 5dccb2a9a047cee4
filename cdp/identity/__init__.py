"""Identity resolution: normalization, blocking, comparison, scoring, clustering and golden records.

:mod:`cdp.identity.normalize` turns raw source values into canonical storage forms and matching keys;
:mod:`cdp.identity.nicknames` holds the nickname table used only for matching.
"""
