# Two commands on a fresh machine (Python 3.10+ and make): `make run` and `make test`.
# Poetry is installed into .tools/poetry (git-ignored) together with poetry-plugin-pypi-mirror,
# which makes Poetry read the same package index that pip uses (pip's configuration,
# PIP_INDEX_URL, or pip's default), so it works behind a company mirror too.

PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
POETRY_VERSION ?= 2.5.1
POETRY_MIRROR_PLUGIN_VERSION ?= 0.6.5

TOOLS_DIR := $(CURDIR)/.tools
POETRY := $(TOOLS_DIR)/poetry/bin/poetry
STAMP := .venv/.installed

# The index pip resolves from: its own configuration, then PIP_INDEX_URL, then pip's built-in default.
PIP_INDEX := $(shell $(PYTHON) scripts/pip_index_url.py 2>/dev/null)
export POETRY_PYPI_MIRROR_URL ?= $(PIP_INDEX)
export POETRY_VIRTUALENVS_IN_PROJECT := true
export POETRY_NO_INTERACTION := 1

.PHONY: install run test test-quick lint format bench clean help client client-install client-test e2e

help:
	@echo "make run     install what is missing, upgrade the database, serve on http://$(HOST):$(PORT)"
	@echo "make test    install what is missing, run the whole test suite"
	@echo "make test-quick  the tests that start no process or server (pytest -m \"not processes\")"
	@echo "make install Poetry (if missing) and the locked dependencies"
	@echo "make lint    ruff check, ruff format --check, mypy"
	@echo "make format  let ruff fix what it can and format the code"
	@echo "make clean   remove .venv, .tools and the tools' caches"
	@echo "make bench   benchmark against same-work FastAPI + asyncpg references (needs wrk and PostgreSQL)"
	@echo "             its options: make bench BENCH_ARGS=--help, e.g. make bench BENCH_ARGS=\"--rounds 1\""
	@echo "make compose-check  build the image, run and check the Compose stack (root, shared tool)"
	@echo "make client  regenerate the TypeScript client (clients/typescript/) from the API's schema"
	@echo "make client-test  the client's own tests (npm test) against a real API and the fake Supabase"
	@echo "make client-install  npm ci in clients/typescript/ (the others run it when needed)"
	@echo "make e2e     the example web app (examples/web/) in headless Chromium (Playwright, e2e/)"

$(POETRY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is required (found " + sys.version.split()[0] + ")")'
	@echo "Installing Poetry $(POETRY_VERSION) and poetry-plugin-pypi-mirror into $(TOOLS_DIR)/poetry"
	@echo "(once per checkout; downloading them takes about 20 s, from $(if $(PIP_INDEX),$(PIP_INDEX),pip's default index))"
	$(PYTHON) -m venv $(TOOLS_DIR)/poetry
	$(TOOLS_DIR)/poetry/bin/pip install --quiet --disable-pip-version-check \
		"poetry==$(POETRY_VERSION)" "poetry-plugin-pypi-mirror==$(POETRY_MIRROR_PLUGIN_VERSION)"

$(STAMP): $(POETRY) pyproject.toml poetry.lock
	$(POETRY) sync
	@touch $(STAMP)

install: $(STAMP)

# A database that is not there yet does not stop the start (/readyz answers 503 until it is);
# one that can never work with these settings, or a failing migration, does.
run: $(STAMP)
	$(POETRY) run python manage.py upgrade --skip-if-unavailable
	$(POETRY) run python manage.py run --host $(HOST) --port $(PORT)

# In TEST_PROCESSES processes (pytest-xdist), each test file in one of them: most tests wait on
# a server or a database, so two processes take about 40% less time even on two cores.
# TEST_PROCESSES=0 runs them in this one (as `--pdb` needs).
TEST_PROCESSES ?= 2
PYTEST_XDIST := -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(POETRY) run pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

# The edit-test loop: everything but the tests marked `processes` (docs/development.md, Tests).
test-quick: $(STAMP)
	$(POETRY) run pytest -m "not processes" $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: $(STAMP)
	$(POETRY) run ruff check .
	$(POETRY) run ruff format --check .
	$(POETRY) run mypy .

format: $(STAMP)
	$(POETRY) run ruff check --fix .
	$(POETRY) run ruff format .

bench: $(STAMP)
	$(POETRY) run python bench/run.py $(BENCH_ARGS)

# The image and the Compose stack, for real: docker/compose-check.sh runs the shared compose-check
# tool (it starts its own Docker engine; COMPOSE_CHECK=/path/to/compose_check.sh if it is elsewhere).
.PHONY: compose-check
compose-check:
	@docker/compose-check.sh

# --- The front door: the TypeScript client, the example web app and its browser tests ----------
# Node 20.19+ and npm; `npm ci` installs each package's locked dependencies (once, again when its
# lockfile changes). No browser is downloaded: the browser tests use Debian's chromium.
NPM_CI := PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
CLIENT_DIR := clients/typescript
NODE_PACKAGES := $(CLIENT_DIR) examples/web e2e
CHROMIUM ?= /usr/bin/chromium

%/node_modules/.package-lock.json: %/package-lock.json
	cd $* && $(NPM_CI)

client-install: $(CLIENT_DIR)/node_modules/.package-lock.json

# The schema as create_app() makes it (no server, no .env), then the generator pinned in
# clients/typescript/package.json; tests/test_typescript_client.py fails until both are committed.
client: $(STAMP) client-install
	$(POETRY) run python scripts/dump_openapi.py $(CLIENT_DIR)/openapi.json
	cd $(CLIENT_DIR) && npm run -s generate

client-test: $(STAMP) client-install
	cd $(CLIENT_DIR) && MEGAPOLIS_PYTHON=$(CURDIR)/.venv/bin/python npm test

e2e: $(STAMP) $(addsuffix /node_modules/.package-lock.json,$(NODE_PACKAGES))
	@test -x $(CHROMIUM) || { echo "e2e needs Chromium at $(CHROMIUM): apt-get install -y chromium (or CHROMIUM=/path)"; exit 1; }
	cd examples/web && npm run -s typecheck
	cd e2e && MEGAPOLIS_PYTHON=$(CURDIR)/.venv/bin/python CHROMIUM=$(CHROMIUM) npm test

clean:
	rm -rf .venv $(TOOLS_DIR) .pytest_cache .mypy_cache .ruff_cache $(addsuffix /node_modules,$(NODE_PACKAGES))
