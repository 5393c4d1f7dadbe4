# kvmm developer commands. Everything installs into $(VENV) on first use.
#   make demo     zero-shot classification with the shipped demo model, offline
#   make test     the whole suite once per Keras backend (jax, tensorflow, torch)
#   make bench    throughput / load-time benchmarks against transformers
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BACKENDS ?= jax tensorflow torch
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

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

# The demo model and its vocabulary ship in weights/siglip_demo_shapes: no network needed.
# make demo DEMO_ARGS="--count 12 --seed 3 --out shapes/" (the images are kept there).
DEMO_ARGS ?=
demo: install
	HF_HUB_OFFLINE=1 $(BIN)/python examples/demo.py $(DEMO_ARGS)

# Tests never reach the network (HF_HUB_OFFLINE=1). pytest exits 5 when it collects
# nothing, which fails this target like any other error.
# The backends run at the same time, one pytest process each (much of the suite is
# single-threaded tracing and compiling, so two cores serve three runs ~1.5x faster than
# one after the other); each run's output is kept in $(TEST_LOGS)/<backend>.log and
# printed when all have finished. TEST_PARALLEL=0 runs them one after the other, live.
TEST_PARALLEL ?= 1
TEST_LOGS ?= .test-logs
test: install
	@if [ "$(TEST_PARALLEL)" = "0" ]; then \
		set -e; for backend in $(BACKENDS); do \
			echo "=== KERAS_BACKEND=$$backend"; \
			KERAS_BACKEND=$$backend HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS); \
		done; \
	else \
		mkdir -p $(TEST_LOGS); rm -f $(TEST_LOGS)/*.rc; \
		echo "=== running the suite on $(BACKENDS) at the same time (logs: $(TEST_LOGS)/)"; \
		for backend in $(BACKENDS); do \
			( KERAS_BACKEND=$$backend HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS) \
				> $(TEST_LOGS)/$$backend.log 2>&1; echo $$? > $(TEST_LOGS)/$$backend.rc ) & \
		done; wait; \
		failed=""; for backend in $(BACKENDS); do \
			echo "=== KERAS_BACKEND=$$backend"; cat $(TEST_LOGS)/$$backend.log; \
			[ "$$(cat $(TEST_LOGS)/$$backend.rc)" = "0" ] || failed="$$failed $$backend"; \
		done; \
		if [ -n "$$failed" ]; then echo "=== FAILED on:$$failed"; exit 1; fi; \
		echo "=== passed on $(BACKENDS)"; \
	fi

# make bench BENCH_ARGS="--quick" (or --families siglip --batches 1,8,32 --backends jax ...)
BENCH_ARGS ?=
bench: install
	$(BIN)/python benchmarks/encoders_speed.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
