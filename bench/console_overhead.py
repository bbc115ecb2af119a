"""What the console costs the gateway: recording one decision summary per request, and the
reads behind the page's polls, in one process and shared by workers (files).

A realistic summary: the /v1/route explanation of a real decision's shape (14 domains, 10
tasks, one PII span, three candidates). Prints one JSON object: microseconds per summary
recorded (memory ring, shared ring), milliseconds per `recent()` read of a full shared ring
of 4 workers (the first read; the incremental read the page's 2 s health poll makes when
nothing changed, and when a worker's file has just rotated, the one case that parses a whole
generation again), and their ratios.

    python -m bench.console_overhead
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from control.console.ring import CAPACITY, MemoryRing, SharedRing
from control.console.summary import Outcome, summarize

DOMAINS = ["biology", "business", "chemistry", "computer science", "economics", "engineering", "health", "history",
           "law", "math", "other", "philosophy", "physics", "psychology"]
TASKS = ["brainstorming", "classification", "closed_qa", "coding", "creative_writing", "extraction", "math_reasoning",
         "open_qa", "rewrite", "summarization"]
EXPLANATION = {
    "backend": "vllm", "model": "Qwen/Qwen3-8B", "rule": "rule:code", "reason": "rule 'code' matched",
    "candidates": ["vllm", "openai", "ollama"],
    "costs": [{"backend": b, "model": b, "estimated_cost_usd": 0.0025} for b in ("vllm", "openai", "ollama")],
    "saving_usd": 0.0025, "saving_against": "openai", "dropped": {}, "estimated_tokens": [11, 256],
    "reasoning": True, "cache": False, "confidence": 0.99, "details": {},
    "signals": {"domain": {d: 1 / len(DOMAINS) for d in DOMAINS}, "task": {t: 1 / len(TASKS) for t in TASKS},
                "jailbreak_prob": 0.0003, "strong_prob": 0.23, "harmful_prob": 0.002,
                "pii": [{"type": "EMAIL_ADDRESS", "start": 3, "end": 20, "text": "a@example.com", "source": "pattern",
                         "score": 1.0}],
                "read": {"tokens": 11, "chunks": 1, "chunk_tokens": 256, "truncated": False, "strategy": "all",
                         "read_tokens": 11, "jailbreak_tokens": 11, "rows": 1},
                "routes": {}, "categories": {}, "language": {"code": "en", "confidence": 0.73}, "reliable": True,
                "reliable_reason": "language 'en' is one the heads were trained on"}}
N = 5000
WORKERS = 4


def per_summary_us(ring) -> float:
    outcome = Outcome(request_id="r", backend="vllm", latency_ms=120.0, cost_usd=0.001, saving_usd=0.002)
    start = time.perf_counter()
    for _ in range(N):
        ring.append(summarize(EXPLANATION, outcome))
    return (time.perf_counter() - start) / N * 1e6


def main() -> None:
    memory_us = per_summary_us(MemoryRing())
    with tempfile.TemporaryDirectory() as tmp:
        shared_us = per_summary_us(SharedRing(Path(tmp), worker=1))
        for worker in range(2, WORKERS + 1):  # a full ring per worker: 2 generations of CAPACITY
            ring = SharedRing(Path(tmp), worker=worker)
            for _ in range(2 * CAPACITY):
                ring.append(summarize(EXPLANATION, Outcome(backend="vllm")))
        reader = SharedRing(Path(tmp), worker=99)
        start = time.perf_counter()
        reader.recent(None)
        first_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        reader.recent(None)
        unchanged_ms = (time.perf_counter() - start) * 1e3   # the steady poll: nothing new
        ring.append(summarize(EXPLANATION, Outcome(backend="vllm")))  # a full file: this one rotates
        start = time.perf_counter()
        reader.recent(None)
        again_ms = (time.perf_counter() - start) * 1e3
        line_bytes = ring.path.stat().st_size / max(1, ring.lines)
    print(json.dumps({"summary_bytes": round(line_bytes), "record_us": {"memory": round(memory_us, 1),
                                                                       "shared": round(shared_us, 1)},
                      "shared_over_memory": round(shared_us / memory_us, 2),
                      "recent_ms": {"workers": WORKERS, "first_read": round(first_ms, 1),
                                    "unchanged": round(unchanged_ms, 1), "after_a_rotation": round(again_ms, 1)},
                      "first_over_unchanged": round(first_ms / unchanged_ms, 1)}, indent=1))


if __name__ == "__main__":
    main()
