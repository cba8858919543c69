# certnn: `make test` and `make demo` do all set-up on a fresh machine.
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.certnn-installed
# CPU build of torch; the pin keeps pip from pulling a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
JOBS ?= 2

.PHONY: setup test test-full demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "$(TORCH_PIN)"
	$(VPY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(VPY) -m pytest -q -n $(JOBS) -m "not slow" tests

test-full: $(STAMP)
	$(VPY) -m pytest -q -n $(JOBS) tests

# the device-parametrised tests (the `device` fixture) on the GPU only; needs torch with CUDA
test-gpu: $(STAMP)
	CERTNN_TEST_DEVICES=cuda $(VPY) -m pytest -q -p no:xdist tests/unit/engine/test_devices.py \
		tests/unit/attacks/test_attack_devices.py tests/unit/certify/test_verify_devices.py

demo: $(STAMP)
	$(VENV)/bin/certnn demo

bench: $(STAMP)
	$(VPY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
