# `make run` and `make test` install what they need first; a second call skips what is done.
SHELL  := /bin/bash
VENV   := .venv
PYTHON := $(VENV)/bin/python
BIN    := $(VENV)/bin

# Tests that need no service and no browser: `make check` runs them with the linters, in seconds.
UNIT_TESTS := tests/test_units.py tests/test_outcomes.py tests/test_layers.py tests/test_collect.py tests/test_users.py tests/test_slots.py tests/test_operations_units.py tests/test_splice.py

.PHONY: install run test test-postgres test-sqlite suite-postgresql suite-sqlite lint check bench clean

install: $(VENV)/.installed node_modules/.installed .playwright-browsers/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# apt first: Node.js and npm may be among what it installs.
.playwright-browsers/.system-deps: scripts/install-system-deps
	scripts/install-system-deps
	mkdir -p .playwright-browsers
	touch $@

node_modules/.installed: package.json package-lock.json .playwright-browsers/.system-deps
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	touch $@

.playwright-browsers/.installed: scripts/link-ffmpeg node_modules/.installed
	scripts/link-ffmpeg
	touch $@

run: install
	$(PYTHON) -m supertest.stack

# The whole suite, on PostgreSQL (production) and on SQLite (the `make run` default), after the linters.
# The two run side by side (each session has its own database, queues, buckets, folders and ports):
# much of a run is waiting on timers and browsers, so together they take little more than one.
# Each line is marked with its database; `make test-postgres` or `make test-sqlite` runs one alone.
test: lint install
	$(MAKE) --no-print-directory -j2 suite-postgresql suite-sqlite

suite-postgresql suite-sqlite: suite-%:
	set -o pipefail; SUPERTEST_TEST_DATABASE=$* $(BIN)/pytest -v --color=no $(PYTEST_ARGS) 2>&1 | sed -u 's/^/[$*] /'

lint: $(VENV)/.installed
	$(BIN)/ruff check supertest tests bench
	$(BIN)/mypy

# The inner loop: linters and unit tests, no services.
check: lint
	$(BIN)/pytest -q -p no:cacheprovider $(UNIT_TESTS)

test-postgres: install
	SUPERTEST_TEST_DATABASE=postgresql $(BIN)/pytest $(PYTEST_ARGS)

test-sqlite: install
	SUPERTEST_TEST_DATABASE=sqlite $(BIN)/pytest $(PYTEST_ARGS)

bench: install
	$(PYTHON) bench/overhead.py
	$(PYTHON) bench/jobs.py
	$(PYTHON) bench/faults.py
	$(PYTHON) bench/throughput.py
	$(PYTHON) bench/idle.py
	$(PYTHON) bench/schedules.py
	$(PYTHON) bench/shards.py

clean:
	rm -rf $(VENV) node_modules .playwright-browsers *.egg-info
