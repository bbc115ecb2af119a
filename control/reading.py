"""Which chunks of a long prompt the classifier reads: a token budget per request.

One prompt near `limits.max_chars` is ~440k tokens, ~1,700 Triton rows; read whole, it held
the CPU Triton for minutes and every other request timed out (issue 12). So a prompt is read
within two budgets (`resilience.classifier`):

- `read_tokens`: the chunks folded into domain, task, strong_prob and the embedding; past it,
  the head, the tail and chunks evenly spread between them (what a prompt is about shows at
  its start, its end, and throughout).
- `jailbreak_tokens` (larger): the chunks scanned for jailbreak and PII. A prompt up to this
  cap is scanned completely, so a jailbreak cannot hide between the classified chunks; past it
  the scan is spread too, and `signals.read` says how much was scanned.

The classified chunks are always among the scanned ones: a request costs at most
`jailbreak_tokens` of Triton work, whatever its length. Pure: no I/O, no Triton.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPREAD = "head+tail+spread"


@dataclass(frozen=True)
class ReadBudget:
    read_tokens: int
    jailbreak_tokens: int

    def chunks(self, width: int) -> tuple[int, int]:
        """(chunks classified, chunks scanned) for chunks of `width` content tokens."""
        classified = max(1, self.read_tokens // width)
        return classified, max(classified, self.jailbreak_tokens // width)


@dataclass(frozen=True)
class ReadingPlan:
    scanned: list[int]      # chunk indices sent to Triton, in prompt order
    classified: list[bool]  # per scanned chunk: folded into the class probabilities and embedding


def spread(n: int, k: int) -> list[int]:
    """k of n indices: the first, the last and evenly spaced between them (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return np.linspace(0, n - 1, k).round().astype(int).tolist()  # spacing > 1: no repeats


def plan_reading(n_chunks: int, budget: ReadBudget | None, width: int) -> ReadingPlan:
    """The chunks to send and which of them to classify; no budget reads everything (offline use)."""
    if budget is None:
        return ReadingPlan(list(range(n_chunks)), [True] * n_chunks)
    n_classified, n_scanned = budget.chunks(width)
    scanned = spread(n_chunks, n_scanned)
    chosen = {scanned[j] for j in spread(len(scanned), n_classified)}  # head and tail among them
    return ReadingPlan(scanned, [i in chosen for i in scanned])
