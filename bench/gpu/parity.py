"""CPU check of the GPU variant: the served outputs (real weights, fp32) equal ONNX Runtime's on
the exported model for real prompts of different lengths, alone and batched together.

  python bench/gpu/parity.py --url 127.0.0.1:18001
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import real_prompts  # noqa: E402
from export.onnx_export import encode, load_tokenizer, ort_session  # noqa: E402
from modelspec.interface import INPUT_NAMES, MODEL_NAME, OUTPUT_NAMES, PER_TOKEN_OUTPUT  # noqa: E402

TOLERANCE = 2e-4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="127.0.0.1:18001")
    a = parser.parse_args()
    session = ort_session(REPO / "model_repository" / "router" / "1" / "model.onnx")
    prompts = sorted(real_prompts(12), key=len)
    ids, mask = encode(load_tokenizer(), prompts)
    expected = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, (ids, mask))))))
    worst = 0.0
    with grpcclient.InferenceServerClient(a.url) as client:
        for rows in (slice(0, len(prompts)), slice(0, 1), slice(len(prompts) - 1, len(prompts))):
            x, m = ids[rows], mask[rows]
            inputs = [grpcclient.InferInput(name, list(x.shape), "INT64") for name in INPUT_NAMES]
            for tensor, array in zip(inputs, (x, m), strict=True):
                tensor.set_data_from_numpy(np.ascontiguousarray(array))
            result = client.infer(MODEL_NAME, inputs)
            for name in OUTPUT_NAMES:
                got, want = result.as_numpy(name), expected[name][rows]
                if name == PER_TOKEN_OUTPUT:  # compare real tokens only (padding rows differ by design)
                    keep = m.astype(bool)
                    got, want = got[keep], want[keep]
                worst = max(worst, float(np.abs(got - want).max()))
    print(f"GPU variant vs ONNX Runtime: max abs difference {worst:.2e} (tolerance {TOLERANCE})")
    sys.exit(0 if worst <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
