"""Classification load through Triton, in process: the gateway's own path (tokenize →
micro-batch → Triton gRPC → Signals), and embedding-route matching on top of it.

`python -m bench.classify_load --triton-url 127.0.0.1:8101 --concurrency 64` prints one line;
side_by_side.py calls the functions directly.
"""
from __future__ import annotations

import argparse
import asyncio

from bench.common import RESULTS_DIR, LoadResult, closed_loop, real_prompts
from bench.triton_repo import start_triton
from control.batching import BatchingClassifier
from control.signals import Classifier

# Routes for the embedding-matching comparison (P4); the peer gets the very same lists.
ROUTES = {
    "smalltalk": ["hi there", "how are you doing today", "thanks, that's all", "good morning!", "nice to meet you"],
    "coding": ["write a python function", "fix this bug in my code", "how do I reverse a linked list",
               "explain this javascript error", "write a SQL query that joins two tables"],
    "math": ["solve this equation", "what is the derivative of x squared", "prove that the square root of 2 is irrational",
             "compute the integral", "how many ways can I choose 3 items from 10"],
    "travel": ["plan a trip to Japan", "what should I see in Paris", "cheap flights to New York",
               "best time to visit Iceland", "a three-day itinerary for Rome"],
    "writing": ["write a poem about the sea", "draft an email to my boss", "write a short story",
                "rewrite this paragraph to be more formal", "compose a blog post"],
    "health": ["what are the symptoms of flu", "is it safe to take ibuprofen daily", "how much sleep do I need",
               "how to lower blood pressure", "what causes migraines"],
}


async def triton_classify_load(triton_url: str, prompts: list[str], *, concurrency: int, total: int,
                               seconds: float, batching: bool = True, name: str | None = None,
                               on_start=None, cpu_pids: list[int] | None = None) -> LoadResult:
    inner = Classifier(triton_url)
    await inner.start()
    classifier = BatchingClassifier(inner) if batching else inner
    try:
        async def call(i: int) -> None:
            await classifier.classify([prompts[i % len(prompts)]])

        result = await closed_loop(name or f"semroute classify via Triton ({'micro-batched' if batching else 'unbatched'})",
                                   call, concurrency=concurrency, total=total, seconds=seconds, warmup=16,
                                   on_start=on_start, cpu_pids=cpu_pids)
        if batching:
            stats = classifier.batcher.stats
            result.extra = {"batches": stats.batches, "calls": stats.calls, "largest_batch": stats.largest,
                            "mean_batch": round(stats.calls / max(stats.batches, 1), 2)}
        return result
    finally:
        await classifier.close()


async def route_match_load(triton_url: str, prompts: list[str], *, concurrency: int, total: int,
                           seconds: float, cpu_pids: list[int] | None = None) -> LoadResult:
    """Query → embedding (Triton, micro-batched) → best route by cosine similarity, as the gateway does."""
    from control.config.routing import EmbeddingRoute
    from control.embedding_routes import EmbeddingRoutes

    inner = Classifier(triton_url)
    await inner.start()
    classifier = BatchingClassifier(inner)
    routes = EmbeddingRoutes([EmbeddingRoute(name=n, utterances=u, threshold=0.01) for n, u in ROUTES.items()],
                             cache_dir=RESULTS_DIR / "route-cache")
    await routes.prepare(classifier)
    matched: list = []
    try:
        async def call(i: int) -> None:
            (signals,) = await classifier.classify([prompts[i % len(prompts)]])
            found = routes.match(signals.embedding)
            matched.append(max(found, key=found.get) if found else None)

        result = await closed_loop("semroute embedding routes via Triton", call, concurrency=concurrency,
                                   total=total, seconds=seconds, warmup=16, cpu_pids=cpu_pids)
        result.extra = {"matched": sum(m is not None for m in matched)}
        return result
    finally:
        await classifier.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triton-url", help="a running Triton (default: start the bundled one, shipped settings)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--total", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--unbatched", action="store_true", help="one Triton request per call")
    parser.add_argument("--routes", action="store_true", help="embedding-route matching instead of classify")
    args = parser.parse_args()
    prompts = real_prompts()
    kw = dict(concurrency=args.concurrency, total=args.total, seconds=args.seconds)
    server = None if args.triton_url else start_triton(RESULTS_DIR / "triton-classify-load")
    url = args.triton_url or server.grpc_url
    try:
        if args.routes:
            result = asyncio.run(route_match_load(url, prompts, **kw))
        else:
            result = asyncio.run(triton_classify_load(url, prompts, batching=not args.unbatched, **kw))
    finally:
        if server is not None:
            server.stop()
    print(result.line(), result.extra)


if __name__ == "__main__":
    main()
