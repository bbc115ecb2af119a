"""Embedding routes: named routes matched by cosine similarity to example utterances.

Utterance embeddings come from the served model (through Triton, like every signal), once
(control/embedding_cache.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from control.config.routing import EmbeddingRoute
from control.embedding_cache import DEFAULT_CACHE_DIR, embed_cached


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

    async def prepare(self, classifier) -> None:
        """Embed every utterance (or load them from the disk cache)."""
        if self.ready:
            return
        matrix = await embed_cached(classifier, [u for r in self.routes for u in r.utterances], self.cache_dir)
        self.starts = np.cumsum([0] + [len(r.utterances) for r in self.routes[:-1]])
        self.matrix = matrix

    def match(self, embedding: np.ndarray) -> dict[str, float]:
        """Routes whose nearest utterance is at least the route's threshold → that similarity."""
        if not self.routes or self.matrix is None:
            return {}
        best = np.maximum.reduceat(self.matrix @ embedding, self.starts)
        return {r.name: round(float(s), 6) for r, s, hit in zip(self.routes, best, best >= self.thresholds) if hit}
