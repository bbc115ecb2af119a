"""Padding cost of length-bucket sets on the bench's real prompts: padded tokens / real tokens.

  python -m bench.padding
"""
from __future__ import annotations

from bench.common import real_prompts
from control.signals import Classifier
from modelspec.buckets import LENGTH_BUCKETS

CANDIDATES = {"powers of two": (16, 32, 64, 128, 256), "shipped (modelspec/buckets.py)": LENGTH_BUCKETS,
              "multiples of 8": tuple(range(8, 257, 8))}


def main() -> None:
    encoder = Classifier("unused:0")
    rows = [len(chunk) for p in real_prompts() for chunk in encoder.encode(p).chunks]
    real = sum(rows)
    print(f"{len(rows)} rows, {real} tokens (with [CLS]/[SEP])")
    for name, buckets in CANDIDATES.items():
        padded = sum(next(b for b in buckets if b >= n) for n in rows)
        print(f"{name:<30} {len(buckets):>2} shapes  padded/real {padded / real:.3f}")


if __name__ == "__main__":
    main()
