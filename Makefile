# Two commands set everything up: `make train` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to the build that lies on this project's machines; override on others,
# e.g. `make TORCH="torch torchvision" train`.
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.ganexp-installed
ARGS ?=

.PHONY: install train test test-slow test-all fault bench bench-eval bench-modes bench-startup gpu-kit gpu-check-dry clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,sweep]'
	touch $(STAMP)

train: $(STAMP)
	$(VENV)/bin/ganexp train $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

# The tests marked slow: end-to-end runs of every trick, sweeps, launchers, the SIGKILL fault script.
# `make test` must stay under 10 minutes on 2 cores (pytest prints its own count and time).
test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

test-all: test test-slow

# scripts/fault_kill.py: 10 kills (SIGKILL, SIGTERM, SIGUSR1, SIGUSR2) at random moments of a CPU run, each resumed; nothing may be lost.
fault: $(STAMP)
	$(PY) scripts/fault_kill.py $(ARGS)

# scripts/bench_train.py; then, when pytorch/examples' dcgan/main.py lies at REF (not part of ganexp:
# docs/performance.md says where to get it), whole-process pairs against it (scripts/bench_reference.py).
REF ?= outputs/ref/dcgan_main.py
bench: $(STAMP)
	$(PY) scripts/bench_train.py $(ARGS)
	@if [ -f $(REF) ]; then $(PY) scripts/bench_reference.py --reference $(REF); \
	else echo "no $(REF): skipping the pytorch/examples comparison (docs/performance.md)"; fi

bench-eval: $(STAMP)
	$(PY) scripts/bench_eval.py $(ARGS)

bench-modes: $(STAMP)
	$(PY) scripts/bench_modes.py $(ARGS)

bench-startup: $(STAMP)
	$(PY) scripts/bench_startup.py $(ARGS)

# The GPU check's kit: wheels the GPU image lacks, in .whl/ (ignored); prints what to carry and the command.
gpu-kit: $(STAMP)
	$(PY) scripts/gpu_kit.py $(ARGS)

# The GPU check's steps on the CPU with tiny sizes (also a slow test: tests/test_gpu_check.py).
gpu-check-dry: gpu-kit
	GPU_CHECK_PYTHON=$(PY) bash scripts/gpu_check.sh --dry-run

clean:
	rm -rf $(VENV) outputs/train outputs/sweeps .pytest_cache
