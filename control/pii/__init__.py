"""PII spans the policy can route on: validated patterns for structured types, the model for the rest.

Pattern spans (control/pii/patterns.py) own the structured types: a model span of one of those
types is dropped, and so is any model span overlapping a pattern span. Model spans come from
the served model's `pii_logits` by the decode contract in control/pii/decode.py.
"""
from __future__ import annotations

import numpy as np

from control.pii.decode import decode_spans
from control.pii.patterns import PATTERN_TYPES, find_patterns
from control.pii.spans import PiiSpan, overlaps

__all__ = ["PiiSpan", "PATTERN_TYPES", "find_pii", "find_patterns", "merge_spans", "decode_spans"]


def find_pii(text: str, chunk_offsets: list[list[tuple[int, int]]], chunk_logits: list[np.ndarray],
             tags: list[str], thresholds: dict[str, float] | None = None) -> list[PiiSpan]:
    """Every PII span of `text`, in text order: patterns over the whole text, the model per chunk."""
    model = [s for offsets, logits in zip(chunk_offsets, chunk_logits)
             for s in decode_spans(text, offsets, logits, tags, thresholds)]
    return merge_spans(find_patterns(text), model)


def merge_spans(pattern: list[PiiSpan], model: list[PiiSpan]) -> list[PiiSpan]:
    kept = [m for m in model if m.type not in PATTERN_TYPES and not any(overlaps(m, p) for p in pattern)]
    return sorted(pattern + kept, key=lambda s: (s.start, s.end))
