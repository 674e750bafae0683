# The two commands the README promises, plus the ones around them.
#   make demo   export the bundled model, serve it on 127.0.0.1, detect on sample images
#   make test   the whole test suite (what CI runs)
#   make bench  the side-by-side benchmark (minutes; see docs/bench.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REQUIREMENTS := requirements-export.txt requirements-serve.txt requirements-deploy.txt \
	requirements-bench.txt requirements-test.txt

.PHONY: env test lint demo bench clean

env: $(VENV)/.installed

$(VENV)/.installed: $(REQUIREMENTS)
	@echo "==> creating $(VENV) from $(REQUIREMENTS)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(addprefix -r ,$(REQUIREMENTS))
	@touch $@

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

test: lint
	$(BIN)/python -m pytest

bench: env
	$(BIN)/python -m bench

demo: env
	$(BIN)/python -m demo

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
