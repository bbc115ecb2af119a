"""The attacks of issue 12 for bench/soak.py: each one measures what the gateway does, never
assumes it is fixed. A branch where an attack still hurts gets a report that says so.

- redos: a config rule `regex: '(a+)+$'` and a prompt of "a" × N + "!" (N small by default:
  with a backtracking engine the cost doubles per "a"; the issue's 50,000 freezes it for good)
- huge: two prompts just under `limits.max_chars` (~420k tokens) at once
- parts: one message of 150,000 `{"type": "text"}` content parts (~4.6 MB)
- half_bodies: connections that send headers and part of a body, then nothing
- departing: non-streamed calls to a backend that hangs, the client leaving after 0.5 s
- echo_stream: a backend streaming back (and putting in a response header) the key it got
- cache_probe: team B asks exactly what team A just asked
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import aiohttp
from aiohttp import web

from tests.stub_upstream import completion
from tests.thread_server import ThreadedApp

ECHO_SECRET = "sk-soak-echo-8f3a2c1d9e7b6a5f4e3d"  # the echo backend's upstream key: must never reach a client
KEYS = {"team-a": "soak-key-team-a-0123456789", "team-b": "soak-key-team-b-9876543210"}
REDOS_RULE = {"name": "redos", "priority": 10, "when": {"regex": "(a+)+$"}, "backends": ["a"]}
HUGE_CHARS = 1_900_000
PARTS = 150_000
HALF_BODIES = 50
DEPARTING = 10
SLOW_DELAY_S = 10.0  # the hanging backend: longer than its first_byte_timeout_s (6 s)
FILLER = ("The committee reviewed the quarterly figures for every region and asked the finance team to explain "
          "why shipping costs rose while volumes stayed flat. ")


class EchoUpstream(ThreadedApp):
    """A careless backend: quotes the Authorization header it got, in the stream and a header."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        said = f"you sent {request.headers.get('Authorization')}"
        headers = {"x-upstream-echo": said}
        if not body.get("stream"):
            return web.json_response(completion(body["model"], said), headers=headers)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
        await resp.prepare(request)
        for piece in (said[:12], said[12:]):  # the key split across chunks, as a real stream would
            chunk = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": body["model"], "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def attack_config(config: dict, echo: EchoUpstream, slow_url: str) -> dict:
    """The soak config plus what the attacks need: two tenants, the cache, the ReDoS rule,
    the echoing and the hanging backends."""
    config["backends"] += [{"name": "echo", "url": echo.url, "model": "echo-id", "api_key_env": "SOAK_ECHO_KEY"},
                           {"name": "slow", "url": slow_url, "model": "slow-id", "first_byte_timeout_s": 6.0,
                            "timeout_s": 30.0}]
    config["routing"]["rules"] = [REDOS_RULE] + config["routing"]["rules"]
    config["cache"] = {"enabled": True, "cache_pii": True}  # PII false positives must not hide a cross-tenant hit
    config["auth"] = {"mode": "on", "keys": [{"name": n, "key_env": f"SOAK_KEY_{n.upper().replace('-', '_')}"}
                                             for n in KEYS]}
    return config


def attack_env() -> dict[str, str]:
    return {"SOAK_ECHO_KEY": ECHO_SECRET, **{f"SOAK_KEY_{n.upper().replace('-', '_')}": k for n, k in KEYS.items()}}


def auth(team: str = "team-a") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[team]}"}


def shaped(data: bytes) -> bool:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    try:
        error = json.loads(data)["error"]
        return isinstance(error, dict) and {"message", "type", "code"} <= set(error)
    except (ValueError, KeyError, TypeError):
        return False


class Attacks:
    """Runs one attack at a time, in rotation; `report` gathers what each one saw."""

    def __init__(self, url: str, redos_length: int, slow_port: int, statuses: Counter, start: float):
        self.url, self.redos_length, self.slow_port = url, redos_length, slow_port
        self.statuses = statuses  # shared with the soak: answers by status, attacks included
        self.report: dict[str, dict] = {}
        self.start = start
        self.windows: list[tuple[str, float, float]] = []  # (attack, from, to) in run seconds: /healthz per attack
        self.background: list[asyncio.Task] = []
        self.names = ["huge", "parts", "half_bodies", "departing", "echo_stream", "cache_probe"]  # in rotation
        self.last = "redos"  # once, at the end: on a backtracking engine it may freeze the gateway for good

    def entry(self, name: str) -> dict:
        return self.report.setdefault(name, Counter())

    async def run(self, name: str, session: aiohttp.ClientSession) -> None:
        begin = time.monotonic() - self.start
        try:
            await getattr(self, name)(session)
        except Exception as exc:  # noqa: BLE001 — an attack that breaks is a finding, not a soak crash
            self.entry(name)[f"attack_error:{type(exc).__name__}"] += 1
        finally:
            self.windows.append((name, begin, time.monotonic() - self.start))

    async def post(self, session, name: str, body: dict | bytes, headers=None, timeout: float = 45) -> tuple[int, bytes, dict]:
        """One request; its status (0: lost) booked in the shared counts and the attack's own."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        start = time.monotonic()
        try:
            async with session.post(f"{self.url}/v1/chat/completions", data=data, timeout=aiohttp.ClientTimeout(total=timeout),
                                    headers={"Content-Type": "application/json", **auth(), **(headers or {})}) as resp:
                raw, status, got = await resp.read(), resp.status, dict(resp.headers)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            raw, status, got = b"", 0, {}
        entry = self.entry(name)
        entry[f"status:{status}"] += 1
        entry["max_s"] = max(entry.get("max_s", 0), round(time.monotonic() - start, 2))
        self.statuses[status] += 1
        if status >= 500 and not shaped(raw):
            self.statuses["unshaped_5xx"] += 1
            entry["unshaped_5xx"] += 1
        return status, raw, got

    async def redos(self, session) -> None:
        prompt = "a" * self.redos_length + "!"
        await self.post(session, "redos", chat(prompt), timeout=30)

    async def huge(self, session) -> None:
        text = (FILLER * (HUGE_CHARS // len(FILLER) + 1))[:HUGE_CHARS]
        results = await asyncio.gather(*(self.post(session, "huge", chat(text)) for _ in range(2)))
        for _, _, headers in results:
            self.entry("huge")[f"degraded:{headers.get('x-semroute-degraded', 'no')}"] += 1

    async def parts(self, session) -> None:
        content = [{"type": "text", "text": "x"}] * PARTS
        await self.post(session, "parts", {"model": "auto", "messages": [{"role": "user", "content": content}]})

    async def half_bodies(self, session) -> None:
        """Held in the background until the run ends: how many the server drops, and when."""
        entry = self.entry("half_bodies")
        for _ in range(HALF_BODIES):
            self.background.append(asyncio.create_task(self._half_body(entry)))
            entry["opened"] += 1

    async def _half_body(self, entry: Counter) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        start = time.monotonic()
        reader, writer = await asyncio.open_connection(host, int(port))
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {KEYS['team-a']}\r\nContent-Length: 100000\r\n\r\n" + '{"model": "auto", ')
        writer.write(head.encode())
        await writer.drain()
        try:
            answer = await reader.read(4096)  # returns when the server answers or closes
            entry["dropped_by_server"] += 1
            entry["answered_408_or_4xx" if answer.startswith(b"HTTP/1.1 4") else "closed_silently"] += 1
            entry["drop_after_s_max"] = max(entry.get("drop_after_s_max", 0), round(time.monotonic() - start, 1))
        except asyncio.CancelledError:
            entry["still_held_at_end"] += 1
            raise
        finally:
            writer.close()

    async def departing(self, session) -> None:
        entry = self.entry("departing")

        async def leave():
            try:
                async with session.post(f"{self.url}/v1/chat/completions", json=chat("hello", model="slow"),
                                        headers=auth(), timeout=aiohttp.ClientTimeout(total=0.5)) as resp:
                    await resp.read()
                entry["answered_before_leaving"] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                entry["left"] += 1

        await asyncio.gather(*(leave() for _ in range(DEPARTING)))
        held = []
        for _ in range(10):  # the gateway may reach the backend late: watch for 5 s
            await asyncio.sleep(0.5)
            held.append(established(self.slow_port))
        entry["upstream_connections_max_after_leaving"] = max(entry.get("upstream_connections_max_after_leaving", 0), max(held))
        entry["upstream_connections_5s_after_leaving"] = max(entry.get("upstream_connections_5s_after_leaving", 0), held[-1])

    async def echo_stream(self, session) -> None:
        entry = self.entry("echo_stream")
        for stream in (True, False):
            _, raw, headers = await self.post(session, "echo_stream", chat("hello", model="echo", stream=stream))
            kind = "stream" if stream else "json"
            entry[f"{kind}:secret_in_body"] += ECHO_SECRET in raw.decode("utf-8", "replace")
            entry[f"{kind}:secret_in_headers"] += any(ECHO_SECRET in v for v in headers.values())
            entry[f"{kind}:upstream_header_relayed"] += "x-upstream-echo" in {k.lower() for k in headers}

    async def cache_probe(self, session) -> None:
        entry = self.entry("cache_probe")
        question = chat(f"Name a river in Europe (probe {time.monotonic_ns()}).")
        status, _, _ = await self.post(session, "cache_probe", question)
        if status != 200:
            entry["inconclusive"] += 1
            return
        _, _, headers = await self.post(session, "cache_probe", question, headers=auth("team-b"))
        entry[f"team_b_cache:{headers.get('x-semroute-cache', 'none')}"] += 1

    async def finish(self, session) -> dict:
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await self._circuit_verdict(session)
        return {name: dict(sorted(counts.items())) for name, counts in self.report.items()}

    async def _circuit_verdict(self, session) -> None:
        """Did the departures count as the hanging backend's failures (circuit opened for everyone)?"""
        try:
            async with session.get(f"{self.url}/metrics", headers=auth(), timeout=aiohttp.ClientTimeout(total=10)) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return
        entry = self.entry("departing")
        for line in text.splitlines():
            if line.startswith('semroute_circuit_opened_total{target="slow"}'):
                entry["slow_circuit_opened"] = float(line.split()[-1])
            elif line.startswith("semroute_upstream_errors_total{") and 'backend="slow"' in line:
                entry["slow_upstream_errors"] = entry.get("slow_upstream_errors", 0) + float(line.split()[-1])


def chat(prompt: str, model: str = "auto", stream: bool = False) -> dict:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": prompt}]}


def established(port: int) -> int:
    """Open TCP connections accepted on `port` on this machine (/proc/net/tcp, state 01)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            count += state == "01" and int(local.rsplit(":", 1)[1], 16) == port
    return count


async def probe_healthz(url: str, deadline: float, samples: list[tuple[float, float, bool]], start: float) -> None:
    """/healthz every 100 ms: (time, latency, answered); an unanswered probe counts its 5 s timeout."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                async with session.get(f"{url}/healthz") as resp:
                    await resp.read()
                    ok = resp.status == 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            samples.append((round(t0 - start, 2), time.monotonic() - t0, ok))
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
