"""A quality profile: for a prompt's embedding, each model's expected score.

Estimate = similarity-weighted mean of the k nearest profiled prompts' scores, shrunk toward
the model's overall mean by a prior worth `prior` neighbours:

    est_m = (Σ_i w_i · y_im + prior · mean_m) / (Σ_i w_i + prior),   w_i = exp((s_i − s_max) / temperature)

over the k most similar rows (s_i: cosine similarity) that have an outcome for m. Few or far
neighbours leave the estimate near the mean; many close ones let it follow them. A profile may
carry a learned head instead (`head`: per-model ridge regression on the embedding), used when
it measured better on a validation split of the training half (control/selection/build.py).

On disk (a directory): profile.json (models, prices, parameters, how it was built) and
profile.npz (int8 embeddings with a per-row scale, float16 scores with NaN for "no outcome",
and the head's weights when there is one). Pure numpy: the gateway loads it without torch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
# Feedback (add_feedback): a rating's pull falls to 1/e at cosine 0.9 and to ~1e-4 at 0.1, and
# one rating on the very prompt moves its estimate half of the way to the rating.
FEEDBACK_TEMPERATURE = 0.1
FEEDBACK_PRIOR = 1.0
JSON_FILE, ARRAYS_FILE = "profile.json", "profile.npz"


@dataclass
class Profile:
    name: str
    models: list[str]
    embeddings: np.ndarray                 # (N, d) float32, unit rows
    scores: np.ndarray                     # (N, M) float32, NaN = no outcome
    prices: dict[str, float] = field(default_factory=dict)
    k: int = 50
    prior: float = 5.0
    temperature: float = 0.05
    head: dict | None = None               # {"weights": (d, M), "bias": (M,)} → clip(e·W + b)
    head_share: float = 1.0                # with a head: its share of the estimate (the rest: k-NN)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.means = np.nan_to_num(np.nanmean(self.scores, axis=0), nan=0.0).astype(np.float32)
        self._known = np.isfinite(self.scores)
        self._filled = np.where(self._known, self.scores, 0.0).astype(np.float32)
        dim = self.embeddings.shape[1]
        self._feedback = (np.zeros((0, dim), np.float32), np.zeros(0, int), np.zeros(0, np.float32))

    def add_feedback(self, embeddings: np.ndarray, models: list[str], scores: list[float]) -> None:
        """Ratings learned online: each corrects its model's estimate near its prompt.

        A rating is stronger evidence than an offline neighbour (this backend, nearly this
        prompt), and the offline index (k-NN or head) should stay as built: so each rating keeps
        its residual against the estimate, and a query's estimate moves by the similarity-weighted
        mean residual of the ratings near it (FEEDBACK_TEMPERATURE), shrunk by FEEDBACK_PRIOR."""
        unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(min=1e-8)
        index = np.array([self.models.index(m) for m in models])
        base = self.estimate_batch(unit.astype(np.float32))[np.arange(len(index)), index]
        self._feedback = (np.concatenate([self._feedback[0], unit.astype(np.float32)]),
                          np.concatenate([self._feedback[1], index]),
                          np.concatenate([self._feedback[2], np.asarray(scores, np.float32) - base]))

    def _corrected(self, queries: np.ndarray, estimates: np.ndarray) -> np.ndarray:
        embeddings, index, residuals = self._feedback
        if not len(embeddings):
            return estimates
        weights = np.exp((queries @ embeddings.T - 1.0) / FEEDBACK_TEMPERATURE)          # (Q, F)
        onehot = np.eye(len(self.models), dtype=np.float32)[index]                        # (F, M)
        shift = (weights * residuals) @ onehot / (weights @ onehot + FEEDBACK_PRIOR)
        return np.clip(estimates + shift, 0.0, 1.0)

    @property
    def method(self) -> str:
        if self.head is None:
            return "knn"
        return "head" if self.head_share >= 1.0 else f"blend({self.head_share:g} head)"

    # --- estimates ---------------------------------------------------------------------------

    def estimate(self, embedding: np.ndarray) -> dict[str, float]:
        """Each model's expected score for one prompt (its unit-norm embedding).

        One BLAS thread: for one query a multi-threaded matrix-vector product only adds
        hand-offs, and on a loaded machine costs ~10× (3.3 ms against 0.3 ms measured on 2
        busy cores, bench/RESULTS.md)."""
        with _single_blas_thread():
            query = np.asarray(embedding, dtype=np.float32)[None, :]
            row = self._corrected(query, self.estimate_batch(query))[0]
        return {m: round(float(v), 4) for m, v in zip(self.models, row)}

    def estimate_batch(self, queries: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """(Q, M) expected scores for (Q, d) query embeddings; exclude_self drops each query's
        own row (leave-one-out, for queries that are the profile's own prompts)."""
        head = None if self.head is None else head_estimate(self.head, queries)
        if head is not None and self.head_share >= 1.0:
            return head
        knn = knn_estimate(self.embeddings, self._filled, self._known, self.means, queries,
                           self.k, self.prior, self.temperature, exclude_self)
        return knn if head is None else self.head_share * head + (1 - self.head_share) * knn

    # --- disk --------------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        scale = np.abs(self.embeddings).max(axis=1, keepdims=True).clip(min=1e-8) / 127.0
        arrays = {"embeddings_int8": np.round(self.embeddings / scale).astype(np.int8),
                  "embeddings_scale": scale.astype(np.float32)[:, 0], "scores": self.scores.astype(np.float16)}
        if self.head is not None:
            arrays.update(head_weights=self.head["weights"].astype(np.float32), head_bias=self.head["bias"].astype(np.float32))
        np.savez_compressed(directory / ARRAYS_FILE, **arrays)
        doc = {"format": FORMAT_VERSION, "name": self.name, "models": self.models, "prices": self.prices,
               "k": self.k, "prior": self.prior, "temperature": self.temperature, "method": self.method,
               "head_share": self.head_share,
               "rows": int(len(self.embeddings)), "dim": int(self.embeddings.shape[1]), "meta": self.meta}
        (directory / JSON_FILE).write_text(json.dumps(doc, indent=1) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path) -> "Profile":
        directory = Path(directory)
        if not (directory / JSON_FILE).exists():
            raise FileNotFoundError(f"no quality profile in {directory} (expected {JSON_FILE} and {ARRAYS_FILE}; "
                                    f"build one with `semroute profile build`)")
        doc = json.loads((directory / JSON_FILE).read_text())
        if doc.get("format") != FORMAT_VERSION:
            raise ValueError(f"{directory}: profile format {doc.get('format')!r}, this semroute reads {FORMAT_VERSION}")
        with np.load(directory / ARRAYS_FILE) as z:
            emb = z["embeddings_int8"].astype(np.float32) * z["embeddings_scale"][:, None]
            emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(min=1e-8)
            head = {"weights": z["head_weights"], "bias": z["head_bias"]} if "head_weights" in z else None
            scores = z["scores"].astype(np.float32)
        return cls(doc["name"], doc["models"], emb, scores, doc.get("prices", {}), doc["k"], doc["prior"],
                   doc["temperature"], head, doc.get("head_share", 1.0), doc.get("meta", {}))


_blas = None


def _single_blas_thread():
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


def head_estimate(head: dict, queries: np.ndarray) -> np.ndarray:
    return np.clip(queries @ head["weights"] + head["bias"], 0.0, 1.0)


def knn_estimate(embeddings, filled, known, means, queries, k, prior, temperature, exclude_self=False,
                 block: int = 1024) -> np.ndarray:
    """The profile's estimate for many queries, in blocks (one similarity matrix per block)."""
    out = np.empty((len(queries), filled.shape[1]), dtype=np.float32)
    k = min(k, len(embeddings) - (1 if exclude_self else 0))
    for start in range(0, len(queries), block):
        sims = queries[start:start + block] @ embeddings.T
        if exclude_self:
            rows = np.arange(start, start + len(sims))
            sims[np.arange(len(sims)), rows] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sims, top, axis=1)
        w = np.exp((s - s.max(axis=1, keepdims=True)) / temperature)          # (B, k)
        y, m = filled[top], known[top]                                         # (B, k, M)
        num = np.einsum("bk,bkm->bm", w, y) + prior * means
        den = np.einsum("bk,bkm->bm", w, m.astype(np.float32)) + prior
        out[start:start + len(sims)] = num / den
    return out
