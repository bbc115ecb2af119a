"""The Responses API's conversations: the history a request's `previous_response_id` names
(read at parse), and the turn its answer adds (kept at settle), in `control/response_store.py`.

SQLite calls are made on the event loop: one indexed read or one small write per request,
in WAL mode, well under a millisecond on a local disk.
"""
from __future__ import annotations

import orjson

from control.protocol import APIError
from control.protocols.dialects import ResponsesDialect
from control.protocols.responses import ResponsesRequest
from control.response_store import ResponseStore


class ResponsesTurns:
    def __init__(self, gateway):
        self.gateway = gateway
        self._store: ResponseStore | None = None
        self._settings = None

    def store(self) -> ResponseStore:
        """The store for the current config (reopened when a reload changes its file or TTL)."""
        settings = self.gateway.config.responses
        if self._store is None or settings != self._settings:
            if self._store is not None:
                self._store.close()
            self._store, self._settings = ResponseStore(settings.path, settings.ttl_s), settings
        return self._store

    def history(self, request: ResponsesRequest, tenant: str) -> list[dict]:
        if not request.previous_response_id:
            return []
        found = self.store().get(request.previous_response_id, tenant)
        if found is None:  # unknown, expired, or another key's: the same answer, so ids cannot be probed
            raise APIError(404, f"Previous response with id '{request.previous_response_id}' not found.",
                           code="previous_response_not_found", param="previous_response_id")
        return found

    def keep(self, dialect: ResponsesDialect, outcome, tenant: str) -> None:
        """Store the finished Response's turn (unless the config or the request says not to)."""
        if not self.gateway.config.responses.store:
            return
        response = finished_response(outcome)
        turn = dialect.turn(response) if response is not None else None
        if turn is not None:
            self.store().put(turn[0], tenant, turn[1])


def finished_response(outcome) -> dict | None:
    """The Response the client received whole, or None (a failed or cut stream, an error)."""
    if outcome.transcoder is not None:
        final = getattr(outcome.transcoder, "final", None)
        complete = outcome.sent is not None and outcome.sent.done and outcome.error is None
        return final if complete and isinstance(final, dict) and final.get("status") != "failed" else None
    if outcome.body is None or outcome.response is None or outcome.response.status != 200:
        return None
    try:
        return orjson.loads(outcome.body)
    except orjson.JSONDecodeError:
        return None
