"""Tokenisation, PII tag alignment and the frozen-encoder feature cache used by training.

The encoder below the branch is frozen, so its output for a text never changes: it is
computed once per (text, max_len, layer) and cached under .cache/ as fp16, and every epoch
then costs only the branch and the heads.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from modelspec import labels
from modelspec.base_model import tokenizer_file

CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "features"
IGNORE = -100


def load_tokenizer():
    from tokenizers import Tokenizer


    tok = Tokenizer.from_file(str(tokenizer_file()))
    tok.no_padding()
    tok.no_truncation()
    return tok


def head_tail(ids: list[int], max_len: int) -> tuple[list[int], int]:
    """[CLS] body [SEP] cut to max_len by keeping the head and the tail of the body (a long
    prompt's request is often at the end, its role-play set-up at the start).
    Returns the ids and the index where the tail starts (for offset bookkeeping)."""
    if len(ids) <= max_len:
        return ids, len(ids)
    body = ids[1:-1]
    keep = max_len - 2
    head = keep // 2
    return [ids[0]] + body[:head] + body[len(body) - (keep - head):] + [ids[-1]], 1 + head


def bio_for(offsets: list[tuple[int, int]], spans: list[tuple[int, int, str]]) -> list[int]:
    """BIO tag ids per token from char spans; special tokens (0, 0) get IGNORE."""
    tags = []
    prev_span = None
    for (s, e) in offsets:
        if s == e:
            tags.append(IGNORE)
            prev_span = None
            continue
        hit = next((sp for sp in spans if s < sp[1] and e > sp[0]), None)
        if hit is None:
            tags.append(0)
        else:
            i = labels.PII_TYPES.index(hit[2])
            tags.append(1 + 2 * i + (1 if prev_span == hit else 0))
        prev_span = hit
    return tags


def encode(tok, texts: list[str], pii: list | None = None, max_len: int = 128):
    """Token ids (head+tail cut) and, where spans are given, BIO tags aligned to them."""
    encs = tok.encode_batch(texts)
    ids, tags = [], []
    for i, enc in enumerate(encs):
        cut, tail_at = head_tail(enc.ids, max_len)
        ids.append(cut)
        if pii is not None and pii[i] is not None:
            full = bio_for(enc.offsets, pii[i])
            if len(enc.ids) > max_len:
                full = full[:tail_at] + full[len(full) - (max_len - tail_at):]
            tags.append(full)
        else:
            tags.append(None)
    return ids, tags


def pad(batch: list[list[int]], value: int = 0) -> torch.Tensor:
    n = max(len(x) for x in batch)
    return torch.tensor([x + [value] * (n - len(x)) for x in batch], dtype=torch.long)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def lower_layers(encoder, input_ids: torch.Tensor, mask: torch.Tensor, layer: int) -> torch.Tensor:
    """hidden_states[layer] of the encoder, without running the layers above it."""
    h = encoder.embeddings(input_ids=input_ids)
    additive = (1.0 - mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
    for block in list(encoder.encoder.layer)[:layer]:
        h = block(h, additive)
        h = h[0] if isinstance(h, tuple) else h
    return h


@torch.no_grad()
def frozen_states(encoder, ids: list[list[int]], layer: int, batch_size: int = 64,
                  desc: str = "frozen features") -> list[np.ndarray]:
    """Hidden states after `layer` encoder layers (0 = embeddings) for each sequence, fp16,
    unpadded. Sequences are batched by length so padding costs little."""
    from tqdm import tqdm

    order = np.argsort([len(x) for x in ids])
    out: list[np.ndarray | None] = [None] * len(ids)
    for start in tqdm(range(0, len(ids), batch_size), desc=desc, unit="batch"):
        idx = order[start:start + batch_size]
        batch = [ids[i] for i in idx]
        input_ids = pad(batch)
        mask = (input_ids != 0).long()
        hs = lower_layers(encoder, input_ids, mask, layer)
        for j, i in enumerate(idx):
            out[i] = hs[j, :len(ids[i])].to(torch.float16).numpy()
    return out  # type: ignore[return-value]


def cached_states(encoder, texts: list[str], ids: list[list[int]], max_len: int, layer: int) -> list[np.ndarray]:
    """frozen_states memoised on disk per text: shards of .npz under .cache/features/L<layer>_T<max_len>/.
    Only texts missing from every shard are run; they become a new shard (a changed data set
    costs only its new texts)."""
    folder = CACHE_DIR / f"L{layer}_T{max_len}"
    folder.mkdir(parents=True, exist_ok=True)
    keys = [text_key(t) for t in texts]
    want = set(keys)
    found: dict[str, np.ndarray] = {}
    for shard in sorted(folder.glob("shard_*.npz")):
        with np.load(shard) as z:
            hit = [i for i, k in enumerate(z["keys"]) if k in want]
            if hit:
                parts = np.split(z["flat"], np.cumsum(z["lengths"])[:-1])
                found.update((str(z["keys"][i]), parts[i]) for i in hit)
    missing = [i for i, k in enumerate(keys) if k not in found]
    if missing:
        new = frozen_states(encoder, [ids[i] for i in missing], layer)
        uniq = {keys[i]: st for i, st in zip(missing, new)}
        tmp = folder / f"tmp_{len(list(folder.iterdir()))}.npz"
        np.savez(tmp, keys=np.array(list(uniq)), flat=np.concatenate(list(uniq.values())),
                 lengths=np.array([len(v) for v in uniq.values()]))
        tmp.rename(folder / f"shard_{hashlib.sha256(''.join(uniq).encode()).hexdigest()[:12]}.npz")
        found.update(uniq)
    return [found[k] for k in keys]
