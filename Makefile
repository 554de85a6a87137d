# vif: `make run` serves the default model on 127.0.0.1:8000; `make test` sets up and runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
MODEL_DIR := models/SmolLM2-135M-Instruct
CONFIG := runtime/conf/model_config.json

.PHONY: help install model run test unit integration cluster-test lint format bench lock clean crds e2e e2e-kind quickstart-kind \
	images test-images test-gpu-env \
	operator-install-check bench-operator bench-abuse bench-routing bench-router-scale bench-cold-start bench-cache bench-tracing bench-tenants profile flake-check test-servers chaos soak

help:
	@echo "Serve and test (README.md):"
	@echo "  run [MODEL=dir|ORG/NAME ARGS=...]  serve a model on 127.0.0.1:8000 (the default model unless MODEL)"
	@echo "  test                       everything CI runs: lint, unit, engine, images, the local plane"
	@echo "  unit | integration | cluster-test | e2e | e2e-kind | quickstart-kind | test-images | chaos"
	@echo "  soak MINUTES=30 EVERY=180   steady load while a replica is deleted at random every EVERY seconds"
	@echo "  flake-check SUITE=<pytest selection> N=<runs>   a selection N times in one session"
	@echo "  lint | format | lock | crds | operator-install-check | install | model | test-servers | clean"
	@echo "The local plane and images:"
	@echo "  cluster-build | cluster-up | cluster-down | autoscaling-build | autoscaling-up | autoscaling-down | images"
	@echo "  test-gpu-env (the GPU image's locked environment, installed here and started without a GPU)"
	@echo "Benchmarks (numbers side by side with the reference, docs/performance.md):"
	@echo "  bench | bench-abuse | bench-cold-start | bench-cache | bench-tracing | bench-routing | bench-tenants"
	@echo "  bench-router-scale | bench-operator | profile"

$(PY):
	python3 -m venv $(VENV)

$(INSTALLED): runtime/requirements/bootstrap.lock runtime/requirements/cpu.lock runtime/requirements/dev.lock pyproject.toml runtime/scripts/install.sh | $(PY)
	runtime/scripts/install.sh $(PY) --editable
	touch $@

install: $(INSTALLED)

$(MODEL_DIR)/vif-model.json: | $(INSTALLED)
	$(VENV)/bin/vif-runtime prepare-model

model: $(MODEL_DIR)/vif-model.json

# `make run MODEL=models/SmolLM2-135M-Instruct` or `MODEL=ORG/NAME` (downloaded: docs/models.md) serves another model;
# ARGS go to `vif-runtime serve` (e.g. ARGS="--served-model-name smol --max-model-len 4096").
run: model
	$(VENV)/bin/vif-runtime serve $(or $(MODEL),--config $(CONFIG) --model-name smollm2-135m-instruct) \
		--host 127.0.0.1 --port 8000 $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile.runtime Dockerfile.operator
	mkdir -p .cache/mypy-src/vif  # mypy cannot follow the editable install's import hook: link the packages
	ln -sfn ../../../runtime .cache/mypy-src/vif/runtime && ln -sfn ../../../operator .cache/mypy-src/vif/operator
	$(VENV)/bin/mypy -p vif.runtime -p vif.operator
	bash -n runtime/scripts/install.sh operator/scripts/install.sh e2e/cluster/*.sh e2e/images/*.sh e2e/tracing/*.sh e2e/*.sh

# The operator image's install recipe in a throwaway venv: proves operator/requirements.lock is complete.
operator-install-check:
	rm -rf .cache/operator-venv && python3 -m venv .cache/operator-venv
	operator/scripts/install.sh .cache/operator-venv/bin/python
	.cache/operator-venv/bin/python -P -c "import vif.operator.cli, vif.operator.handlers"
	.cache/operator-venv/bin/vif-operator --help > /dev/null

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The tests that need nothing but the venv: every other test carries the one marker of what it needs (tests/conftest.py).
unit: install
	$(VENV)/bin/pytest -m "not integration and not cluster and not images and not servers and not e2e and not helm" -q

integration: model test-servers
	$(VENV)/bin/pytest -m integration -q

# The real servers the tests start: olah, a Hugging Face-compatible hub (tests/helpers/hub_server.py), moto, an
# S3-compatible store (tests/helpers/s3_server.py), vllm-router, each in a venv of its own, and Jaeger (below), cached by version
# under ~/.cache/vif/tools; and Redis, from Debian.
TOOLS ?= $(HOME)/.cache/vif/tools
OLAH := $(TOOLS)/olah-0.5.4/bin/olah-cli
$(OLAH):
	rm -rf $(TOOLS)/olah-0.5.4 && python3 -m venv $(TOOLS)/olah-0.5.4
	$(TOOLS)/olah-0.5.4/bin/pip install -q olah==0.5.4
MOTO := $(TOOLS)/moto-5.2.5/bin/moto_server
$(MOTO):
	rm -rf $(TOOLS)/moto-5.2.5 && python3 -m venv $(TOOLS)/moto-5.2.5
	$(TOOLS)/moto-5.2.5/bin/pip install -q "moto[server]==5.2.5"
# Jaeger, the OTLP collector of the tracing tests (tests/helpers/jaeger.py), built from Go modules at the version
# e2e/tracing/go.mod pins.
JAEGER_VERSION := $(shell sed -n 's|^[[:space:]]*github.com/jaegertracing/jaeger v\([0-9.]*\).*|\1|p' e2e/tracing/go.mod)
JAEGER := $(TOOLS)/jaeger-$(JAEGER_VERSION)/jaeger
$(JAEGER):
	e2e/tracing/build.sh $(TOOLS)/jaeger-$(JAEGER_VERSION)
# vLLM's own router (Rust), in front of vif's runtime (tests/helpers/vllm_router.py).
VLLM_ROUTER := $(TOOLS)/vllm-router-0.1.17/bin/vllm-router
$(VLLM_ROUTER):
	rm -rf $(TOOLS)/vllm-router-0.1.17 && python3 -m venv $(TOOLS)/vllm-router-0.1.17
	$(TOOLS)/vllm-router-0.1.17/bin/pip install -q vllm-router==0.1.17
# Redis, where the routers of a model share its tenants' limits (tests/helpers/redis_server.py): Debian's package.
REDIS := /usr/bin/redis-server
$(REDIS):
	apt-get install -y -qq redis-server >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq redis-server >/dev/null)
test-servers: $(OLAH) $(MOTO) $(JAEGER) $(VLLM_ROUTER) $(REDIS)

cluster-test: model cluster-up test-servers
	$(VENV)/bin/pytest -m "cluster or helm" -q

# The images: Dockerfile.operator, and Dockerfile.runtime's cpu target with the default model baked in. Docker where
# an engine runs, else buildah on a stand-in base made from Debian packages; cached by the hash of their inputs, so a
# second run takes seconds (e2e/images/README.md). The tests find them through VIF_IMAGES.
IMAGES := $(CURDIR)/.cache/images/images.json
images:
	e2e/images/build.sh

# The GPU image's environment, without the image (its CUDA base cannot be pulled here): gpu.lock installed by the
# image's recipe into a Python 3.12 venv under ~/.cache/vif (by the locks' hash), then its console scripts started
# (e2e/gpu/check_env.py). No GPU needed; about 9 GB and a few minutes the first time, so not part of `make test`.
PYTHON312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) python3.12)
GPU_VENV := $(HOME)/.cache/vif/gpu-venv-$(shell cat runtime/requirements/gpu.lock runtime/requirements/bootstrap.lock | sha256sum | cut -c1-12)
$(GPU_VENV)/bin/python:
	rm -rf $(GPU_VENV) && $(PYTHON312) -m venv $(GPU_VENV)

# install.sh again each time: the lock's packages are there already, the checkout's vif is installed anew.
test-gpu-env: $(GPU_VENV)/bin/python model
	runtime/scripts/install.sh $(GPU_VENV)/bin/python --gpu
	$(GPU_VENV)/bin/python -P e2e/gpu/check_env.py $(GPU_VENV) $(MODEL_DIR)

# The built images themselves: user, contents, labels, and the runtime serving with no extra environment.
test-images: install images
	VIF_IMAGES=$(IMAGES) $(VENV)/bin/pytest -q -m images

# Everything: lint, unit tests, the real engine, the images, and the operator against the local control plane (the
# e2e suite runs both images; the autoscaling tests start KEDA and Prometheus beside it).
test: lint operator-install-check model test-servers cluster-up images autoscaling-build
	VIF_IMAGES=$(IMAGES) $(VENV)/bin/pytest -q

# A pytest selection N times over in one session, on one plane and one engine, then each test's failures out of N:
# make flake-check SUITE="tests/router/integration" N=10 (tests/flake_check.py).
SUITE ?= tests
flake-check: N = 10
flake-check: model test-servers cluster-up images autoscaling-build
	VIF_IMAGES=$(IMAGES) $(PY) tests/flake_check.py --runs $(N) "$(SUITE)"

# Faults on the local plane, one table at the end (e2e/chaos; its chaos_*.py files are not part of `make test`):
# it kills the plane's own API server and etcd (docs/reliability.md), so run it alone.
chaos: model cluster-up
	$(VENV)/bin/pytest -q -p no:cacheprovider e2e/chaos/chaos_*.py

# A steady load through a model's routers for MINUTES while one of its replicas, at random, is deleted every EVERY
# seconds (e2e/chaos/soak_pods.py): requests, failures by cause, each pod's memory. Alone, as chaos.
soak: MINUTES = 30
soak: EVERY = 180
soak: model cluster-up
	VIF_SOAK_MINUTES=$(MINUTES) VIF_SOAK_EVERY=$(EVERY) $(VENV)/bin/pytest -q -p no:cacheprovider e2e/chaos/soak_pods.py

# The e2e suite alone: against the local control plane (CI), or on kind where Docker runs.
e2e: install model cluster-up images
	VIF_IMAGES=$(IMAGES) $(VENV)/bin/pytest -q e2e

e2e-kind: install
	e2e/kind.sh

# docs/quickstart.md as one script: kind cluster, images loaded, helm install, the default model, a first answer.
quickstart-kind: install
	e2e/quickstart-kind.sh

# The CRD is generated from the spec models (operator/spec/); a test fails when the file is stale.
crds: install
	$(PY) -m vif.operator.crd > crds/inference.vif.dev_inferencemodels.yaml
	cp crds/*.yaml charts/vif-operator/crds/

bench: model
	$(PY) tests/bench/serving_bench.py --config $(CONFIG) --model-name smollm2-135m-instruct $(BENCH_ARGS)

# 16 concurrent ~2 MB bodies while probing /health: the probe's p99 on vif and on vLLM's own server.
bench-abuse: model
	$(PY) tests/bench/abuse_bench.py --config $(CONFIG) --model-name smollm2-135m-instruct

# A load that repeats half its questions, with the response cache and without (no-store), on one server.
# Tracing's cost: vif with every request traced to Jaeger against vif untraced, fresh servers alternating
# (tests/bench/tracing_bench.py; docs/tracing.md).
bench-tracing: model test-servers
	$(PY) tests/bench/tracing_bench.py --config $(CONFIG) --model-name smollm2-135m-instruct --loads everyday $(BENCH_ARGS)

bench-cache: model
	$(PY) tests/bench/response_cache_bench.py --config $(CONFIG) --model-name smollm2-135m-instruct $(BENCH_ARGS)

# What a replica costs from nothing to its first answer (the part of a scale from zero after KEDA and the pod's
# scheduling): vif and vLLM's own server, fresh each round.
bench-cold-start: model
	$(PY) tests/bench/cold_start_bench.py --config $(CONFIG) --model-name smollm2-135m-instruct $(BENCH_ARGS)

# vif-router's strategies on two one-core replicas with small KV caches (prefix_repetition prompts), and the
# router's own cost on one replica. BENCH_ARGS=--quick: one short round.
bench-routing: model
	$(PY) tests/bench/routing_bench.py --config $(CONFIG) --model-name smollm2-135m-instruct $(BENCH_ARGS)

# The router's own cost at 100, 1,000 and 5,000 concurrent streams from stand-in replicas (no engine), against the
# stand-ins direct and vllm-router. BENCH_ARGS="--levels 100 1000" for fewer.
bench-router-scale: install $(VLLM_ROUTER)
	$(PY) tests/bench/router_scale_bench.py $(BENCH_ARGS)

# Two tenants on two replicas, one sending ten times the other's rate: the quiet one's TTFT alone and together, with
# the router forwarding first come first served and with its fair queue (docs/tenants.md).
bench-tenants: model
	$(PY) tests/bench/tenants_bench.py --config $(CONFIG) --model-name smollm2-135m-instruct $(BENCH_ARGS)

# N InferenceModels at once on the local plane: time to Ready, API requests per model, memory, idle writes.
N ?= 100
IDLE ?= 300
bench-operator: install cluster-up
	$(PY) tests/bench/operator_bench.py --models $(N) --idle-seconds $(IDLE)

# The runtime's front end under the front-end-bound load, sampled by py-spy (kept out of the project's venv):
# a flame graph and the busiest functions, in bench-results/.
PY_SPY := .cache/py-spy/bin/py-spy
$(PY_SPY):
	python3 -m venv .cache/py-spy && .cache/py-spy/bin/pip install --quiet py-spy==0.4.3

profile: model $(PY_SPY)
	$(PY) tests/bench/profile_frontend.py --config $(CONFIG) --model-name smollm2-135m-instruct --py-spy $(PY_SPY)

# Re-pin the environment from what is installed in $(VENV) (after changing versions by hand): the runtime's
# closure in runtime/requirements/cpu.lock (what the CPU image installs), the rest in dev.lock; the GPU image's
# gpu.lock resolved by pip for its platform; every pin with its files' hashes from PyPI (runtime/scripts/lock.py).
lock: install
	$(PY) runtime/scripts/lock.py --gpu-python $(PYTHON312)

clean:
	rm -rf $(VENV) models .pytest_cache .ruff_cache

# A local Kubernetes control plane (etcd, API server, controller manager, scheduler, kwok's simulated
# node) built from Go modules and cached; kubeconfig in .cluster/kubeconfig. See e2e/cluster/README.md.
.PHONY: cluster-build cluster-up cluster-down

cluster-build:
	e2e/cluster/build.sh

cluster-up: cluster-build
	e2e/cluster/up.sh

cluster-down:
	e2e/cluster/down.sh

# KEDA (operator and metrics API server) and Prometheus, built from Go modules and cached apart from the control
# plane, run as local processes beside it for the tests of the real autoscaling chain. See e2e/cluster/README.md.
.PHONY: autoscaling-build autoscaling-up autoscaling-down

autoscaling-build:
	e2e/cluster/build-autoscaling.sh

autoscaling-up: cluster-up autoscaling-build
	e2e/cluster/autoscaling.sh up

autoscaling-down:
	e2e/cluster/autoscaling.sh down
