"""Triton/ONNX Runtime scheduling variants, each on a fresh bundled Triton, same load:
the numbers behind the defaults in export/repository.py.

  python -m bench.triton_tuning                    # every variant, raw + gateway modes at c=64
  python -m bench.triton_tuning --only 0 3 --concurrency 16 64
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import RESULTS_DIR, machine
from bench.triton_repo import Scheduling, start_triton
from bench.triton_sweep import sweep, write_csv

# Each differs from the one before it in one setting, so a row's gain has one cause. The first is
# what was shipped before this tuning (head model.py: every ragged request padded to the longest).
HEAD_MODEL_PY = Path(__file__).parent / "tuning" / "model_before_width_groups.py"
VARIANTS = [
    Scheduling(delay_us=500, instances=1, intra_op_threads=2, spinning=True, model_py=str(HEAD_MODEL_PY)),
    Scheduling(delay_us=500, instances=1, intra_op_threads=2, spinning=True),
    Scheduling(delay_us=500, instances=1, intra_op_threads=2, spinning=False),
    Scheduling(delay_us=0, instances=1, intra_op_threads=2, spinning=False),
    Scheduling(delay_us=2000, instances=1, intra_op_threads=2, spinning=False),
    Scheduling(delay_us=500, preferred=(16, 32, 64), instances=1, intra_op_threads=2, spinning=False),
    Scheduling(delay_us=500, instances=2, intra_op_threads=1, spinning=False),
    Scheduling(delay_us=500, instances=1, intra_op_threads=1, spinning=False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", type=int, help="variant indexes (default: all)")
    parser.add_argument("--mode", nargs="+", default=["raw", "gateway"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[64])
    parser.add_argument("--total", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--csv", type=Path, default=RESULTS_DIR / "triton_tuning.csv")
    args = parser.parse_args()
    print(machine())
    rows = []
    for index in args.only if args.only is not None else range(len(VARIANTS)):
        variant = VARIANTS[index]
        print(f"== variant {index}: {variant.label()}", flush=True)
        server = start_triton(RESULTS_DIR / f"triton-tuning-{index}", variant)
        try:
            time.sleep(1)
            rows += [{"index": index, "loadavg": machine()["loadavg"][0], **row}
                     for row in sweep(server.grpc_url, args.mode, args.concurrency, total=args.total, seconds=args.seconds,
                                      seq_len=32, rows_per_request=1, label=variant.label())]
        finally:
            server.stop()
    write_csv(rows, args.csv)
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
