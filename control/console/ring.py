"""The bounded ring of decision summaries behind the console, and its live feed.

One process: an in-memory deque (`MemoryRing`). Several workers (`semroute serve --workers N`)
are separate processes sharing a port, and the page's requests land on any one of them, so
each worker appends its summaries as JSON lines to its own file in a directory they share
(`SharedRing`, under the Prometheus multiprocess directory, which already exists for exactly
this run and is gone with it). Why files and not the parent: the parent only supervises (it
has no event loop and no HTTP), and files need no new moving part — one writer per file, so
no locks; a reader takes whole lines only. A file is rotated at the ring's capacity (one old
generation kept), so the disk holds at most 2 × capacity summaries per worker.
"""
from __future__ import annotations

import asyncio
import os
from collections import deque
from pathlib import Path

import orjson

CAPACITY = 1000            # summaries kept (per worker in shared mode; the page shows the newest)
POLL_S = 0.25              # shared mode: how often the feed looks for new lines
SUBSCRIBER_BACKLOG = 256   # a feed this far behind drops its oldest rows rather than grow


class MemoryRing:
    """The last `capacity` summaries of this process; `subscribe()` for new ones as they come."""

    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self.items: deque[dict] = deque(maxlen=capacity)
        self.subscribers: set[asyncio.Queue] = set()

    def append(self, summary: dict) -> None:
        self.items.append(summary)
        for queue in self.subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(summary)

    def recent(self, limit: int | None = None) -> list[dict]:
        """Newest first."""
        return list(reversed(self.items))[:limit]

    def get(self, summary_id: str) -> dict | None:
        return next((s for s in reversed(self.items) if s["id"] == summary_id), None)

    def subscribe(self) -> "MemorySubscription":
        return MemorySubscription(self)


class MemorySubscription:
    """New summaries of one MemoryRing since subscribing; a slow reader loses its oldest."""

    def __init__(self, ring: MemoryRing):
        self.ring, self.queue = ring, asyncio.Queue(SUBSCRIBER_BACKLOG)
        ring.subscribers.add(self.queue)

    async def next_batch(self, timeout_s: float) -> list[dict]:
        """What arrived, waiting up to `timeout_s` for the first one ([] when nothing came)."""
        try:
            batch = [await asyncio.wait_for(self.queue.get(), timeout_s)]
        except TimeoutError:
            return []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    def close(self) -> None:
        self.ring.subscribers.discard(self.queue)


class SharedRing:
    """Every worker's summaries, through one JSON-lines file per worker in `directory`."""

    def __init__(self, directory: Path, capacity: int = CAPACITY, worker: int | None = None):
        self.directory, self.capacity = Path(directory), capacity
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"decisions-{worker or os.getpid()}.jsonl"
        self.lines = sum(1 for _ in open(self.path, "rb")) if self.path.exists() else 0
        self.views: dict[Path, FileView] = {}  # parsed so far, per file: a read parses only new lines

    def append(self, summary: dict) -> None:
        if self.lines >= self.capacity:
            os.replace(self.path, self.path.with_suffix(".old"))  # a reader holding it reads it to its end
            self.lines = 0
        line = orjson.dumps(summary) + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)  # one write of a whole line: a reader never sees half of it as a line
        finally:
            os.close(fd)
        self.lines += 1

    def recent(self, limit: int | None = None) -> list[dict]:
        """Newest first, across all workers (ordered by time)."""
        paths = set(self.directory.glob("decisions-*"))
        for path in paths - set(self.views):
            self.views[path] = FileView(path)
        summaries = [s for path in paths for s in self.views[path].refresh()]
        summaries.sort(key=order, reverse=True)
        return summaries[:limit or self.capacity]

    def get(self, summary_id: str) -> dict | None:
        return next((s for s in self.recent(None) if s["id"] == summary_id), None)

    def subscribe(self) -> "SharedSubscription":
        return SharedSubscription(self)

    def _current_files(self) -> list[Path]:
        return sorted(self.directory.glob("decisions-*.jsonl"))


class FileView:
    """One file's summaries, parsed incrementally; a replaced file (rotation) is read anew."""

    def __init__(self, path: Path):
        self.path, self.inode, self.offset, self.items = path, None, 0, []

    def refresh(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                inode = os.fstat(f.fileno()).st_ino
                if inode != self.inode:
                    self.inode, self.offset, self.items = inode, 0, []
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            self.inode, self.offset, self.items = None, 0, []
            return self.items
        complete = data[:data.rfind(b"\n") + 1]  # an unfinished last line is read next time
        self.offset += len(complete)
        self.items.extend(parse_lines(complete))
        return self.items


class SharedSubscription:
    """New lines in any worker's file since subscribing, found by polling every POLL_S."""

    def __init__(self, ring: SharedRing):
        self.ring = ring
        self.tails = {path: Tail(path, at_end=True) for path in ring._current_files()}

    async def next_batch(self, timeout_s: float) -> list[dict]:
        waited = 0.0
        while True:
            for path in self.ring._current_files():
                self.tails.setdefault(path, Tail(path, at_end=False))  # a worker's first file since we began
            batch = [summary for tail in self.tails.values() for summary in tail.read()]
            if batch or waited >= timeout_s:
                return sorted(batch, key=order)
            await asyncio.sleep(POLL_S)
            waited += POLL_S

    def close(self) -> None:
        for tail in self.tails.values():
            tail.close()


class Tail:
    """Follows one worker's file across rotations: the old file is read to its end first."""

    def __init__(self, path: Path, at_end: bool):
        self.path, self.file, self.partial = path, None, b""
        self._open(at_end)

    def _open(self, at_end: bool) -> None:
        try:
            self.file = open(self.path, "rb")
        except FileNotFoundError:
            self.file = None
            return
        if at_end:
            self.file.seek(0, os.SEEK_END)

    def read(self) -> list[dict]:
        if self.file is None:
            self._open(at_end=False)
            if self.file is None:
                return []
        out = self._drain()
        if self._rotated():
            self.file.close()
            self._open(at_end=False)
            out += self._drain() if self.file else []
        return out

    def _drain(self) -> list[dict]:
        data = self.partial + self.file.read()
        complete, _, self.partial = data.rpartition(b"\n")
        return parse_lines(complete + b"\n") if complete else []

    def _rotated(self) -> bool:
        try:
            return os.stat(self.path).st_ino != os.fstat(self.file.fileno()).st_ino
        except FileNotFoundError:
            return False

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def order(summary: dict) -> tuple:
    """By time; within one worker, a tie goes by its sequence number."""
    return summary["time"], summary.get("seq", 0)


def parse_lines(data: bytes) -> list[dict]:
    """Whole JSON lines only: a line still being written (no newline yet) waits for the next read."""
    lines = data.split(b"\n")
    out = []
    for line in lines[:-1]:  # the piece after the last newline is empty or unfinished
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:  # a line cut by a full disk: skipped, the next ones still count
            continue
    return out


def ring_for_this_process(capacity: int = CAPACITY) -> MemoryRing | SharedRing:
    """Shared across workers when they share a metrics directory (`--workers N`), else in memory."""
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return SharedRing(Path(shared) / "console", capacity) if shared else MemoryRing(capacity)
