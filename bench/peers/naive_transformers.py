"""P1's baseline: what a user would write without Triton. The same network and weights
(export.model: MiniLM + the committed branch and heads) in process with `transformers` and
PyTorch, one forward pass per request, called from an asyncio loop through a thread pool
(as an async web framework runs blocking handlers).

`python -m bench.peers.naive_transformers --concurrency 64 --threads 64` prints one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import torch
from transformers import AutoTokenizer

from bench.common import closed_loop, real_prompts
from modelspec.base_model import base_model_dir
from modelspec.interface import MAX_SEQ_LEN
from export.model import DEFAULT_WEIGHTS, load_router_model


def load():
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_dir()))
    model = load_router_model(DEFAULT_WEIGHTS)

    @torch.inference_mode()
    def classify(text: str) -> dict:
        enc = tokenizer(text, truncation=True, max_length=MAX_SEQ_LEN, return_tensors="pt")
        embedding, domain, task, jailbreak, strong, pii = model(enc["input_ids"], enc["attention_mask"])
        return {"domain": domain[0].tolist(), "task": task[0].tolist(), "jailbreak": float(jailbreak[0, 0]),
                "strong": float(strong[0, 0]), "pii": pii[0].argmax(-1).tolist(), "embedding": embedding[0].tolist()}

    return classify


async def run(args) -> dict:
    classify = load()
    prompts = real_prompts()
    pool = ThreadPoolExecutor(max_workers=args.threads)
    loop = asyncio.get_running_loop()

    async def call(i: int) -> None:
        await loop.run_in_executor(pool, classify, prompts[i % len(prompts)])

    result = await closed_loop(f"naive transformers per request ({args.threads} threads)", call,
                               concurrency=args.concurrency, total=args.total, seconds=args.seconds, warmup=8)
    pool.shutdown()
    result.extra = {"torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    return result.row()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--threads", type=int, default=64, help="thread-pool size running the forward passes")
    parser.add_argument("--total", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
