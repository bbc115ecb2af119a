"""Tokenising long prompts without holding the GIL or the whole prompt's token lists.

A 2 MB prompt tokenised in one piece held the GIL for 1.5 s (`Tokenizer.encode`; `encode_batch`
releases it) and peaked at ~290 MB, most of it the tokenizer's per-character alignments and
Python lists of all 300k+ ids and offsets, of which the classifier reads four windows. So the
text is tokenised in segments cut at whitespace (BERT's pre-tokenizer splits there anyway, so
the tokens are the same), lengths are counted without conversion, and only the windows asked
for become Python lists.
"""
from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

from tokenizers import Encoding, Tokenizer

SEGMENT_CHARS = 65_536


def segment_starts(text: str, size: int = SEGMENT_CHARS) -> list[int]:
    """Where each segment begins: at most `size` characters each, cut after a space when there
    is one in the segment's second half (else mid-word: a token may differ at that cut)."""
    starts, pos = [0], 0
    while len(text) - pos > size:
        cut = text.rfind(" ", pos + size // 2, pos + size)
        pos = cut + 1 if cut > 0 else pos + size
        starts.append(pos)
    return starts


class SegmentedTokens:
    """The tokens of `text`, segment by segment; `window` gives ids and character offsets."""

    def __init__(self, tokenizer: Tokenizer, text: str):
        self.char_starts = segment_starts(text)
        ends = self.char_starts[1:] + [len(text)]
        # encode_batch releases the GIL while it works: one segment at a time bounds the peak.
        self.segments: list[Encoding] = [tokenizer.encode_batch([text[a:b]], add_special_tokens=False)[0]
                                         for a, b in zip(self.char_starts, ends)]
        self.token_starts = [0, *accumulate(len(s) for s in self.segments)]
        self._lists: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}

    @property
    def total(self) -> int:
        return self.token_starts[-1]

    def window(self, start: int, end: int) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and (start, end) character offsets in the whole text for tokens [start, end)."""
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        k = bisect_right(self.token_starts, start) - 1
        while k < len(self.segments) and self.token_starts[k] < end:
            seg_ids, seg_offsets = self._segment(k)
            a, b = max(start, self.token_starts[k]) - self.token_starts[k], min(end, self.token_starts[k + 1]) - self.token_starts[k]
            ids += seg_ids[a:b]
            offsets += seg_offsets[a:b]
            k += 1
        return ids, offsets

    def _segment(self, k: int) -> tuple[list[int], list[tuple[int, int]]]:
        if k not in self._lists:
            shift = self.char_starts[k]
            enc = self.segments[k]
            self._lists[k] = enc.ids, [(s + shift, e + shift) for s, e in enc.offsets] if shift else enc.offsets
        return self._lists[k]
