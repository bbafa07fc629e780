# One entry point for newcomers and CI. `make demo` and `make test` work on a machine with nothing installed
# beyond Python 3.10+: they create .venv, install the CPU build of torch first (so no CUDA wheels are pulled),
# then the package.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup setup-dev demo test lint format bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[web,serve]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[web,serve,dev]'
	# The reference implementation for parity tests; --no-deps keeps open_clip/torchvision (and CUDA torch) out.
	$(BIN)/pip install -q --no-deps open-flamingo==2.0.1
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

demo: setup
	$(BIN)/mmgpt demo --out runs/demo

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: setup-dev lint
	$(BIN)/python -m pytest -q -ra

bench: setup-dev
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/chat_latency.py
	$(BIN)/python bench/data_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
