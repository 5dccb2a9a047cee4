"""Benchmarks that print figures; run as ``python -m bench.<name>``. Never part of the test suite."""
