"""The background prompts that custom categories are told apart from (control/categories.py).

A category defined by a handful of examples needs counter-examples, or every prompt would be
one of the categories. These are ordinary prompts of every kind, sampled from the permissively
licensed train sets (T0 prompts, Apache-2.0; MMLU, GSM8K, MATH, HumanEval and DC-Router, MIT),
deduplicated against eval/, and shipped as text with their embeddings (float16, computed by the
served model through the bundled Triton, as at serving time), so that a gateway fits its
categories at start-up without embedding 300 prompts first. `python -m export.background`
rewrites both files; the gateway checks the embeddings' content hash and re-embeds when stale.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
from pathlib import Path

import numpy as np

from export.data import Files, dedupe_against_eval, load_math_and_code, load_mmlu, resolve_data_dir
from control.embedding_cache import content_hash
from export.task_data import load_dc_router, load_t0

OUT = Path(__file__).resolve().parents[1] / "control" / "data" / "background_prompts.jsonl"
EMBEDDINGS = OUT.with_name("background_embeddings.npz")
PER_SOURCE = {"t0": 120, "mmlu_test_train_half": 50, "gsm8k": 25, "math_competition": 15, "humaneval": 15,
              "dc_router": 75}
MAX_CHARS = 1000


def sample(data_dir: Path, seed: int = 0) -> tuple[list[dict], dict[str, int]]:
    fs = Files(data_dir)
    examples = load_t0(fs) + load_mmlu(fs) + load_math_and_code(fs) + load_dc_router(fs)
    examples, dropped = dedupe_against_eval([e for e in examples if e.source in PER_SOURCE], data_dir)
    rng, rows = random.Random(seed), []
    for source, n in PER_SOURCE.items():
        pool = sorted({e.text[:MAX_CHARS] for e in examples if e.source == source})
        rows += [{"text": text, "source": source} for text in rng.sample(pool, n)]
    return rows, dropped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    rows, dropped = sample(resolve_data_dir(args.data_dir))
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} background prompts → {OUT} (dropped as equal to eval texts: {dropped})")
    texts = [r["text"] for r in rows]
    np.savez_compressed(EMBEDDINGS, embeddings=embed(texts).astype(np.float16), content_hash=content_hash(texts))
    print(f"their embeddings → {EMBEDDINGS} ({EMBEDDINGS.stat().st_size // 1024} KB)")
    return 0


def embed(texts: list[str]) -> np.ndarray:
    """Through the bundled Triton serving the exported model, as the gateway embeds."""
    from control.signals import Classifier  # composition root: the served model, read as at serving time
    from control.tritonserver import TritonServer

    async def run(url: str) -> np.ndarray:
        classifier = Classifier(url)
        await classifier.start()
        try:
            return np.stack([s.embedding for s in await classifier.classify(texts)])
        finally:
            await classifier.close()

    ports = [_free_port() for _ in range(3)]
    with TritonServer(Path(__file__).resolve().parents[1] / "model_repository", *ports) as server:
        return asyncio.run(run(server.grpc_url))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    raise SystemExit(main())
