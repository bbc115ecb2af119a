"""perf_analyzer input data from real prompts: each entry one tokenized first chunk (its own
length; the model's inputs have dims [-1]), as the gateway would send it.

  python -m bench.pa_data --out bench/results/pa_input.json [--count 512] [--seq-len 32]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.common import RESULTS_DIR, real_prompts
from bench.triton_sweep import first_chunks
from modelspec.interface import ATTENTION_MASK, INPUT_IDS


def entries(count: int, seq_len: int | None) -> list[dict]:
    rows = [r[0] for r in first_chunks(real_prompts(count))]
    if seq_len:  # fixed shape: cut or pad every row (synthetic, comparable with other figures)
        rows = [np.pad(r[:seq_len], (0, max(0, seq_len - len(r)))) for r in rows]
    out = []
    for r in rows:
        ids = [int(x) for x in r]
        mask = [1 if x else 0 for x in ids]
        out.append({INPUT_IDS: {"content": ids, "shape": [len(ids)]},
                    ATTENTION_MASK: {"content": mask, "shape": [len(mask)]}})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "pa_input.json")
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument("--seq-len", type=int, default=None, help="cut/pad every row to this length")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": entries(args.count, args.seq_len)}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
