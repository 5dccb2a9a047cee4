"""Demo data for the laptop demo (`cdp demo seed`, `make demo`)."""
