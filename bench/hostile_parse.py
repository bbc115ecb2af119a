"""What hostile bodies cost the gateway's event loop (issue 12.3): a bounded run against one
`semroute serve` (no Triton: requests name a backend) in front of a stub LLM.

Per attack: how long the gateway takes to refuse (or answer) it, and, while two clients keep
sending it, the /healthz latency (p50/p99) and how many small chat requests a third client gets
through in --seconds. The baseline row is the same third client with no attacker.

  python -m bench.hostile_parse --seconds 5 [--config-extra '{"limits": {"parse_in_thread_bytes": 1e9}}']
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

from bench.common import free_port, percentile, semroute_bin
from tests.stub_upstream import StubUpstream

SMALL = {"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}
ATTACKS = {
    "150k_empty_parts": {"model": "cheap", "messages": [{"role": "user", "content": [{"type": "text"}] * 150_000}]},
    "100k_messages": {"model": "cheap", "messages": [{"role": "user", "content": "hi"}] * 100_000},
    # passes every count: 1M tiny lists in a field passed through (depth walk, forwarded upstream)
    "1M_small_lists": {**SMALL, "pad": [[]] * 1_000_000},
}


def start_gateway(stub: StubUpstream, extra: dict, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump({"backends": [{"name": "cheap", "url": stub.url, "model": "m"}],
                                    "routing": {"default": "cheap"}, **extra}))
    proc = subprocess.Popen([semroute_bin(), "serve", "--config", str(path), "--port", str(port),
                             "--triton-url", f"127.0.0.1:{free_port()}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            requests.get(f"{url}/healthz", timeout=1)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gateway did not start")


def post(session: requests.Session, url: str, data: bytes) -> int:
    return session.post(f"{url}/v1/chat/completions", data=data, headers={"Content-Type": "application/json"},
                        timeout=120).status_code


def under_attack(url: str, data: bytes | None, seconds: float) -> dict:
    stop, statuses = threading.Event(), []

    def attacker() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                statuses.append(post(s, url, data))

    threads = [threading.Thread(target=attacker) for _ in range(2 if data else 0)]
    for t in threads:
        t.start()
    health, served, small = [], 0, json.dumps(SMALL).encode()
    deadline = time.monotonic() + seconds
    with requests.Session() as s:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            s.get(f"{url}/healthz", timeout=120)
            health.append((time.perf_counter() - t0) * 1000)
            served += post(s, url, small) == 200
    stop.set()
    for t in threads:
        t.join()
    return {"healthz_p50_ms": round(percentile(health, 50), 1), "healthz_p99_ms": round(percentile(health, 99), 1),
            "small_served": served, "attack_statuses": sorted(set(statuses))}


def one_request_s(url: str, data: bytes, repeats: int = 3) -> float:
    with requests.Session() as s:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            post(s, url, data)
            times.append(time.perf_counter() - t0)
    return round(sorted(times)[len(times) // 2], 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--config-extra", default="{}", help="JSON merged into the gateway config")
    args = parser.parse_args()
    stub = StubUpstream("cheap").start()
    proc = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            proc, url = start_gateway(stub, json.loads(args.config_extra), Path(tmp))
            rows = {"baseline": under_attack(url, None, args.seconds)}
            for name, body in ATTACKS.items():
                data = json.dumps(body).encode()
                rows[name] = {"body_mb": round(len(data) / 1e6, 2), "one_request_s": one_request_s(url, data),
                              **under_attack(url, data, args.seconds)}
            print(json.dumps(rows, indent=1))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        stub.stop()


if __name__ == "__main__":
    main()
