# semroute: `make up` serves, `make test` runs the whole suite. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config/example.yaml
PORT   ?= 8080

.PHONY: install model up test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The Triton model repository is generated (ONNX + config.pbtxt); export skips when up to date.
model: install
	$(BIN)/semroute export

up: model
	$(BIN)/semroute up --config $(CONFIG) --port $(PORT)

test: model
	$(BIN)/python -m pytest -q -ra

clean:
	rm -rf $(VENV) .cache model_repository/*/config.pbtxt model_repository/*/1/*.onnx
