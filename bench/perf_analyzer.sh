#!/usr/bin/env bash
# perf_analyzer concurrency sweep on the `router` model with real tokenized prompts → CSV.
#
#   bash bench/perf_analyzer.sh [TRITON_GRPC=127.0.0.1:8101] [CONCURRENCY="1 2 4 8 16 32 64"]
#
# perf_analyzer 2.60 (PyPI `perf-analyzer`) is built for glibc ≥ 2.38 (Debian 13, Ubuntu 24.04,
# Triton's SDK container). Where it cannot run, this script says so and exits 3; the Python gRPC
# generator covers the same sweep everywhere: python -m bench.triton_sweep --mode raw.
set -euo pipefail
cd "$(dirname "$0")/.."
URL=${TRITON_GRPC:-127.0.0.1:8101}
CONCURRENCY=${CONCURRENCY:-"1 2 4 8 16 32 64"}
OUT=${OUT_DIR:-bench/results}
PYTHON=${PYTHON:-.venv/bin/python}
PA=${PERF_ANALYZER:-$(command -v perf_analyzer || true)}
mkdir -p "$OUT"

glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
if [ "$(printf '%s\n2.38\n' "$glibc" | sort -V | head -1)" != "2.38" ]; then
  echo "perf_analyzer 2.60 needs glibc >= 2.38; this machine has glibc $glibc ($(. /etc/os-release; echo "$PRETTY_NAME"))."
  echo "It cannot run here. The same sweep with the Python gRPC generator:"
  echo "  $PYTHON -m bench.triton_sweep --mode raw --concurrency $CONCURRENCY --triton-url $URL"
  exit 3
fi
if [ -z "$PA" ]; then
  echo "perf_analyzer not found: pip install perf-analyzer==2.60.0 (or set PERF_ANALYZER=/path/to/perf_analyzer)"
  exit 3
fi

"$PYTHON" -m bench.pa_data --out "$OUT/pa_input.json" ${SEQ_LEN:+--seq-len "$SEQ_LEN"}
CSV="$OUT/perf_analyzer.csv"
rm -f "$CSV"
for c in $CONCURRENCY; do
  echo "== concurrency $c"
  # one sequence per request (-b 1), every request a real prompt's first chunk at its own length
  timeout 120 "$PA" -m router -i grpc -u "$URL" -b 1 --input-data "$OUT/pa_input.json" \
    --concurrency-range "$c" --measurement-interval 4000 --max-trials 5 --stability-percentage 25 \
    -f "$OUT/pa_c$c.csv" | grep -E "Throughput|p50 latency|p99 latency" || true
  if [ -f "$OUT/pa_c$c.csv" ]; then
    if [ ! -f "$CSV" ]; then head -1 "$OUT/pa_c$c.csv" > "$CSV"; fi
    tail -n +2 "$OUT/pa_c$c.csv" >> "$CSV"; rm -f "$OUT/pa_c$c.csv"
  fi
done
echo "wrote $CSV"
