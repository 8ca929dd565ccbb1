# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-at lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m briefing.demo

lint: $(STAMP)
	$(BIN)/ruff check briefing tests benchmarks
	$(BIN)/ruff format --check briefing tests benchmarks
	$(BIN)/mypy briefing

test: lint
	$(BIN)/python -m pytest

# The whole suite at another moment, as CI's second pass does: make test-at DATE="2028-02-29 09:30"
# (UTC; needs the faketime package). Every process the tests start sees the same shifted clock.
DATE ?= 2028-02-29 09:30
test-at: $(STAMP)
	@offset=$$($(BIN)/python -c 'import sys, datetime as d; t = d.datetime.fromisoformat(sys.argv[1]).replace(tzinfo=d.UTC); print(f"{int((t - d.datetime.now(d.UTC)).total_seconds()):+d}s")' "$(DATE)") && \
	echo "tests at $(DATE) UTC (faketime offset $$offset)" && \
	FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -f "$$offset" $(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/import_subscribers.py
	$(BIN)/python benchmarks/render.py
	$(BIN)/python benchmarks/sections.py
	$(BIN)/python benchmarks/send_times.py
	$(BIN)/python benchmarks/message_bytes.py
	$(BIN)/python benchmarks/send.py
	$(BIN)/python benchmarks/unsubscribe_load.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/scale.py --quick --reset

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
