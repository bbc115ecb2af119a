#!/usr/bin/env bash
# Make .venv-bench: LiteLLM's proxy and aurelio semantic-router for bench/side_by_side.py.
# They never go into .venv (their pins would fight semroute's: numpy 2, fastapi, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv-bench/bin/python ] || "$PYTHON" -m venv .venv-bench
.venv-bench/bin/python -m pip install -q --upgrade pip
.venv-bench/bin/python -m pip install -q -r bench/requirements-peers.txt
LITELLM_LOCAL_MODEL_COST_MAP=True .venv-bench/bin/python -c "import litellm, semantic_router, torch; print('peers ready: litellm', __import__('importlib.metadata').metadata.version('litellm'), '| semantic-router', semantic_router.__version__, '| torch', torch.__version__)"
