"""The console's HTTP face: the page and its assets under /ui, its data under /ui/api.

The page is static (one HTML file, one script, one stylesheet shipped in the package); all
data comes from the JSON endpoints and the live feed (Server-Sent Events), which the page
reads with fetch() so it can send `Authorization: Bearer` like any API client.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

from aiohttp import web

from control.auth import lease_of
from control.console.config_view import masked_config
from control.console.health import backend_health, circuit_states, circuits_for_this_process
from control.console.ring import MemoryRing, SharedRing, ring_for_this_process
from control.console.series import Sampler
from control.protocol import APIError

STATIC = resources.files("control.console") / "static"
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}  # served by name, nothing else
HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies from closing an idle feed
MAX_LIST = 1000
CONSOLE = web.AppKey("console", "Console")
# The page runs only its own script and styles; the data it shows can never become code.
PAGE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"}
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class Sources:
    """What the console reads from the running gateway, as callables (it survives reloads)."""
    config: Callable[[], object]
    breakers: Callable[[], dict]
    reload_status: Callable[[], dict | None] = field(default=lambda: None)


class Console:
    def __init__(self, sources: Sources, ring: MemoryRing | SharedRing | None = None):
        self.sources = sources
        self.ring = ring if ring is not None else ring_for_this_process()
        self.circuits = circuits_for_this_process(self._circuit_states)
        self.sampler: Sampler | None = None
        self._tasks: list[asyncio.Task] = []
        self._feeds: set[asyncio.Task] = set()

    def record(self, summary: dict) -> None:
        """One settled request (control/console/summary.py builds it)."""
        self.ring.append(summary)
        self.circuits.changed()  # other workers see a circuit this request opened now, not at the next publish

    def _circuit_states(self) -> dict[str, dict]:
        config = self.sources.config()
        return circuit_states(self.sources.breakers(), config.resilience.circuit, backend_names(config))

    # ---- lifecycle -----------------------------------------------------------------------
    async def start(self, app: web.Application) -> None:
        self.sampler = Sampler()
        self.sampler.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self.circuits.run()))

    async def end_feeds(self, app: web.Application) -> None:
        for task in list(self._feeds):
            task.cancel()

    async def stop(self, app: web.Application) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        for task in self._tasks:
            task.cancel()

    # ---- handlers ------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html", charset="utf-8",
                            headers=PAGE_HEADERS)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise APIError(404, f"no console asset '{name}'", code="not_found")
        return web.Response(body=(STATIC / name).read_bytes(), content_type=ASSETS[name], charset="utf-8",
                            headers=PAGE_HEADERS)

    async def decisions(self, request: web.Request) -> web.Response:
        limit = query_int(request, "limit", 200, 1, MAX_LIST)
        return web.json_response({"data": [without_explanation(s) for s in self.ring.recent(limit)]})

    async def decision(self, request: web.Request) -> web.Response:
        summary = self.ring.get(request.match_info["id"])
        if summary is None:
            raise APIError(404, f"no decision '{request.match_info['id']}' in the console's ring (it keeps the last "
                                f"{self.ring.capacity})", code="not_found", param="id")
        return web.json_response(summary)

    async def feed(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        await response.write(b": console feed\n\n")
        subscription = self.ring.subscribe()
        self._feeds.add(asyncio.current_task())  # ended at shutdown, or the server would wait for it
        try:
            while True:
                batch = await subscription.next_batch(HEARTBEAT_S)
                if not batch:
                    await response.write(b": heartbeat\n\n")
                for summary in batch:
                    data = json.dumps(without_explanation(summary), separators=(",", ":"))
                    await response.write(f"event: decision\nid: {summary['id']}\ndata: {data}\n\n".encode())
        except ConnectionResetError:  # the page went away (a stopping gateway cancels this task instead)
            return response
        finally:
            subscription.close()
            self._feeds.discard(asyncio.current_task())

    async def series(self, request: web.Request) -> web.Response:
        return web.json_response(self.sampler.series())

    async def health(self, request: web.Request) -> web.Response:
        config = self.sources.config()
        views = self.circuits.gather()
        rows = backend_health(backend_names(config), views, self.ring.recent(None))
        return web.json_response({"backends": rows, "workers": len(views)})

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response({"config": masked_config(self.sources.config()), "reload": self.sources.reload_status()})


def add_console(app: web.Application, console: Console) -> None:
    """Mount the console on the gateway's app: /ui, /ui/static/*, /ui/api/*."""
    app[CONSOLE] = console
    app.router.add_get("/ui", console.page)
    app.router.add_get("/ui/static/{name}", console.asset)
    for path, handler in (("decisions", console.decisions), ("decisions/{id}", console.decision),
                          ("feed", console.feed), ("series", console.series), ("health", console.health),
                          ("config", console.config)):
        app.router.add_get(f"/ui/api/{path}", admin_only(handler))
    app.on_startup.append(console.start)
    app.on_shutdown.append(console.end_feeds)
    app.on_cleanup.append(console.stop)


def admin_only(handler):
    """With auth on, the console's data is for keys with `admin: true` (the auth middleware has
    already refused a missing or invalid key); with auth off there is no key and it is open."""
    async def guarded(request: web.Request) -> web.StreamResponse:
        key = lease_of(request).key
        if key is not None and not key.admin:
            raise APIError(403, f"key '{key.name}' may not read the console's data: it needs 'admin: true' in "
                                "auth.keys", type="permission_error", code="admin_required")
        return await handler(request)
    return guarded


def backend_names(config) -> list[str]:
    return [b.name for b in config.backends]


def without_explanation(summary: dict) -> dict:
    """A row of the list: the explanation is fetched when the row is opened."""
    return {k: v for k, v in summary.items() if k != "explanation"}


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise APIError(400, f"'{name}' must be an integer from {low} to {high}, got {raw!r}", code="invalid_request",
                       param=name)
    return value
