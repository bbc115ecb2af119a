"""Soak under faults: many concurrent clients (streaming and not, routed and named) against
`semroute serve` while upstreams fail, Triton is frozen and killed, the config reloads, and
the attacks of issue 12 run in rotation (bench/attacks.py: ReDoS rule, huge prompts, many
content parts, half-sent bodies, departing clients, a backend echoing its key, cross-tenant
cache probes). /healthz is probed every 100 ms throughout.

Every request is classified by its outcome: "ok" (a complete answer: JSON with choices, or a
stream ending in [DONE]), "error" (an explicit OpenAI-shaped error: an error status, or an SSE
error event ending the stream), or "lost" (anything else: a dropped connection, a stream cut
without an error event, an unreadable body). Lost must be zero. The gateway's RSS is sampled
every second; the run fails when it grows past --max-rss-growth-mb after warm-up.

Reported: requests, answers by status (attacks included), lost (must be 0), 5xx without
OpenAI's error shape (must be 0), /healthz p50/p99 before and under attack, RSS before/after,
and per attack what it saw. An attack that still hurts is reported, never fatal to the run.

Bounded twice (a request cap and a deadline), loopback only.

  python -m bench.soak --seconds 120 --clients 48 --output /tmp/soak.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import yaml

from bench.attacks import SLOW_DELAY_S, Attacks, EchoUpstream, attack_config, attack_env, auth, probe_healthz, shaped
from bench.common import REPO, free_port, percentile, real_prompts, semroute_bin
from control.tritonserver import TritonServer
from tests.stub_upstream import Fault, StubUpstream

FALLBACK_PROMPTS = ["Write a Python function that merges two sorted lists.", "What is the capital of Peru?",
                    "Summarize the plot of Hamlet in three sentences.", "Prove that the square root of 2 is irrational."]


def config(stubs: dict[str, StubUpstream], flip: bool = False) -> dict:
    timeouts = {"connect_timeout_s": 1.0, "first_byte_timeout_s": 3.0, "idle_timeout_s": 2.0, "timeout_s": 30.0}
    backends = [{"name": n, "url": s.url, "model": f"{n}-id", **timeouts} for n, s in stubs.items()]
    first, second = ("c", "b") if flip else ("b", "c")  # a reload flips the rule's order
    return {"backends": backends,
            "routing": {"default": "a", "rules": [{"name": "all", "backends": [first, second]}]},
            "resilience": {"retries": 1, "backoff_s": 0.05, "circuit": {"failures": 5, "cooldown_s": 2.0},
                           "classifier": {"timeout_s": 2.0, "circuit": {"failures": 3, "cooldown_s": 1.0}}}}


async def one_request(session: aiohttp.ClientSession, url: str, prompt: str, model: str, stream: bool,
                      statuses: Counter) -> str:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": prompt}]}
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body, headers=auth()) as resp:
            data = await resp.read()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        statuses[0] += 1
        return "lost"
    statuses[resp.status] += 1
    if model == "auto":  # routed without the classifier: what starvation of the classifier looks like
        statuses[f"auto:{resp.headers.get('x-semroute-degraded', 'classified')}"] += 1
    if resp.status >= 500 and not shaped(data):
        statuses["unshaped_5xx"] += 1
    if resp.status != 200:
        try:
            return f"error:{resp.status} {json.loads(data)['error']['code']}"
        except (ValueError, KeyError, TypeError):
            return "lost"
    if not stream or "text/event-stream" not in resp.headers.get("Content-Type", ""):
        try:
            return "ok" if json.loads(data)["choices"] else "lost"
        except (ValueError, KeyError, TypeError):
            return "lost"
    events = [line for line in data.split(b"\n") if line.startswith(b"data: ")]
    if events and events[-1] == b"data: [DONE]":
        return "ok"
    if events and events[-1].startswith(b'data: {"error"'):
        return f"error:event {json.loads(events[-1][6:])['error']['code']}"
    return "lost"


async def client_loop(url: str, prompts: list[str], deadline: float, budget: list[int], counts: Counter, seed: int,
                      statuses: Counter) -> None:
    rng = random.Random(seed)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            model = rng.choice(["auto", "auto", "a", "b", "c"])
            stream = rng.random() < 0.5
            outcome = await one_request(session, url, rng.choice(prompts), model, stream, statuses)
            kind = outcome.split(":")[0]
            counts[kind] += 1
            counts[f"{kind}:{'stream' if stream else 'json'}"] += 1
            if kind == "error":
                counts[outcome] += 1  # error:<status or event> <code>


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def sample_rss(pid: int, deadline: float, samples: list[tuple[float, float]], start: float) -> None:
    while time.monotonic() < deadline:
        samples.append((round(time.monotonic() - start, 1), round(rss_mb(pid), 1)))
        await asyncio.sleep(1.0)


async def inject_faults(stubs, triton: TritonServer, gateway: subprocess.Popen, config_path: Path, deadline: float,
                        log: list[str], start: float, make_config) -> None:
    """A fault every ~2 s, in rotation, each undone before the next."""
    step = 0
    while time.monotonic() < deadline - 3:
        kind = step % 7
        note = ["b: 5xx for 2s", "c: resets and stalls midway", "a: 429 Retry-After 0.2 for 2s",
                "triton frozen 2s", "config reload (SIGHUP, flipped rule)", "b: connection resets for 2s",
                "triton killed and restarted"][kind]
        log.append(f"{time.monotonic() - start:6.1f}s {note}")
        if kind == 0:
            stubs["b"].fault = Fault("status", 503)
        elif kind == 1:
            stubs["c"].inject(*[Fault("reset", after=2), Fault("stall", after=1, delay_s=4.0)] * 4)
        elif kind == 2:
            stubs["a"].fault = Fault("status", 429, retry_after=0.2)
        elif kind == 3:
            triton.process.send_signal(signal.SIGSTOP)
        elif kind == 4:
            config_path.write_text(yaml.safe_dump(make_config(flip=step % 2 == 0)))
            gateway.send_signal(signal.SIGHUP)
        elif kind == 5:
            stubs["b"].fault = Fault("reset")
        else:
            triton.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(triton.process.wait)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(lambda: (triton.start(), triton.wait_ready()))
        await asyncio.sleep(2.0)
        for s in stubs.values():
            s.clear()
        if kind == 3:
            triton.process.send_signal(signal.SIGCONT)
        step += 1
        await asyncio.sleep(1.0)


async def soak(args, url: str, stubs, triton, gateway, config_path: Path, make_config) -> dict:
    prompts = load_prompts()
    start = time.monotonic()
    deadline = start + args.warmup + args.seconds
    counts, faults, samples, budget, statuses, health = Counter(), [], [], [args.max_requests], Counter(), []
    clients = [client_loop(url, prompts, deadline, budget, counts, seed, statuses) for seed in range(args.clients)]
    await asyncio.sleep(0)
    sampler = asyncio.create_task(sample_rss(gateway.pid, deadline, samples, start))
    prober = asyncio.create_task(probe_healthz(url, deadline, health, start))
    attacks = Attacks(url, args.redos_length, args.slow_port, statuses, start)
    chosen = args.attacks.split(",") if args.attacks else [*attacks.names, attacks.last]
    attacks.names = [n for n in attacks.names if n in chosen]
    attacks.last = attacks.last if attacks.last in chosen else None

    async def faults_after_warmup():
        await asyncio.sleep(args.warmup)
        await inject_faults(stubs, triton, gateway, config_path, deadline, faults, start, make_config)

    async with aiohttp.ClientSession() as attack_session:
        await asyncio.gather(*clients, faults_after_warmup(), attack_rotation(attacks, attack_session, args.warmup, deadline))
        await asyncio.gather(sampler, prober)
        attack_report = await attacks.finish(attack_session)
    after_warmup = [mb for t, mb in samples if t >= args.warmup] or [s[1] for s in samples]
    third = max(1, len(after_warmup) // 3)
    return {
        "clients": args.clients, "seconds": round(time.monotonic() - start, 1), "warmup_s": args.warmup,
        "requests": sum(counts[k] for k in ("ok", "error", "lost")), "outcomes": dict(sorted(counts.items())),
        "rss_mb": {"after_warmup": after_warmup[0], "max": max(after_warmup), "end": after_warmup[-1],
                   "first_third_mean": round(sum(after_warmup[:third]) / third, 1),
                   "last_third_mean": round(sum(after_warmup[-third:]) / third, 1)},
        "answers_by_status": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "lost": counts.get("lost", 0),  # the regular clients'; an attack's unanswered requests are its status:0
        "unshaped_5xx": statuses.get("unshaped_5xx", 0),
        "healthz": {"before_attacks": healthz_stats([h for h in health if h[0] < args.warmup]),
                    "under_attack": healthz_stats([h for h in health if h[0] >= args.warmup]),
                    "while_each_attack_ran": {name: healthz_stats([h for h in health if any(
                        n == name and a <= h[0] <= b for n, a, b in attacks.windows)])
                        for name in [*attacks.names, attacks.last] if name}},
        "attacks": attack_report,
        "faults": faults, "stub_requests": {n: len(s.requests) for n, s in {**stubs, "slow": args.slow}.items()},
        "rss_samples": samples,
    }


async def attack_rotation(attacks: Attacks, session: aiohttp.ClientSession, warmup: float, deadline: float,
                          every_s: float = 3.0, grace_s: float = 50.0) -> None:
    """One attack every `every_s` after warm-up, each in its own task (a stuck one does not stop
    the rotation), the last one (ReDoS) once near the end; at the deadline the unfinished ones
    get `grace_s`, then are cancelled."""
    await asyncio.sleep(warmup)
    tasks, step = [], 0
    while attacks.names and time.monotonic() < deadline - 3 * every_s:
        tasks.append(asyncio.create_task(attacks.run(attacks.names[step % len(attacks.names)], session)))
        step += 1
        await asyncio.sleep(every_s)
    if attacks.last:
        tasks.append(asyncio.create_task(attacks.run(attacks.last, session)))
    done, pending = await asyncio.wait(tasks, timeout=grace_s) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    attacks.entry("rotation")["unfinished_at_deadline"] = len(pending)


def healthz_stats(samples: list[tuple[float, float, bool]]) -> dict:
    latencies = [latency * 1000 for _, latency, _ in samples]
    return {"probes": len(samples), "unanswered": sum(not ok for _, _, ok in samples),
            "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(max(latencies, default=float("nan")), 1)}


def load_prompts() -> list[str]:
    try:
        return real_prompts(400, max_chars=4000)
    except OSError:
        return FALLBACK_PROMPTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120, help="soak after warm-up (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=15, help="fault-free warm-up (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=48, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="request cap (default: %(default)s)")
    parser.add_argument("--max-rss-growth-mb", type=float, default=50, help="fail above this growth (default: %(default)s)")
    parser.add_argument("--attacks", default="", help="comma-separated subset of huge,parts,half_bodies,departing,"
                                                          "echo_stream,cache_probe,redos (default: all)")
    parser.add_argument("--redos-length", type=int, default=22,
                        help="'a's before the '!' of the ReDoS prompt; each one doubles a backtracking engine's work, "
                             "the issue's 50000 freezes such a gateway for good (default: %(default)s)")
    parser.add_argument("--model-repository", type=Path, default=REPO / "model_repository")
    parser.add_argument("--output", type=Path, default=None, help="JSON summary (default: stdout only)")
    args = parser.parse_args()

    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the stubs' writes after the gateway hung up
    work = Path(tempfile.mkdtemp(prefix="semroute-soak-"))
    stubs = {n: StubUpstream(n).start() for n in ("a", "b", "c")}
    for s in stubs.values():
        s.stream_delay_s = 0.005
    echo, slow = EchoUpstream().start(), StubUpstream("slow").start()  # outside `stubs`: the fault mix leaves them be
    slow.fault = Fault("delay", delay_s=SLOW_DELAY_S)
    args.slow, args.slow_port = slow, slow.port
    repo = work / "repository"
    repo.mkdir()
    (repo / "router").symlink_to((args.model_repository / "router").resolve())
    ports = [free_port() for _ in range(3)]
    triton = TritonServer(repo, *ports, log_file=work / "triton.log").__enter__()
    config_path, port = work / "config.yaml", free_port()
    full_config = lambda flip=False: attack_config(config(stubs, flip), echo, slow.url)  # noqa: E731
    config_path.write_text(yaml.safe_dump(full_config()))
    gateway = subprocess.Popen([semroute_bin(), "serve", "--config", str(config_path), "--port", str(port),
                                "--triton-url", triton.grpc_url], stdout=open(work / "gateway.log", "w"),
                               stderr=subprocess.STDOUT, env={**os.environ, **attack_env()})
    try:
        wait_up(f"http://127.0.0.1:{port}/healthz", gateway)
        result = asyncio.run(soak(args, f"http://127.0.0.1:{port}", stubs, triton, gateway, config_path, full_config))
    finally:
        stopped = stop_gateway(gateway)
        triton.process.send_signal(signal.SIGCONT)
        triton.stop()
        for s in [*stubs.values(), echo, slow]:
            s.stop()
    result["gateway_stopped_by"] = stopped
    log_lines = (work / "gateway.log").read_text(errors="replace").splitlines()
    result["gateway_log"] = {"path": str(work / "gateway.log"), "lines": len(log_lines),
                             "errors": sum('"level": "ERROR"' in line for line in log_lines)}
    summary = {k: v for k, v in result.items() if k != "rss_samples"}
    print(json.dumps(summary, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2))
    growth = result["rss_mb"]["last_third_mean"] - result["rss_mb"]["first_third_mean"]
    lost, unshaped = result["lost"], result["unshaped_5xx"]
    print(f"requests {result['requests']}, lost {lost}, unshaped 5xx {unshaped}, /healthz p99 under attack "
          f"{result['healthz']['under_attack']['p99_ms']} ms, RSS {result['rss_mb']['after_warmup']} -> "
          f"{result['rss_mb']['end']} MB (growth {growth:+.1f} MB, last third vs first third)")
    return 1 if lost or unshaped or growth > args.max_rss_growth_mb else 0


def stop_gateway(gateway: subprocess.Popen) -> str:
    """SIGTERM, and SIGKILL when it is ignored (a gateway frozen by the ReDoS attack was)."""
    gateway.terminate()
    try:
        gateway.wait(15)
        return "SIGTERM"
    except subprocess.TimeoutExpired:
        gateway.kill()
        gateway.wait(15)
        return "SIGKILL (SIGTERM ignored for 15 s)"


def wait_up(url: str, proc: subprocess.Popen, timeout_s: float = 180) -> None:  # a loaded machine starts slowly
    import urllib.request
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gateway did not come up")


if __name__ == "__main__":
    sys.exit(main())
