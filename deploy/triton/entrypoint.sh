#!/usr/bin/env bash
# Entrypoint of semroute's Triton image: serve one repository variant. For TensorRT, build the
# engine for this GPU at first start and cache it on a volume: an engine only runs on the GPU
# model and TensorRT version that built it, so the image cannot ship one.
#
#   entrypoint.sh [serve] [extra tritonserver flags...]   build the engine if missing, then serve
#   entrypoint.sh build-engine                            build and cache only (a k8s initContainer)
#
# Environment [default]:
#   SEMROUTE_TARGET        tensorrt | onnxruntime [tensorrt]
#   SEMROUTE_HOME          the image's repositories/ and engine/ [/opt/semroute]
#   SEMROUTE_ENGINE_CACHE  engine cache volume [/cache]
#   SEMROUTE_MODELS        writable folder the TensorRT repository is assembled in [/tmp/semroute-models]
#   SEMROUTE_TRACE_RATE    also trace 1 request in N; 0 traces only requests with a traceparent [0]
#   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  OTLP/HTTP traces endpoint [otel-collector:4318/v1/traces]
#   OTEL_SERVICE_NAME      [semroute-triton]
#   TRITONSERVER, TRTEXEC, NVIDIA_SMI  the tools, when not at NVIDIA's usual places
set -euo pipefail
shopt -s inherit_errexit

target="${SEMROUTE_TARGET:-tensorrt}"
home="${SEMROUTE_HOME:-/opt/semroute}"
cache="${SEMROUTE_ENGINE_CACHE:-/cache}"
models="${SEMROUTE_MODELS:-/tmp/semroute-models}"
onnx="$home/repositories/onnxruntime/router/1/model.onnx"
build_flags="$home/engine/trtexec.args"

log() { printf 'semroute-triton: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# First of: the variable's value, the name on PATH, NVIDIA's usual path.
find_tool() {
  local override="$1" name="$2" usual="$3"
  if [ -n "$override" ]; then printf '%s' "$override"; return; fi
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  if [ -x "$usual" ]; then printf '%s' "$usual"; return; fi
  return 1
}

# "NAME, COMPUTE_CAPABILITY" of the visible GPUs, which must all be of one model.
gpu_identity() {
  local smi gpus
  smi="$(find_tool "${NVIDIA_SMI:-}" nvidia-smi /usr/bin/nvidia-smi)" || die "nvidia-smi not found: no GPU runtime in this container"
  gpus="$("$smi" --query-gpu=name,compute_cap --format=csv,noheader)" || die "nvidia-smi failed: no GPU visible to this container"
  [ -n "$gpus" ] || die "no GPU visible to this container"
  if [ "$(sort -u <<<"$gpus" | wc -l)" -ne 1 ]; then
    die "GPUs of different models are visible ($(sort -u <<<"$gpus" | paste -sd';' -)); one engine serves one GPU model"
  fi
  head -n1 <<<"$gpus"
}

# The Triton release and the TensorRT library its backend loads.
tensorrt_identity() {
  local lib
  lib="$(ldconfig -p 2>/dev/null | awk '/libnvinfer\.so\.[0-9]+ /{print $NF; exit}')" || true
  printf '%s %s' "${NVIDIA_TRITON_SERVER_VERSION:-unknown}" "$(if [ -n "$lib" ]; then basename "$(readlink -f "$lib")"; fi)"
}

slug() { tr -c 'A-Za-z0-9.\n' '-' <<<"$1" | tr -s '-'; }

build_engine() {
  local gpu platform key plan timing trtexec
  gpu="$(gpu_identity)"
  platform="$(printf '%s\n%s' "$gpu" "$(tensorrt_identity)" | sha256sum | cut -c1-12)"
  key="$(slug "${gpu%%,*}")-sm${gpu##*, }-$( { printf '%s\n' "$platform"; sha256sum "$onnx" "$build_flags" | cut -d' ' -f1; } | sha256sum | cut -c1-16)"
  key="${key//./}"
  plan="$cache/engines/$key/model.plan"
  timing="$cache/timing-$platform.cache"  # per GPU and TensorRT: reused when only the ONNX changes
  mkdir -p "$(dirname "$plan")"
  exec 9>"$cache/engines/.build.lock"
  flock 9 2>/dev/null || log "warning: cannot lock $cache; another replica may build the same engine"
  if [ -s "$plan" ]; then
    log "using the cached engine $plan ($gpu)"
  else
    trtexec="$(find_tool "${TRTEXEC:-}" trtexec /usr/src/tensorrt/bin/trtexec)" \
      || die "no trtexec in this image: build the engine with \`semroute export --target tensorrt\` on a $gpu with this image's TensorRT and put it at $plan"
    local flags=()
    mapfile -t flags <"$build_flags"
    log "building the TensorRT engine for $gpu into $plan (once per GPU model; minutes)"
    "$trtexec" --onnx="$onnx" --saveEngine="$plan.partial" --timingCacheFile="$timing" "${flags[@]}" >&2 \
      || die "trtexec failed to build the engine; its log is above"
    mv -f "$plan.partial" "$plan"
  fi
  exec 9>&-
  printf '%s' "$plan"
}

# The repository Triton serves: the image's own for ONNX Runtime; for TensorRT a copy with the
# cached engine linked in, since the image's folders stay read-only.
repository() {
  case "$target" in
    onnxruntime) printf '%s' "$home/repositories/onnxruntime" ;;
    tensorrt)
      local plan
      plan="$(build_engine)"
      rm -rf "$models" && mkdir -p "$models"
      cp -R "$home/repositories/tensorrt/." "$models/"
      ln -sfn "$plan" "$models/router/1/model.plan"
      printf '%s' "$models" ;;
    *) die "SEMROUTE_TARGET must be tensorrt or onnxruntime, not '$target'" ;;
  esac
}

serve() {
  local repo server traces
  repo="$(repository)"
  server="$(find_tool "${TRITONSERVER:-}" tritonserver /opt/tritonserver/bin/tritonserver)" || die "tritonserver not found"
  # Triton takes HOST:PORT/PATH (no scheme), as `semroute up` passes it (control/telemetry.py).
  traces="${OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:-otel-collector:4318/v1/traces}"
  traces="${traces#*://}"
  log "serving $repo ($target)"
  exec "$server" --model-repository="$repo" --model-control-mode=none \
    --http-port=8000 --grpc-port=8001 --metrics-port=8002 --allow-metrics=true \
    --trace-config mode=opentelemetry \
    --trace-config level=TIMESTAMPS \
    --trace-config "rate=${SEMROUTE_TRACE_RATE:-0}" \
    --trace-config "opentelemetry,url=$traces" \
    --trace-config "opentelemetry,resource=service.name=${OTEL_SERVICE_NAME:-semroute-triton}" \
    "$@"
}

case "${1:-serve}" in
  build-engine)
    [ "$target" = tensorrt ] || die "build-engine is for SEMROUTE_TARGET=tensorrt"
    build_engine >/dev/null ;;
  serve) shift || true; serve "$@" ;;
  *) serve "$@" ;;
esac
