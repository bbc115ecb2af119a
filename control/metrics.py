"""Prometheus metrics of the gateway, one `semroute_` scheme.

Multi-worker: when PROMETHEUS_MULTIPROC_DIR is set (semroute serve --workers N sets it),
prometheus-client's multiprocess mode aggregates every worker's values on /metrics.
"""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter("semroute_requests_total", "Chat completion requests by outcome",
                   ["backend", "category", "task", "status"])
CLASSIFY_SECONDS = Histogram("semroute_classify_seconds", "Tokenize + Triton inference time per request",
                             buckets=_LATENCY_BUCKETS)
DECISION_SECONDS = Histogram("semroute_decision_seconds", "Time from request to routing decision",
                             buckets=_LATENCY_BUCKETS)
UPSTREAM_SECONDS = Histogram("semroute_upstream_seconds", "Upstream call time until the last byte",
                             ["backend"], buckets=_LATENCY_BUCKETS)


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
