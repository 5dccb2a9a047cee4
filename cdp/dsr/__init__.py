"""Data-subject requests: export, erasure (one destruction path shared with retention), receipts, routing."""
