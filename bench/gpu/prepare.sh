#!/usr/bin/env bash
# Fill .gpu/ (git-ignored) with what bench/gpu/run.sh needs on the GPU machine, which can
# install nothing: the wheels for its Python 3.12, and real prompts tokenized at seq 32.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p .gpu/wheels
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .gpu/wheels \
  --platform manylinux_2_38_x86_64 --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  nvidia-pytriton==0.7.0 tritonclient==2.73.0 python-rapidjson==1.25 perf-analyzer==2.60.0
"$PY" -m bench.pa_data --seq-len 32 --out .gpu/pa_seq32.json
du -ch .gpu | tail -1
total=$(du -sm .gpu | cut -f1)
[ "$total" -lt 63 ] || echo "warning: .gpu is ${total} MiB; the carry limit is 64 MiB"
