"""Retention: policies per data category (as data, versioned), legal holds, the sweep that destroys
expired records through the one destruction path, and signed destruction certificates."""
