# Short targets over the project's virtual environment. A fresh machine needs
# only `make up` (start a local cluster) and `make test` (run the tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/tanu/v1/*.proto)

.PHONY: up test lint proto bench clean venv models

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

test: $(STAMP) $(MODELS)
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check libs services tests benchmarks
	$(BIN)/ruff format --check libs/tanu/core services tests benchmarks

# Regenerates the committed contracts in libs/tanu/v1 with the pinned
# grpcio-tools; tests/test_contracts.py fails when they drift.
proto: $(STAMP)
	$(BIN)/python -m tanu.core.codegen libs

bench: $(STAMP)
	$(BIN)/python benchmarks/identify_path.py

clean:
	rm -rf $(VENV) var .pytest_cache
