# dsr: one entry point. `make help` lists the targets.
# Data root: DSR_DATA_ROOT (default: data/, which ships MNIST). Example: DSR_DATA_ROOT=/data/sets make test
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
KERNEL  := $(VENV)/.kernel
TORCH   := torch==2.14.1 torchvision==0.29.1
THREADS ?= 2
PROFILE ?= default
BOOK    ?= build/book

.PHONY: help setup run test lint bench book gpu-check gpu-campaign import-runs clean-scratch

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[book,dev,cluster]'
	touch $(STAMP)

# The notebooks run in the `python3` kernel of .venv, whatever kernels the user has elsewhere.
$(KERNEL): $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (dsr)"
	touch $(KERNEL)

setup: $(STAMP) $(KERNEL)  ## create .venv with everything installed (idempotent)

run: $(STAMP)  ## the main job: LeNet-300-100 / MNIST, DSR at s = 0.9, the paper's 100 epochs (cached)
	$(BIN)/python -m dsr train --protocol lenet300-mnist --budget paper --method dsr \
	  --sparsity 0.9 --seed 0 --threads $(THREADS)

test: $(STAMP) $(KERNEL)  ## lint, format check, type check of the public API, the tests (every notebook at the smoke profile, a strict book build, the book in headless Chromium)
	$(BIN)/ruff check dsr tests scripts
	$(BIN)/ruff format --check dsr tests scripts
	$(BIN)/mypy
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -x --durations=10

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check dsr tests scripts
	$(BIN)/ruff format --check dsr tests scripts

book: $(STAMP) $(KERNEL)  ## execute the notebooks on the committed results (PROFILE=default) and build the HTML book (LOOK=1: then check it in headless Chromium)
	$(BIN)/python -m dsr book --profile $(PROFILE) --out $(BOOK) $(if $(LOOK),--look)

bench: $(STAMP)  ## sparse/dense step time and DSR reallocation cost, as ratios
	$(BIN)/python -m dsr bench --threads $(THREADS)

gpu-check:  ## on a CUDA machine: bench, no-sync check, short DSR run, 2-GPU DDP (< 10 min)
	$(PY) scripts/gpu_check.py

OUT     ?= build/gpu-campaign
gpu-campaign:  ## on a CUDA machine: one slot of the WRN-28-2 paper-protocol campaign into OUT
	$(PY) scripts/gpu_campaign.py $(OUT)

import-runs: $(STAMP)  ## check and copy the finished runs of FROM (a campaign folder) into data/runs
	@test -n "$(FROM)" || { echo "usage: make import-runs FROM=<campaign folder>"; exit 2; }
	$(BIN)/python -m dsr runs --import $(FROM)
