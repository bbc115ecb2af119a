"""Which backends can answer which API: a backend's `protocol` (what it speaks) and `serves`
(which endpoints it offers) against the API a request came in on.

chat completions, Messages and Responses are all "chat": an OpenAI-compatible backend serves
the three (Messages and Responses translated), an Anthropic one Messages only, a Responses one
Responses only (each as it is). Completions and embeddings go to OpenAI-compatible backends
that list them.
"""
from __future__ import annotations

from typing import Literal

from control.config import Backend

API = Literal["chat", "messages", "responses", "completions", "embeddings"]
ENDPOINT = {"chat": "chat", "messages": "chat", "responses": "chat", "completions": "completions",
            "embeddings": "embeddings"}
NATIVE = {"messages": "anthropic", "responses": "responses"}  # the protocol that takes the API as it is
PATHS = {"chat": "chat/completions", "messages": "messages", "responses": "responses", "completions": "completions",
         "embeddings": "embeddings"}


def why_not_served(backend: Backend, api: API) -> str | None:
    """Why `backend` cannot answer a request on `api`, or None when it can."""
    endpoint = ENDPOINT[api]
    if endpoint not in backend.serves:
        return f"does not serve {endpoint} (serves: {', '.join(backend.serves)})"
    if backend.protocol not in ("openai", NATIVE.get(api)):
        return f"speaks {backend.protocol}, not {api}"
    return None


def passes_through(backend: Backend, api: API) -> bool:
    """The request goes to this backend as the client sent it (no translation)."""
    return api not in NATIVE or backend.protocol == NATIVE[api]


def upstream_path(backend: Backend, api: API) -> str:
    """Where the request goes on the backend: its own API's path, or chat completions when translated."""
    return PATHS[api] if passes_through(backend, api) else PATHS["chat"]
