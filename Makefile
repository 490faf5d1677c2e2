# `make run` and `make test` install what they need first; a second call skips what is done.
VENV   := .venv
PYTHON := $(VENV)/bin/python
BIN    := $(VENV)/bin

.PHONY: install run test test-postgres test-sqlite bench clean

install: $(VENV)/.installed node_modules/.installed .playwright-browsers/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	touch $@

.playwright-browsers/.installed: scripts/install-system-deps node_modules/.installed
	scripts/install-system-deps
	touch $@

run: install
	$(PYTHON) -m supertest.stack

# The whole suite, on PostgreSQL (production) and on SQLite (the `make run` default).
test: test-postgres test-sqlite

test-postgres: install
	SUPERTEST_TEST_DATABASE=postgresql $(BIN)/pytest $(PYTEST_ARGS)

test-sqlite: install
	SUPERTEST_TEST_DATABASE=sqlite $(BIN)/pytest $(PYTEST_ARGS)

bench: install
	$(PYTHON) bench/overhead.py
	$(PYTHON) bench/jobs.py
	$(PYTHON) bench/faults.py

clean:
	rm -rf $(VENV) node_modules .playwright-browsers *.egg-info
