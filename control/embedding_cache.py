"""Embeddings of texts from the config (route utterances, category examples), through Triton once.

They are cached on disk by content hash, so restarts, reloads and workers do not recompute them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

DEFAULT_CACHE_DIR = Path(".cache") / "semroute" / "embeddings"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"  # the frozen encoder behind `embedding`: part of the cache key


def content_hash(texts: list[str]) -> str:
    return hashlib.sha256(json.dumps([EMBEDDING_MODEL, texts]).encode()).hexdigest()[:24]


async def embed_cached(classifier, texts: list[str], cache_dir: Path = DEFAULT_CACHE_DIR) -> np.ndarray:
    """[len(texts), dim] unit rows: from the disk cache, else classified now and stored."""
    path = Path(cache_dir) / f"{content_hash(texts)}.npy"
    if path.exists():
        return np.load(path)
    matrix = np.stack([s.embedding for s in await classifier.classify(texts)]).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, matrix)
    partial.replace(path)  # atomic: a worker never reads half a file
    return matrix
