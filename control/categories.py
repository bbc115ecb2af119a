"""Custom categories (`categories:` in the config): a small classifier over the router's embedding.

Trained at start-up from the config's examples in well under a second: a multinomial logistic
regression (scikit-learn) on the unit embeddings, with one more class, "other", learned from
ordinary background prompts of every kind (control/data/background_prompts.jsonl, built by
export/background.py), so that a prompt that is none of the categories is not forced into one.
Each category's probability is the model's own; a rule's `when: {category: [...]}` needs the
most likely one to be wanted and at least `min_confidence` probable, as for task and domain.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from control.config.routing import CustomCategory
from control.embedding_cache import DEFAULT_CACHE_DIR, content_hash, embed_cached

BACKGROUND = Path(__file__).parent / "data" / "background_prompts.jsonl"
BACKGROUND_EMBEDDINGS = BACKGROUND.with_name("background_embeddings.npz")  # shipped: see export/background.py
OTHER = "other"
# Inverse regularisation: unit embeddings differ by cosines of a few tenths, so the default (1.0)
# leaves every probability near the prior; 10 separates held-out paraphrases (bench/RESULTS.md).
STRENGTH = 10.0


def background_prompts() -> list[str]:
    return [json.loads(line)["text"] for line in BACKGROUND.read_text(encoding="utf-8").splitlines() if line]


class CustomCategories:
    def __init__(self, categories: list[CustomCategory], cache_dir: Path = DEFAULT_CACHE_DIR):
        self.categories = categories
        self.cache_dir = Path(cache_dir)
        self.model: LogisticRegression | None = None
        self.names: list[str] = []  # the model's classes, OTHER included

    @property
    def ready(self) -> bool:
        return not self.categories or self.model is not None

    async def prepare(self, classifier) -> None:
        """Embed the examples and the background prompts (disk-cached), then fit."""
        if self.ready:
            return
        examples = [(c.name, text) for c in self.categories for text in c.examples]
        matrix = await embed_cached(classifier, [t for _, t in examples], self.cache_dir)
        background = await self._background(classifier)
        labels = [name for name, _ in examples] + [OTHER] * len(background)
        self.model = fit(np.concatenate([matrix, background]), labels)
        self.names = list(self.model.classes_)

    async def _background(self, classifier) -> np.ndarray:
        """The shipped embeddings when they belong to the shipped prompts, else embedded now (and cached)."""
        texts = background_prompts()
        shipped = np.load(BACKGROUND_EMBEDDINGS) if BACKGROUND_EMBEDDINGS.exists() else None
        if shipped is not None and str(shipped["content_hash"]) == content_hash(texts):
            return shipped["embeddings"].astype(np.float32)
        return await embed_cached(classifier, texts, self.cache_dir)

    def predict(self, embedding: np.ndarray) -> dict[str, float]:
        """Custom category → probability (OTHER left out: it is what the named ones do not take)."""
        if self.model is None:
            return {}
        probs = self.model.predict_proba(embedding.reshape(1, -1).astype(np.float64))[0]
        return {name: round(float(p), 6) for name, p in zip(self.names, probs) if name != OTHER}


def fit(matrix: np.ndarray, labels: list[str]) -> LogisticRegression:
    """Balanced classes: a dozen examples must not be outvoted by 300 background prompts."""
    model = LogisticRegression(C=STRENGTH, class_weight="balanced", max_iter=2000)
    return model.fit(matrix.astype(np.float64), labels)
