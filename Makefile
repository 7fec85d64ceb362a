# The one way in: `make run`, `make test` (`make test-fast` while working), `make lint`, `make bench`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCE ?= sample
OUTPUT ?= recordings
SYSTEM_PACKAGES := PYTHON=$(BIN)/python scripts/system-packages

.PHONY: install system-packages run test test-fast test-docker lint audit bench chaos lock clean

$(BIN)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: $(BIN)/.installed

run: install  ## Record the sample video (or SOURCE=...) into OUTPUT; Ctrl-C stops.
	$(BIN)/sco-recorder up --source $(SOURCE) --output $(OUTPUT)

system-packages: install  ## The Debian packages the tests drive (ffmpeg, chromium, ...), if missing.
	$(SYSTEM_PACKAGES)

test: system-packages  ## The whole test suite: real Redis, Celery, HTTP and video decoding.
	$(BIN)/python -m pytest

test-fast: system-packages  ## Everything but the process-level (e2e) tests: a minute's feedback in seconds.
	$(BIN)/python -m pytest -m "not e2e and not docker" -q

test-docker: install  ## Build the images and run the compose stack with 3 workers (root).
	$(BIN)/python -m pytest -m docker tests/docker -s

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install  ## Every benchmark of docs/benchmarks.md.
	$(SYSTEM_PACKAGES) wrk
	$(BIN)/python -m bench.encoders
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.api_load
	$(BIN)/python -m bench.capacity
	$(BIN)/python -m bench.pixel_formats
	$(BIN)/python -m bench.naive
	$(BIN)/python -m bench.prune

chaos: system-packages  ## Kill processes at random under steady traffic for 5 min; every goal checked (docs/reliability.md).
	$(BIN)/python -m bench.chaos --mqtt

audit: install  ## Known vulnerabilities in the images' pinned dependencies (requirements.lock).
	$(BIN)/pip-audit --no-deps --disable-pip --progress-spinner off -r requirements.lock

lock: install  ## Pin the images' dependencies (requirements.lock); commit the result.
	$(BIN)/uv pip compile pyproject.toml --extra video --extra embedded --extra sample \
	  --extra flower --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --quiet -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
