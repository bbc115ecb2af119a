"""Prometheus metrics of the gateway, one `semroute_` scheme, every one defined here.

One place: the dashboard (deploy/) and the docs are checked against this list, and a module
that counts imports `metrics` rather than registering its own.

Where the vLLM Semantic Router (vSR) exports the same quantity, the comment names its metric.
Multi-worker: when PROMETHEUS_MULTIPROC_DIR is set (semroute serve --workers N sets it),
prometheus-client's multiprocess mode aggregates every worker's values on /metrics.
"""
from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest,
                               multiprocess)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# vSR: llm_model_requests_total / llm_request_errors_total
REQUESTS = Counter("semroute_requests_total", "Requests by API (chat, messages, responses, completions, "
                   "embeddings) and outcome", ["backend", "category", "task", "rule", "status", "api"])
# vSR: llm_classifier_latency_seconds
CLASSIFY_SECONDS = Histogram("semroute_classify_seconds", "Tokenize + Triton inference per request",
                             buckets=_LATENCY_BUCKETS)
TRITON_SECONDS = Histogram("semroute_triton_seconds", "Triton gRPC inference call", buckets=_LATENCY_BUCKETS)
# What one classified text costs Triton (issue 12: one prompt once sent 1,733 rows): bounded by
# resilience.classifier.jailbreak_tokens, so the top bucket should stay empty.
CLASSIFY_ROWS = Histogram("semroute_classify_rows", "Rows (chunks) sent to Triton per classified text",
                          buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024))
CLASSIFY_TOKENS = Histogram("semroute_classify_tokens", "Tokens (with [CLS]/[SEP], unpadded) sent to Triton "
                            "per classified text", buckets=(16, 64, 256, 1024, 2048, 4096, 8192, 16384, 65536, 262144))
# vSR: llm_model_routing_latency_seconds
DECISION_SECONDS = Histogram("semroute_decision_seconds", "Request arrival to routing decision",
                             buckets=_LATENCY_BUCKETS)
# vSR: llm_model_completion_latency_seconds
UPSTREAM_SECONDS = Histogram("semroute_upstream_seconds", "Upstream call until the last byte",
                             ["backend"], buckets=_LATENCY_BUCKETS)
# vSR: llm_model_ttft_seconds
TTFT_SECONDS = Histogram("semroute_ttft_seconds", "Streaming: time to the first chunk from the backend",
                         ["backend"], buckets=_LATENCY_BUCKETS)
# vSR: llm_model_tokens_total (prompt/completion)
TOKENS = Counter("semroute_tokens_total", "Tokens reported by the backends' usage", ["backend", "direction"])
# vSR: llm_model_cost_total
COST_USD = Counter("semroute_cost_usd_total", "Estimated spend from usage and configured prices", ["backend"])
SAVING_USD = Counter("semroute_saving_usd_total", "Estimated spend avoided against the dearest backend", ["backend"])
# vSR: llm_request_errors_total{reason="jailbreak_block"|"pii_policy_denied"}
BLOCKED = Counter("semroute_blocked_total", "Requests refused by the safety/PII policy", ["reason"])
# vSR: llm_cache_hits_total / llm_cache_misses_total
CACHE = Counter("semroute_cache_requests_total", "Semantic cache lookups by result", ["result"])
UPSTREAM_ERRORS = Counter("semroute_upstream_errors_total", "Upstream failures by kind", ["backend", "code"])


# Refusals, resilience and operations (defined here with the rest: one scheme, one place)
LIMIT_REJECTIONS = Counter("semroute_limit_rejections_total", "Requests refused by a limit", ["code"])
# Shared state (control/state/link.py). livemin: with --workers N the scrape shows 0 while any
# live worker serves from local state.
STATE_SHARED = Gauge("semroute_state_shared", "1 while state is shared through Redis, 0 while this process serves "
                     "from local state because Redis failed", multiprocess_mode="livemin")
STATE_FALLBACKS = Counter("semroute_state_fallbacks_total", "Switches from shared (Redis) to local state")
BREAKER_OPENED = Counter("semroute_circuit_opened_total", "Circuit breakers opened (backend or classifier)", ["target"])
AUTH_REJECTIONS = Counter("semroute_auth_rejections_total", "Requests refused by auth or rate limits", ["reason"])
RELOADS = Counter("semroute_config_reloads_total", "Config reloads by result", ["result"])
RETRIES = Counter("semroute_upstream_retries_total", "Upstream attempts after a retryable failure", ["backend", "code"])
FAILOVERS = Counter("semroute_failovers_total", "Requests answered by a candidate other than the first", ["backend"])
STREAM_ERRORS = Counter("semroute_stream_errors_total", "Streams ended by an error event after bytes were sent",
                        ["backend", "code"])
CLIENT_GONE = Counter("semroute_client_disconnects_total", "Streams the client left before the end", ["backend"])
DEGRADED = Counter("semroute_degraded_total", "model=auto requests routed without the classifier", ["reason"])


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
