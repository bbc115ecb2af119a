#!/usr/bin/env bash
# One prepared GPU run (about 5 minutes): the raw-torch limit of the router network, then the
# bundled Triton serving its GPU Python-backend variant (fp16, CUDA graphs, DLPack, dynamic
# batching), a perf_analyzer concurrency sweep at seq 32, and the latency at half the peak load.
#
# GPU machine:  carry .gpu/ (see bench/gpu/README.md) and run  bash bench/gpu/run.sh
# CPU test:     DEVICE=cpu bash bench/gpu/run.sh   (same script, torch on CPU in the bundled Triton)
#
# Goal (issue #6): >= 100k seq/s at seq 32 through Triton, p99 <= 10 ms at half that load.
set -uo pipefail
cd "$(dirname "$0")/../.."
DEVICE=${DEVICE:-gpu}
OUT=${OUT:-bench/results/gpu-$DEVICE}
mkdir -p "$OUT"
exec > >(tee "$OUT/log") 2>&1
START=$(date +%s)
elapsed() { echo "[$(( $(date +%s) - START )) s] $*"; }

if [ "$DEVICE" = gpu ]; then
  PY=${PYTHON:-python3}; KIND=KIND_GPU; ROWS=128; SEQ=32; CONC="1 2 4 8 16 32"; SECS=6
  BATCHES="1 256 1024 4096"; INSTANCES=2
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  TMP=$(mktemp -d); SP=$TMP/site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SP" .gpu/wheels/*.whl || exit 1
  export PYTHONPATH=$SP
else
  PY=${PYTHON:-.venv/bin/python}; KIND=KIND_CPU; ROWS=8; SEQ=32; CONC="1 4"; SECS=3
  BATCHES="1 32"; INSTANCES=1
  TMP=$(mktemp -d); SP=$("$PY" -c "import site; print(site.getsitepackages()[0])")
fi
"$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
getconf GNU_LIBC_VERSION

elapsed "raw torch limit (same network, seq $SEQ)"
timeout 100 "$PY" bench/gpu/raw_torch.py --seq-len "$SEQ" --batches $BATCHES --seconds "$SECS" | tee "$OUT/raw_torch.jsonl"

elapsed "Triton with the GPU Python-backend variant"
TS=$SP/pytriton/tritonserver
PYV=$("$PY" -c "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')")
mkdir -p "$TMP/backends" && cp -r "$TS/backends/python" "$TMP/backends/" \
  && cp "$TS/python_backend_stubs/$PYV/triton_python_backend_stub" "$TMP/backends/python/"
PYLIB=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")
"$PY" bench/gpu/make_repo.py --out "$TMP/repo" --kind $KIND --instances $INSTANCES --capture-widths "$SEQ"
# The stub takes sys.path from the first python3 on PATH: the interpreter that has torch.
PYBIN=$(cd "$(dirname "$(command -v "$PY")")" && pwd); [ -x "$PYBIN/python3" ] || ln -sf "$(command -v "$PY")" "$TMP/python3"
HTTP=18000; GRPC=18001; METRICS=18002
PATH="$PYBIN:$TMP:$PATH" LD_LIBRARY_PATH="$SP/nvidia_pytriton.libs:$PYLIB:${LD_LIBRARY_PATH:-}" \
  "$TS/bin/tritonserver" --model-repository="$TMP/repo" --backend-directory="$TMP/backends" \
  --http-address=127.0.0.1 --http-port=$HTTP --grpc-address=127.0.0.1 --grpc-port=$GRPC \
  --metrics-address=127.0.0.1 --metrics-port=$METRICS --log-verbose=0 > "$OUT/triton.log" 2>&1 &
TPID=$!
trap 'kill $TPID 2>/dev/null; wait $TPID 2>/dev/null' EXIT
for i in $(seq 150); do curl -sf "127.0.0.1:$HTTP/v2/models/router/ready" && break; kill -0 $TPID 2>/dev/null || break; sleep 1; done
curl -sf "127.0.0.1:$HTTP/v2/models/router/ready" || { elapsed "Triton not ready"; tail -30 "$OUT/triton.log"; exit 1; }
elapsed "ready after $i s"; grep -E "router \(GPU variant\)" "$OUT/triton.log" | sed 's/.*\] //'
if [ "$DEVICE" = cpu ]; then  # real weights here: the variant must give the ONNX model's outputs
  "$PY" bench/gpu/parity.py --url 127.0.0.1:$GRPC || { elapsed "parity check FAILED"; exit 1; }
fi

DATA=""
[ -f .gpu/pa_seq$SEQ.json ] && DATA=.gpu/pa_seq$SEQ.json
[ -z "$DATA" ] && "$PY" -m bench.pa_data --seq-len "$SEQ" --out "$OUT/pa_seq$SEQ.json" 2>/dev/null && DATA=$OUT/pa_seq$SEQ.json
echo "input data: ${DATA:-random token ids}"

PA=$SP/perf_analyzer/bin/perf_analyzer
GLIBC=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
# perf_analyzer 2.60 is built for glibc >= 2.38 (its --help exit code is no test of that).
if [ -f "$PA" ] && chmod +x "$PA" && [ "$(printf '%s\n2.38\n' "$GLIBC" | sort -V | head -1)" = "2.38" ]; then
  elapsed "perf_analyzer sweep: $ROWS sequences of $SEQ tokens per request"
  # Outputs through system shared memory: at 100k seq/s the per-token pii_logits alone are
  # ~450 MB/s, which gRPC would have to serialise. Plain gRPC if the first point fails with it.
  IO="--shared-memory system --output-shared-memory-size 1048576"
  for C in $CONC; do
    timeout 60 "$PA" -m router -i grpc -u 127.0.0.1:$GRPC -b $ROWS --shape input_ids:$SEQ --shape attention_mask:$SEQ \
      ${DATA:+--input-data "$DATA"} $IO --concurrency-range "$C" --measurement-interval 3000 --max-trials 4 \
      --stability-percentage 25 -f "$OUT/pa_c$C.csv" 2>&1 | grep -E "Throughput|p99 latency|rror" | tail -3
    if [ ! -f "$OUT/pa_c$C.csv" ] && [ -n "$IO" ]; then elapsed "no result with shared memory: plain gRPC from here"; IO=""; fi
  done
  "$PY" - "$OUT" "$ROWS" <<'EOF' > "$OUT/peak.txt"
import csv, glob, sys
rows = [r for f in sorted(glob.glob(sys.argv[1] + "/pa_c*.csv")) for r in csv.DictReader(open(f))]
best = max(rows, key=lambda r: float(r["Inferences/Second"]))
print(float(best["Inferences/Second"]) / int(sys.argv[2]), float(best["Inferences/Second"]))  # requests/s, seq/s
EOF
  read -r PEAK_REQ PEAK_SEQ < "$OUT/peak.txt"
  HALF=$("$PY" -c "print(max(1, round($PEAK_REQ / 2)))")
  elapsed "peak $PEAK_SEQ seq/s; p99 at half the load: $HALF requests/s"
  timeout 60 "$PA" -m router -i grpc -u 127.0.0.1:$GRPC -b $ROWS --shape input_ids:$SEQ --shape attention_mask:$SEQ \
    ${DATA:+--input-data "$DATA"} $IO --request-rate-range "$HALF" --measurement-interval 4000 --max-trials 3 \
    --stability-percentage 25 -f "$OUT/pa_half.csv" 2>&1 | grep -E "Throughput|p99 latency|p50 latency" | tail -3
else
  elapsed "perf_analyzer cannot run here (glibc $GLIBC; it needs >= 2.38): Python gRPC generator"
  "$PY" bench/gpu/grpc_load.py --url 127.0.0.1:$GRPC --rows $ROWS --seq-len $SEQ ${DATA:+--input-data "$DATA"} \
    --concurrency $CONC --seconds "$SECS" --csv "$OUT/grpc_sweep.csv" | tee "$OUT/grpc_sweep.jsonl"
  HALF=$("$PY" -c "import json; r=max((json.loads(l) for l in open('$OUT/grpc_sweep.jsonl')), key=lambda r: r['infer_per_s']); print(max(1, round(r['infer_per_s']/2)))")
  elapsed "p99 at half the peak load: $HALF requests/s"
  "$PY" bench/gpu/grpc_load.py --url 127.0.0.1:$GRPC --rows $ROWS --seq-len $SEQ ${DATA:+--input-data "$DATA"} \
    --rate "$HALF" --seconds "$SECS" --csv "$OUT/grpc_half.csv"
fi
curl -s 127.0.0.1:$METRICS/metrics | grep -E "^nv_inference_(request_success|count|exec_count)" | tee "$OUT/triton_metrics.txt"
[ "$DEVICE" = gpu ] && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
grep -iE "error|traceback" "$OUT/triton.log" | head -5
# The one results file (issue 18): every step's numbers and each goal met / not met / not measured.
"$PY" bench/gpu/summarize.py "$OUT" --device "$DEVICE" --rows "$ROWS"
elapsed "done; results in $OUT/results.json"
