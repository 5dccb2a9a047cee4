"""Identity resolution: which source records are one customer, why, and what that customer's profile is.

:mod:`~cdp.identity.normalize` turns raw values into canonical and matching forms;
:mod:`~cdp.identity.features` and :mod:`~cdp.identity.table` make the columnar match table;
:mod:`~cdp.identity.blocking`, :mod:`~cdp.identity.comparisons`, :mod:`~cdp.identity.fellegi_sunter` and
:mod:`~cdp.identity.clustering` are the stages that :mod:`~cdp.identity.resolver` runs in batch, configured
by :mod:`~cdp.identity.settings` (``default_settings.toml``); :mod:`~cdp.identity.service` stores the result
in the vault and resolves incrementally on ingest; :mod:`~cdp.identity.explain` and
:mod:`~cdp.identity.golden` explain links and build golden profiles; :mod:`~cdp.identity.files` is
``cdp resolve-file`` and :mod:`~cdp.identity.sql` the same pipeline as SQL for a distributed engine.
"""
