"""Per-backend time series for the console's charts, sampled from the Prometheus metrics.

The metrics are counters (totals since start); the charts want rates. A sampler takes a
snapshot every `step_s` and keeps the last `points` of them; each chart point is the change
between two snapshots, and the page also gets the interval from the last snapshot to now,
so a request shows at once. With several workers the registry aggregates all of them
(multiprocess mode), so every worker's series covers the whole gateway.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from control import metrics

STEP_S = 5.0
POINTS = 720  # one hour at 5 s
SERVER_ERROR = 500


@dataclass
class Snapshot:
    at: float
    requests: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # backend → requests
    errors: dict[str, float] = field(default_factory=lambda: defaultdict(float))    # backend → 5xx answers
    cost: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    saving: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    blocked: float = 0.0
    latency_buckets: dict[float, float] = field(default_factory=dict)  # le → cumulative count (decision latency)


def take_snapshot(registry=None) -> Snapshot:
    snap = Snapshot(at=time.time())
    for family in (registry or metrics.registry()).collect():
        for sample in family.samples:
            read_sample(snap, sample.name, sample.labels, sample.value)
    return snap


def read_sample(snap: Snapshot, name: str, labels: dict, value: float) -> None:
    backend = labels.get("backend", "")
    if name == "semroute_requests_total":
        snap.requests[backend] += value
        if labels.get("status", "").isdigit() and int(labels["status"]) >= SERVER_ERROR:
            snap.errors[backend] += value
    elif name == "semroute_cost_usd_total":
        snap.cost[backend] += value
    elif name == "semroute_saving_usd_total":
        snap.saving[backend] += value
    elif name == "semroute_blocked_total":
        snap.blocked += value
    elif name == "semroute_decision_seconds_bucket":
        le = float(labels["le"])
        snap.latency_buckets[le] = snap.latency_buckets.get(le, 0.0) + value


def point(before: Snapshot, after: Snapshot) -> dict:
    """The change from `before` to `after`, as one chart point."""
    requests = delta(before.requests, after.requests)
    total = sum(requests.values())
    errors = sum(delta(before.errors, after.errors).values())
    blocked = after.blocked - before.blocked
    buckets = {le: after.latency_buckets.get(le, 0.0) - before.latency_buckets.get(le, 0.0)
               for le in after.latency_buckets}
    return {"t": round(after.at, 3), "seconds": round(after.at - before.at, 3), "requests": requests,
            "cost_usd": delta(before.cost, after.cost), "saving_usd": delta(before.saving, after.saving),
            "error_rate": errors / total if total else 0.0, "block_rate": blocked / total if total else 0.0,
            "decision_ms": {"p50": quantile_ms(0.5, buckets), "p99": quantile_ms(0.99, buckets)}}


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def quantile_ms(q: float, cumulative: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile: linear within the bucket that holds the q-th observation."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank, lower, below = q * cumulative[bounds[-1]], 0.0, 0.0
    for le in bounds:
        count = cumulative[le]
        if count >= rank:
            if math.isinf(le):
                return round(lower * 1000, 3)  # beyond the top bucket: its lower edge, as Prometheus does
            share = (rank - below) / (count - below) if count > below else 1.0
            return round((lower + (le - lower) * share) * 1000, 3)
        lower, below = le, count
    return None


class Sampler:
    """Snapshots every `step_s` on the event loop; `series()` is what the charts draw."""

    def __init__(self, step_s: float = STEP_S, points: int = POINTS):
        self.step_s = step_s
        self.snapshots: deque[Snapshot] = deque([take_snapshot()], maxlen=points + 1)
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.step_s)
            self.snapshots.append(take_snapshot())

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def series(self) -> dict:
        snaps = list(self.snapshots) + [take_snapshot()]
        points = [point(a, b) for a, b in zip(snaps, snaps[1:])]
        backends = sorted({b for p in points for b in p["requests"]} | set(snaps[-1].requests))
        return {"step_s": self.step_s, "backends": backends, "points": points,
                "totals": {"requests": dict(snaps[-1].requests), "cost_usd": dict(snaps[-1].cost),
                           "saving_usd": dict(snaps[-1].saving), "blocked": snaps[-1].blocked}}
