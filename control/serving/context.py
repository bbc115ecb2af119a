"""What the chat pipeline's steps need of a request, whatever carried it: aiohttp today,
another wire format or Envoy's ext_proc next. Nothing here knows aiohttp."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from control.auth import Lease


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    lease: Lease                   # the key's standing: allowed backends, token allowance
    session_id: str | None = None  # x-session-id: sticky routing, A/B draws
    debug: bool = False            # x-semroute-debug: 1, the decision explained in a header
    start: float = field(default_factory=time.perf_counter)
