#!/usr/bin/env bash
# Every CPU bench in one go, logs and CSV/JSON under bench/results/ (about 15 minutes on 2 cores).
#   bash bench/setup_peers.sh   # once
#   bash bench/run_all.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=bench/results
mkdir -p "$OUT"
run() { echo "== $* (load $(cut -d' ' -f1-3 /proc/loadavg))"; "$@"; }
run "$PY" -m bench.side_by_side --seconds 15 2>&1 | grep -v "^WARNING" | tee "$OUT/side_by_side.log"
run "$PY" -m bench.side_by_side --seconds 15 --server torch-bf16 --only P1 P3 P4 2>&1 | grep -v "^WARNING" | tee "$OUT/side_by_side-torch-bf16.log"
run "$PY" -m bench.triton_sweep --mode raw gateway --concurrency 1 8 32 64 --seconds 10 | tee "$OUT/triton_sweep.log"
run "$PY" -m bench.gateway_load --workers 1 2 --concurrency 1 16 64 --seconds 10 | tee "$OUT/gateway_load.log"
run bash bench/perf_analyzer.sh | tee "$OUT/perf_analyzer.log"
echo "== done (load $(cut -d' ' -f1-3 /proc/loadavg))"
