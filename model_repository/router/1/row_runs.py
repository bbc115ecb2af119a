"""How the Python backend cuts one dynamic batch into runs of the graph, padding trimmed (issue 18).

Rows arrive padded to the gateway's length buckets (16, 32, 48, ... tokens: 15% padding on real
prompts, bench/padding.py), and every padded position costs as much CPU as a real token. A row's
positions after its last unmasked one change nothing the row's real tokens compute (they are
masked out of every attention and every pooling), so they can be cut off. Rows of different
real lengths then need different runs; each run costs a fixed amount on top of its tokens (it
streams every weight, ~60 MB, from memory: ~2.2 ms against ~0.35 ms per token on one AVX2
core, bench/RESULTS.md), so the plan below picks the grouping with the least total cost.

Committed source beside model.py; like it, it must not import the project.
"""
from __future__ import annotations

import numpy as np

# What one more run costs, in tokens of compute (2.2 ms / 0.35 ms ≈ 6, rounded up: a run also
# pays Python's stacking and splitting).
RUN_OVERHEAD_TOKENS = 8


def real_lengths(mask: np.ndarray) -> np.ndarray:
    """Per row: the position after its last unmasked token (at least 1: a run needs a column)."""
    unmasked = mask != 0
    last = mask.shape[1] - np.argmax(unmasked[:, ::-1], axis=1)
    return np.where(unmasked.any(axis=1), last, 1).astype(np.int64)


def plan_runs(lengths: np.ndarray, overhead_tokens: int = RUN_OVERHEAD_TOKENS) -> list[tuple[int, np.ndarray]]:
    """[(width, row indices)]: every row in exactly one run, each run padded to `width` (its
    longest row), the runs' total cost (rows × width + overhead each) the least possible.

    Rows are sorted by length, so an optimal plan is a cut of that order into contiguous
    runs; dynamic programming over the distinct lengths finds it (≤ 256 of them: the window).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    widths, counts = np.unique(lengths[order], return_counts=True)
    before = np.concatenate(([0], np.cumsum(counts)))  # rows shorter than widths[i]
    best = np.zeros(len(widths) + 1)
    start = np.zeros(len(widths) + 1, dtype=np.int64)
    for end in range(1, len(widths) + 1):
        # One run of the rows with distinct lengths start..end-1, padded to widths[end-1].
        costs = best[:end] + overhead_tokens + (before[end] - before[:end]) * widths[end - 1]
        start[end] = int(np.argmin(costs))
        best[end] = costs[start[end]]
    runs, end = [], len(widths)
    while end > 0:
        runs.append((int(widths[end - 1]), order[before[start[end]]:before[end]]))
        end = int(start[end])
    return runs[::-1]
