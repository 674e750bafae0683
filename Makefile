# The two commands the README promises, plus the ones around them.
#   make demo   export the bundled model, serve it on 127.0.0.1, detect on sample images
#   make test   the whole test suite (what CI runs)
#   make test-fast  the tests without containers, AWS emulator or slow exports (about 2 minutes)
#   make image  the serving image (exports weights/model.onnx first when it is missing or stale);
#               PLATFORM=linux/arm64 for Graviton
#   make test-arm64  the arm64 images (both runtimes) built and run under qemu (many minutes)
#   make bench  the side-by-side benchmark (minutes; see docs/bench.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
REQUIREMENTS := requirements-export.txt requirements-serve.txt requirements-openvino.txt \
	requirements-deploy.txt requirements-bench.txt requirements-test.txt

# The machine's Python, resolved once on the caller's PATH; then every recipe runs with PATH
# holding only the venv and the system directories, so a tool installed by hand anywhere else
# (pip --user, /usr/local/bin, pyenv) can never stand in for a missing install step.
SYSTEM_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null)
export PATH := $(BIN):/usr/sbin:/usr/bin:/sbin:/bin

# For `make image` (and `make demo`): another checkpoint, export size, base image, tag, runtime.
IMAGE_ARGS := $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(IMG_SIZE),--img-size $(IMG_SIZE)) \
	$(if $(BASE_IMAGE),--base-image $(BASE_IMAGE)) $(if $(TAG),--tag $(TAG)) \
	$(if $(RUNTIME),--runtime $(RUNTIME)) $(if $(PLATFORM),--platform $(PLATFORM))

.PHONY: env test test-fast test-arm64 lint demo bench image clean

env: $(VENV)/.installed

# The requirement files pin every package; then the project itself, editable and without
# dependencies (pyproject.toml: the yolov7-export, yolov7-serve and yolov7-deploy commands).
$(VENV)/.installed: $(REQUIREMENTS) pyproject.toml
	@test -n "$(SYSTEM_PYTHON)" || { echo "error: $(PYTHON) not found: make PYTHON=/path/to/python3.11"; exit 2; }
	@echo "==> creating $(VENV) with $(SYSTEM_PYTHON) from $(REQUIREMENTS)"
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(addprefix -r ,$(REQUIREMENTS))
	$(BIN)/python -m pip install --quiet --no-deps --editable .
	@touch $@

lint: env
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/hadolint Dockerfile

test: lint
	$(BIN)/python -m pytest

test-fast: env
	@start=$$(date +%s); \
	$(BIN)/python -m pytest -m "not container and not emulator and not slow"; status=$$?; \
	echo "make test-fast: $$(( $$(date +%s) - start )) s"; exit $$status

# Left out of `make test` (tests/conftest.py): it needs qemu-user-static and takes many minutes.
test-arm64: env
	@start=$$(date +%s); \
	$(BIN)/python -m pytest -m arm64 tests/container/test_image_arm64.py; status=$$?; \
	echo "make test-arm64: $$(( $$(date +%s) - start )) s"; exit $$status

bench: env
	$(BIN)/python -m bench

demo: env
	$(BIN)/python -m demo

image: env
	$(BIN)/python -m container.image $(IMAGE_ARGS)

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .mypy_cache build *.egg-info
