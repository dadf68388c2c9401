# crossvit: `make setup`, then `make test`; `make train` runs the embedded default.
PY      := .venv/bin/python
UV      := .venv/bin/uv
# Every package of the environment at one version (uv pip compile; `make lock` refreshes it), so a new release of
# any dependency changes nothing until the lock does and the tests have run on it.
LOCK    := requirements.lock
FMNIST  := /usr/share/datasets/fashion-mnist

.PHONY: setup data slurm lock test test-fast train ablation tables lint format clean

setup: .venv/.installed data slurm

# pip only bootstraps uv at the lock's own version; uv installs exactly the lock, then the project itself.
.venv/.installed: $(LOCK)
	python3 -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check "$$(grep -m1 '^uv==' $(LOCK) | cut -d' ' -f1)"
	VIRTUAL_ENV=.venv $(UV) pip sync -q --compile-bytecode $(LOCK)
	VIRTUAL_ENV=.venv $(UV) pip install -q --no-deps -e .
	touch $@

# Re-resolve pyproject.toml's ranges to the newest releases, install them and run the tests on them.
# One package only: make lock UPGRADE="--upgrade-package pillow"
UPGRADE ?= --upgrade
lock:
	@test -x $(UV) || { echo "run make setup first"; exit 1; }
	$(UV) pip compile -q pyproject.toml --extra dev --universal --python-version 3.10 $(UPGRADE) -o $(LOCK)
	$(MAKE) setup test

data:
	@if [ -d $(FMNIST) ]; then echo "Fashion-MNIST: $(FMNIST)"; \
	elif command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "No apt: run 'python src/train.py data.download=true' once to fetch Fashion-MNIST with torchvision,"; \
		echo "or point data.root at a folder holding its four IDX files."; \
	fi

# Debian's SLURM and munge, for scripts/slurm_local.sh (a one-node cluster the tests run sweeps on).
slurm:
	@if command -v slurmctld >/dev/null && command -v munged >/dev/null; then echo "SLURM: $$(slurmctld -V)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; \
	else \
		echo "No apt (or not root): tests/test_slurm.py will be skipped; install slurm-wlm and munge to run it."; \
	fi

# The test files on TEST_WORKERS pytest-xdist workers (whole files each: module fixtures such as the SLURM
# cluster start once). Most tests wait on the scripts they run: two workers took 460 s on 2 cores where one took
# 763 s (2026-11-29).
TEST_WORKERS ?= 2
PYTEST  := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test:
	$(PYTEST)

test-fast:
	$(PYTEST) -m "not slow"

train:
	$(PY) src/train.py experiment=fashion_mnist

ablation:
	$(PY) src/train.py -m experiment=fusion_ablation
	$(PY) src/report.py $$(ls -td multirun/*/*/ | head -1)

tables:
	$(PY) src/tables.py

lint:
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

format:
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

clean:
	rm -rf outputs multirun .pytest_cache
