# semroute: `make up` serves, `make test` runs the whole suite. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config/example.yaml
PORT   ?= 8080
HOST   ?= 127.0.0.1
# Triton's ports (HTTP / gRPC / metrics): change them when another server holds 8100-8102.
TRITON_HTTP_PORT    ?= 8100
TRITON_GRPC_PORT    ?= 8101
TRITON_METRICS_PORT ?= 8102

.PHONY: install model browser up test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# xds-protos (the Envoy processor's stubs) ships its own, older copy of opentelemetry/proto/*,
	# which breaks the OTLP exporter when it lands last: the real package's files go back on top.
	$(BIN)/python -m pip install -q --force-reinstall --no-deps \
		"opentelemetry-proto==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
	touch $@

# The Triton model repository is generated (ONNX + config.pbtxt); export skips when up to date.
model: install
	$(BIN)/semroute export

up: model
	$(BIN)/semroute up --config $(CONFIG) --host $(HOST) --port $(PORT) --http-port $(TRITON_HTTP_PORT) \
		--grpc-port $(TRITON_GRPC_PORT) --metrics-port $(TRITON_METRICS_PORT)

# The console's browser test drives Debian's Chromium and chromedriver: installed when missing, else silent.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ echo "installing chromium and chromium-driver (Debian) for the console's browser test"; \
		  $(SUDO) apt-get update -qq && \
		  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: model browser
	$(BIN)/python -m pytest -q -ra

clean:
	rm -rf $(VENV) .cache model_repository/*/config.pbtxt model_repository/*/1/*.onnx
