"""Backend health for the console: circuit state, rolling latency, error rate and last error.

Circuit breakers live in each worker's memory (each worker has its own, as each has its own
connections). With several workers, each one publishes its breakers' states every second to
a small file beside the shared ring, and the worker serving the page reads them all: a backend
is shown open when any live worker has it open. Latency, error rate and the last error come
from the recent decision summaries, which already cover every worker.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from control import redact

WINDOW_S = 300.0       # rolling window for latency and error rate
PUBLISH_S = 1.0        # shared mode: how often a worker writes its circuits
STALE_S = 10.0         # a worker that has not written for this long is gone
SEVERITY = {"closed": 0, "half_open": 1, "open": 2}
SERVER_ERROR = 500


def circuit_states(breakers: dict, circuit, names: list[str]) -> dict[str, dict]:
    """This process's view: {backend: {state, failures, retry_after_s}} (no breaker yet: closed)."""
    out = {}
    for name in names:
        breaker = breakers.get(name)
        if breaker is None:
            out[name] = {"state": "closed", "failures": 0, "retry_after_s": 0, "last_error": None}
            continue
        state = breaker.state(circuit)
        out[name] = {"state": state, "failures": breaker.failures,
                     "retry_after_s": breaker.retry_after(circuit) if state == "open" else 0,
                     "last_error": redacted(breaker.last_error)}
    return out


class LocalCircuits:
    """One process: its own breakers are the whole picture."""

    def __init__(self, states: Callable[[], dict[str, dict]]):
        self.states = states

    def gather(self) -> list[dict[str, dict]]:
        return [self.states()]

    def changed(self) -> None:
        return None

    async def run(self) -> None:
        return None


class SharedCircuits:
    """Several workers: each writes `circuits-<pid>.json`, any one reads them all."""

    def __init__(self, directory: Path, states: Callable[[], dict[str, dict]]):
        self.directory, self.states = Path(directory), states
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"circuits-{os.getpid()}.json"

    def publish(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"updated": time.time(), "circuits": self.states()}))
        os.replace(temporary, self.path)  # readers see the old file or the new one, never half

    def changed(self) -> None:
        self.publish()

    def gather(self) -> list[dict[str, dict]]:
        self.publish()  # this worker's view as of now
        views, now = [], time.time()
        for path in self.directory.glob("circuits-*.json"):
            try:
                view = json.loads(path.read_text())
            except (OSError, ValueError):  # replaced while read: the next call sees the new one
                continue
            if now - view["updated"] <= STALE_S:
                views.append(view["circuits"])
        return views

    async def run(self) -> None:
        while True:
            self.publish()
            await asyncio.sleep(PUBLISH_S)


def circuits_for_this_process(states: Callable[[], dict[str, dict]]) -> LocalCircuits | SharedCircuits:
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return SharedCircuits(Path(shared) / "console", states) if shared else LocalCircuits(states)


def backend_health(names: list[str], views: list[dict[str, dict]], summaries: list[dict],
                   now: float | None = None) -> list[dict]:
    """One row per backend: the worst circuit among the workers, and the window's numbers."""
    now = time.time() if now is None else now
    recent = [s for s in summaries if now - s["time"] <= WINDOW_S]
    return [{"backend": name, **worst_circuit(name, views), **window(name, recent),
             "last_error": newest(breaker_error(name, views), last_error(name, summaries))} for name in names]


def redacted(error: dict | None) -> dict | None:
    return {**error, "message": redact.redact(error["message"])} if error else None


def breaker_error(name: str, views: list[dict[str, dict]]) -> dict | None:
    """The newest failure any worker's breaker saw for this backend (each attempt, retries too)."""
    return newest(*(v[name].get("last_error") for v in views if name in v))


def newest(*errors: dict | None) -> dict | None:
    return max((e for e in errors if e), key=lambda e: e["time"], default=None)


def worst_circuit(name: str, views: list[dict[str, dict]]) -> dict:
    states = [v[name] for v in views if name in v] or [{"state": "closed", "failures": 0, "retry_after_s": 0}]
    worst = max(states, key=lambda s: SEVERITY.get(s["state"], 0))
    return {"circuit": worst["state"], "failures": worst["failures"], "retry_after_s": worst["retry_after_s"],
            "workers_open": sum(s["state"] == "open" for s in states), "workers": len(views)}


def failed(name: str, summary: dict) -> bool:
    """This backend failed the request: it answered 5xx, or the request failed over from it."""
    return name in summary.get("fallback_from", ()) or (summary["backend"] == name and summary["status"] >= SERVER_ERROR)


def window(name: str, recent: list[dict]) -> dict:
    answered = [s for s in recent if s["backend"] == name and s["status"] < SERVER_ERROR and not s["flags"]["cache"]]
    attempts = len(answered) + sum(failed(name, s) for s in recent)
    latencies = sorted(s["latency_ms"] for s in answered)
    return {"requests": attempts,
            "error_rate": round(sum(failed(name, s) for s in recent) / attempts, 4) if attempts else 0.0,
            "latency_ms_p50": round(statistics.median(latencies), 2) if latencies else None,
            "latency_ms_p99": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2)
            if latencies else None}


def last_error(name: str, summaries: list[dict]) -> dict | None:
    """The newest failure of this backend among the summaries (newest first)."""
    for s in summaries:
        if failed(name, s):
            own = s["backend"] == name
            message = s["error"] if own else f"failed; the request went to {s['backend'] or 'no backend'}"
            return {"time": s["time"], "code": s["error_code"] if own else "failover", "message": message,
                    "request_id": s["request_id"]}
    return None
