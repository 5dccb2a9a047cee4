"""Consent: the purposes catalog, the append-only ledger of customers' say, and its part in every read."""
