"""Model PII spans: token BIO logits → character spans, by the rule the thresholds were chosen with.

The contract (export/ picks `pii_thresholds` on dev data with this very function):

1. Per token, p = softmax(logits) over PII tags ("O", then B-t, I-t per type t). For each type,
   m_t = p[B-t] + p[I-t]; t* = argmax_t m_t. The token is an entity token of type t* iff
   m_t* >= threshold[t*] (a type missing from the thresholds uses DEFAULT_THRESHOLD).
2. A word piece (a token glued to the previous token, word characters on both sides of the
   seam) always follows its word: it extends the open span when its word's previous token is
   in that span, and is outside any span otherwise.
3. An entity token extends the open span when that span has its type and (it is glued to the
   span, or p[I-t*] >= p[B-t*]); otherwise it starts a new span. Any other token closes the open span.
4. Spans are widened to whole words, then leading and trailing white space and punctuation are
   trimmed, except a "." after a listed abbreviation ("Dr.", "Inc.") and a ")" closing a "("
   inside the span. A span left empty is dropped.
5. Score = mean over the span's tokens (those trimmed in 4 included) of m for the span's type.

"Word characters" are letters, digits and "_" below U+2E80: CJK ideographs and kana are each a
word of their own, so a Chinese sentence is not one long word.
"""
from __future__ import annotations

import numpy as np

from control.pii.spans import PiiSpan

DEFAULT_THRESHOLD = 0.5
ABBREVIATIONS = frozenset({"Dr", "Mr", "Mrs", "Ms", "Prof", "Jr", "Sr", "St", "Inc", "Ltd", "Co", "Corp",
                           "Ave", "Rd", "Blvd", "Mt"})


def word_char(ch: str) -> bool:
    return (ch.isalnum() or ch == "_") and ord(ch) < 0x2E80


def tag_layout(tags: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Entity types in tag order, and the tag indices of their B- and I- tags."""
    types = [t[2:] for t in tags if t.startswith("B-")]
    index = {t: i for i, t in enumerate(tags)}
    return types, np.array([index[f"B-{t}"] for t in types]), np.array([index[f"I-{t}"] for t in types])


def token_scores(logits: np.ndarray, tags: list[str], thresholds: dict[str, float]):
    """Per token: type index t*, m_t*, whether it is an entity token, p[B-t*], p[I-t*]."""
    types, b_idx, i_idx = tag_layout(tags)
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    mass = p[:, b_idx] + p[:, i_idx]
    best = mass.argmax(-1)
    rows = np.arange(len(p))
    m_best = mass[rows, best]
    floor = np.array([thresholds.get(t, DEFAULT_THRESHOLD) for t in types])[best]
    return types, best, mass, m_best >= floor, p[rows, b_idx[best]], p[rows, i_idx[best]]


def decode_spans(text: str, offsets: list[tuple[int, int]], logits: np.ndarray, tags: list[str],
                 thresholds: dict[str, float] | None = None) -> list[PiiSpan]:
    """Model spans of one chunk: `offsets` are its tokens' character offsets ((0, 0): special token)."""
    n = min(len(offsets), len(logits))
    if n == 0 or not any(t.startswith("B-") for t in tags):
        return []
    types, best, mass, entity, p_begin, p_inside = token_scores(np.asarray(logits[:n]), tags, thresholds or {})
    spans: list[PiiSpan] = []
    current: list | None = None  # [type index, start, end, [m per token]]
    previous_end = None
    for i, (start, end) in enumerate(offsets[:n]):
        if start == end:  # special token or padding
            continue
        word_piece = (previous_end == start and start > 0 and word_char(text[start - 1]) and word_char(text[start]))
        previous_end = end
        if word_piece:
            if current is not None:
                current[2] = end
                current[3].append(mass[i, current[0]])
            continue
        if not entity[i]:
            current = _close(text, current, types, spans)
            continue
        t = int(best[i])
        continues = current is not None and current[0] == t and (start == current[2] or p_inside[i] >= p_begin[i])
        if continues:
            current[2] = end
            current[3].append(mass[i, t])
        else:
            _close(text, current, types, spans)
            current = [t, start, end, [mass[i, t]]]
    _close(text, current, types, spans)
    return spans


def _close(text: str, current: list | None, types: list[str], spans: list[PiiSpan]) -> None:
    if current is not None:
        start, end = word_bounds(text, current[1], current[2])
        if start < end:
            spans.append(PiiSpan(types[current[0]], start, end, text[start:end], "model",
                                 round(float(np.mean(current[3])), 6)))
    return None


def word_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen to whole words, then trim white space and punctuation off both ends (rule 4)."""
    while start > 0 and word_char(text[start - 1]) and word_char(text[start]):
        start -= 1
    while end < len(text) and word_char(text[end - 1]) and word_char(text[end]):
        end += 1
    while start < end and not text[start].isalnum():  # white space, punctuation, symbols
        start += 1
    while end > start and not text[end - 1].isalnum() and not _kept_closer(text, start, end):
        end -= 1
    return start, end


def _kept_closer(text: str, start: int, end: int) -> bool:
    last, inside = text[end - 1], text[start:end - 1]
    if last == ")":
        return inside.count("(") > inside.count(")")
    if last == ".":
        words = inside.split()
        return bool(words) and words[-1] in ABBREVIATIONS
    return False
