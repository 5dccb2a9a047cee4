"""The read model: a resolved customer's golden profile and contact-history timeline, read through the
access gate (``cdp.access.gate``) for a named purpose."""
