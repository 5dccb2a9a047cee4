.PHONY: demo test bench report fuzz audit-deps venv

# Start the demo server on the embedded SQLite store, seeded with demo data; prints the URL.
demo:
	bash scripts/venv.sh
	.venv/bin/cdp demo run

# Run the whole test suite (SQLite and the real PostgreSQL server).
test:
	bash scripts/test.sh

# Benchmarks print figures; they are never part of the test run.
bench:
	bash scripts/venv.sh
	.venv/bin/python -m bench.vault_throughput
	.venv/bin/python -m bench.key_rotation
	.venv/bin/python -m bench.ingest_throughput
	.venv/bin/python -m bench.resolution
	.venv/bin/python -m bench.http_reads
	.venv/bin/python -m bench.audit
	.venv/bin/python -m bench.retention
	.venv/bin/python -m bench.analytics
	.venv/bin/python -m bench.web_pages
	.venv/bin/python -m bench.load

# Every benchmark, one after another, into one Markdown report (SIZE=quick: minutes; SIZE=full: hours).
report:
	bash scripts/venv.sh
	.venv/bin/python -m bench.report --size $${SIZE:-quick}

# The API fuzz test with many more generated requests per operation and role than the test suite's.
fuzz:
	bash scripts/venv.sh
	CDP_FUZZ_EXAMPLES=$${CDP_FUZZ_EXAMPLES:-300} .venv/bin/python -m pytest -n 2 tests/api/test_fuzz.py

# Audit the installed dependencies for known vulnerabilities; fails if any package could not be looked up.
audit-deps:
	bash scripts/venv.sh
	CDP_REQUIRE_DEP_AUDIT=1 bash scripts/audit-deps.sh

venv:
	bash scripts/venv.sh
