"""Padded row widths (tokens), up to the model's window.

The gateway pads every row to one of these, so Triton sees few shapes to batch together; the
Triton model groups a dynamic batch by the same widths (it reads them from config.pbtxt,
where the export writes them), so a short row never pays for a long one's padding. Eight
widths cost 15% padding on the bench's real prompts (powers of two alone: 26%,
bench/RESULTS.md).
"""
from modelspec.interface import MAX_SEQ_LEN

LENGTH_BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256)
assert LENGTH_BUCKETS[-1] == MAX_SEQ_LEN, "the widest bucket is the window: a full chunk needs no other width"


def bucket_width(length: int, buckets: tuple[int, ...] = LENGTH_BUCKETS) -> int:
    """The padded width of a row: the smallest bucket that holds it (a longer row keeps its length)."""
    return next((b for b in buckets if b >= length), length)
