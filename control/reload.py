"""Config hot reload on SIGHUP or when the file changes: validated first, swapped atomically.

A new file is loaded and checked completely (schema, references, the served model's labels
when known, auth keys for the listen address) before anything changes; a bad file keeps the
running config and the log says why. The swap is one assignment on the event loop, and each
request reads the config it started with (a context variable set by `snapshot_middleware`),
so no request sees half of one config and half of another, and none is dropped.

The file is polled (stat every `poll_s`) rather than watched with inotify: polling also sees a
Kubernetes ConfigMap's symlink swap and files on network mounts. A change is loaded once the
file has stayed the same for one poll, so an editor's partial write is not read.

Not reloaded: the listen address, workers, and the HTTP parser's header limits (start-time).
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from tritonclient.utils import InferenceServerException

from control import metrics, redact
from control.config import Config, ConfigError, load_config
from control.router import Router

log = logging.getLogger("semroute.reload")
_SNAPSHOT: contextvars.ContextVar[Config | None] = contextvars.ContextVar("semroute_config", default=None)


def current(live: Config) -> Config:
    """The config of the request being served (its snapshot), else the live one."""
    return _SNAPSHOT.get() or live


def snapshot_middleware(live: Callable[[], Config]):
    @web.middleware
    async def snapshot(request: web.Request, handler):
        token = _SNAPSHOT.set(live())
        try:
            return await handler(request)
        finally:
            _SNAPSHOT.reset(token)
    return snapshot


class ConfigReloader:
    """Owns the reload triggers; `install` validates a loaded config against the running
    gateway and swaps it in, or raises ConfigError/ValueError to refuse it."""

    def __init__(self, path: str | Path, install: Callable[[Config], Awaitable[None]], poll_s: float = 1.0):
        self.path, self.install, self.poll_s = Path(path), install, poll_s
        self.loaded_at = time.time()
        self.last_error: str | None = None
        self._seen = self._stamp()
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()  # a SIGHUP during a file-change reload waits its turn
        self._signalled: set[asyncio.Task] = set()

    def _stamp(self) -> tuple | None:
        try:
            st = os.stat(self.path)  # follows symlinks: a swapped ConfigMap target counts
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    async def reload(self, trigger: str) -> bool:
        async with self._lock:
            self._seen = self._stamp()  # the watcher need not load this same file again
            try:
                await self.install(load_config(self.path))
            except (ConfigError, ValueError) as exc:
                return self._refused(trigger, f"{exc}")
            except Exception as exc:  # noqa: BLE001 - whatever fails, the watcher must live on
                log.exception("config reload (%s) failed unexpectedly", trigger)
                return self._refused(trigger, f"{type(exc).__name__}: {exc}")
            self.loaded_at, self.last_error = time.time(), None
            metrics.RELOADS.labels(result="applied").inc()
            log.info("config reloaded (%s) from %s", trigger, self.path)
            return True

    def _refused(self, trigger: str, why: str) -> bool:
        self.last_error = why
        metrics.RELOADS.labels(result="refused").inc()
        log.error("config reload (%s) refused, keeping the running config: %s", trigger, why)
        return False

    async def _watch(self) -> None:
        pending = None
        while True:
            await asyncio.sleep(self.poll_s)
            stamp = self._stamp()
            if stamp == self._seen or stamp is None:  # unchanged, or mid-replace (file briefly gone)
                pending = None
                continue
            if stamp != pending:  # changed since the last poll: wait until it settles
                pending = stamp
                continue
            self._seen, pending = stamp, None
            await self.reload("file changed")

    async def start(self, app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            log.info("SIGHUP reload unavailable in this process; file changes still reload")
        self._task = asyncio.create_task(self._watch())

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload("SIGHUP"))
        self._signalled.add(task)  # the loop keeps only a weak reference to tasks
        task.add_done_callback(self._signalled.discard)

    async def stop(self, app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
        try:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        except (NotImplementedError, RuntimeError):
            pass

    def status(self) -> dict:
        return {"path": str(self.path), "loaded_at": round(self.loaded_at, 3), "last_error": self.last_error}


async def install_config(gateway, config: Config, host: str) -> None:
    """Check `config` against the running gateway, build and start its Router, then
    `gateway.install(router, config, cache)`: the gateway swaps its own parts at once.

    The new Router is started before the swap (the served model's labels, embedding routes);
    when Triton is unreachable that check waits for the first request.
    """
    problem = config.auth.problem(host)
    if problem:
        raise ConfigError(problem)
    router = Router(config, gateway.classifier, gateway.health)
    router.sessions = gateway.router.sessions  # conversations keep their backends
    try:
        async with asyncio.timeout(max(5.0, config.resilience.classifier.timeout_s)):
            await router.start()
    except (InferenceServerException, OSError, TimeoutError) as exc:
        log.warning("config reload: Triton unavailable (%s); labels are checked when it is back", exc)
    redact.register(config)
    if config.state != gateway.config.state:
        log.warning("config reload: the state: section changed; it takes effect when the gateway restarts")
    cache = gateway.cache if config.cache == gateway.config.cache else gateway.state.cache_for(config.cache)
    gateway.install(router, config, cache)
