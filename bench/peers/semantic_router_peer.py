"""P4's peer: aurelio `semantic-router` with its local HuggingFaceEncoder on the same
all-MiniLM-L6-v2 files semroute serves, the same routes and the same queries. Runs in
.venv-bench (never in .venv).

`.venv-bench/bin/python -m bench.peers.semantic_router_peer --model-dir DIR --routes routes.json`
prints one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter

from bench.common import closed_loop, real_prompts


def build(model_dir: str, routes: dict[str, list[str]]):
    from semantic_router import IndexedRouter, Route
    from semantic_router.encoders import HuggingFaceEncoder

    encoder = HuggingFaceEncoder(name=model_dir, device="cpu")
    return IndexedRouter(encoder=encoder, routes=[Route(name=n, utterances=u) for n, u in routes.items()])


async def run(args) -> dict:
    import semantic_router
    import torch

    router = build(args.model_dir, json.loads(open(args.routes).read()))
    prompts = real_prompts()
    picked: Counter = Counter()

    async def call(i: int) -> None:
        # acall: the encoder has no async path, so the router runs it in a worker thread.
        choice = await router.acall(prompts[i % len(prompts)])
        picked[choice.name] += 1

    result = await closed_loop(f"semantic-router {semantic_router.__version__} (HuggingFaceEncoder)", call,
                               concurrency=args.concurrency, total=args.total, seconds=args.seconds, warmup=8)
    result.extra = {"routes_picked": dict(picked), "torch_threads": torch.get_num_threads()}
    return result.row()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="the local all-MiniLM-L6-v2 folder")
    parser.add_argument("--routes", required=True, help="JSON {route: [utterances]}")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--total", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
