# kvmm developer commands. Everything installs into $(VENV) on first use.
#   make test     the whole suite once per Keras backend (jax, tensorflow, torch)
#   make bench    throughput / load-time benchmarks against transformers
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BACKENDS ?= jax tensorflow torch
PYTEST_ARGS ?=

.PHONY: install test bench clean

# torch and torchvision are pinned to the pair this machine holds on local disk (open_clip
# and timm, the BiomedCLIP reference, need torchvision); an unpinned torch downloads a
# multi-GB build. Users who only run kvmm need neither (`pip install kvmm[jax]`).
TORCH_PINS ?= "torch==2.14.1" "torchvision==0.29.1"
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS) -e ".[jax,tensorflow,search,test]"
	touch $@

install: $(VENV)/.installed

# Tests never reach the network (HF_HUB_OFFLINE=1). pytest exits 5 when it collects
# nothing, which fails this target like any other error.
test: install
	@set -e; for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend"; \
		KERAS_BACKEND=$$backend HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS); \
	done

# make bench BENCH_ARGS="--quick" (or --families siglip --batches 1,8,32 --backends jax ...)
BENCH_ARGS ?=
bench: install
	$(BIN)/python benchmarks/encoders_speed.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
