# dsr: one entry point. `make help` lists the targets.
# Data root: DSR_DATA_ROOT (default: data/). Example: DSR_DATA_ROOT=../shared/data make test
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.14.1 torchvision==0.29.1
THREADS ?= 2

.PHONY: help setup run test lint bench clean-scratch

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[book,dev,cluster]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with everything installed (idempotent)

run: $(STAMP)  ## the main job: LeNet-300-100 / MNIST, DSR at s = 0.9, the paper's 100 epochs (cached)
	$(BIN)/python -m dsr train --protocol lenet300-mnist --budget paper --method dsr \
	  --sparsity 0.9 --seed 0 --threads $(THREADS)

test: $(STAMP)  ## lint and run the test suite (CPU, minutes)
	$(BIN)/ruff check dsr tests
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -x -q --durations=10

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check dsr tests
	$(BIN)/ruff format --check dsr tests

bench: $(STAMP)  ## sparse/dense step time and DSR reallocation cost, as ratios
	$(BIN)/python -m dsr bench --threads $(THREADS)
