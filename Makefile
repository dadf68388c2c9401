# crossvit: `make setup`, then `make test`; `make train` runs the embedded default.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
# pip resolves every dependency against these pins so nothing can pull a second torch.
PINS    := .ci/constraints.txt
FMNIST  := /usr/share/datasets/fashion-mnist

.PHONY: setup data test test-fast train ablation tables lint format clean

setup: .venv/.installed data

.venv/.installed: pyproject.toml $(PINS)
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(PINS) -e '.[dev]'
	touch $@

data:
	@if [ -d $(FMNIST) ]; then echo "Fashion-MNIST: $(FMNIST)"; \
	elif command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "No apt: run 'python src/train.py data.download=true' once to fetch Fashion-MNIST with torchvision,"; \
		echo "or point data.root at a folder holding its four IDX files."; \
	fi

test:
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not slow"

train:
	$(PY) src/train.py

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
