"""The PII span every source reports, and how overlapping spans are resolved."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class PiiSpan:
    type: str
    start: int          # character offsets into the text the classifier read
    end: int
    text: str
    source: Literal["pattern", "model"] = "model"
    score: float = 1.0  # pattern spans are validated: 1.0; model spans: mean probability of their tokens


def overlaps(a: PiiSpan, b: PiiSpan) -> bool:
    return a.start < b.end and b.start < a.end


def non_overlapping(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Leftmost-longest: of overlapping spans the one starting first (then the longer) wins."""
    kept: list[PiiSpan] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept
