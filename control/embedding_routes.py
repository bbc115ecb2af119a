"""Embedding routes: named routes matched by cosine similarity to example utterances.

Utterance embeddings come from the served model (through Triton, like every signal), once,
and are cached on disk by content hash, so restarts and workers do not recompute them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from control.routing_config import EmbeddingRoute

DEFAULT_CACHE_DIR = Path(".cache") / "semroute" / "routes"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"  # the frozen encoder behind `embedding`: part of the cache key


class EmbeddingRoutes:
    def __init__(self, routes: list[EmbeddingRoute], cache_dir: Path = DEFAULT_CACHE_DIR):
        self.routes = routes
        self.cache_dir = Path(cache_dir)
        self.matrix: np.ndarray | None = None       # [utterances, dim], unit rows
        self.starts: np.ndarray = np.zeros(0, int)  # first row of each route
        self.thresholds = np.array([r.threshold for r in routes], dtype=np.float32)

    @property
    def ready(self) -> bool:
        return not self.routes or self.matrix is not None

    def content_hash(self) -> str:
        payload = json.dumps([EMBEDDING_MODEL, [[r.name, r.utterances] for r in self.routes]])
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    async def prepare(self, classifier) -> None:
        """Embed every utterance (or load them from the disk cache)."""
        if self.ready:
            return
        path = self.cache_dir / f"{self.content_hash()}.npy"
        if path.exists():
            matrix = np.load(path)
        else:
            texts = [u for r in self.routes for u in r.utterances]
            matrix = np.stack([s.embedding for s in await classifier.classify(texts)]).astype(np.float32)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial.npy")
            np.save(partial, matrix)
            partial.replace(path)
        self.starts = np.cumsum([0] + [len(r.utterances) for r in self.routes[:-1]])
        self.matrix = matrix

    def match(self, embedding: np.ndarray) -> dict[str, float]:
        """Routes whose nearest utterance is at least the route's threshold → that similarity."""
        if not self.routes or self.matrix is None:
            return {}
        best = np.maximum.reduceat(self.matrix @ embedding, self.starts)
        return {r.name: round(float(s), 6) for r, s, hit in zip(self.routes, best, best >= self.thresholds) if hit}
