"""Customer analytics on consented data: segments as data, RFM, lifetime value, churn risk, channel
preference, profitability and purchase patterns — aggregates only, with small-cohort suppression.

The data path: :mod:`~cdp.analytics.dataset` loads a pseudonymous columnar view of the customers whose
consent covers the purpose; the analyses (:mod:`~cdp.analytics.rfm`, :mod:`~cdp.analytics.clv`,
:mod:`~cdp.analytics.churn`, :mod:`~cdp.analytics.channels`, :mod:`~cdp.analytics.value`) and segment
conditions (:mod:`~cdp.analytics.segments`) compute on it; :mod:`~cdp.analytics.privacy` suppresses every
group smaller than k; :mod:`~cdp.analytics.service` stores definitions and sizes over time and audits
every run. The model (what counts as revenue, costs, k) is data: ``model.toml``.
"""
