"""One request's API as the pipeline sees it: what the router reads, what each backend is sent
(where, and in which format), and how its answer, stream and errors reach the client.

The serving pipeline (parse → admit → route → cache → relay → settle) is the same for every
API; a dialect is what differs. Pure: no aiohttp, no I/O (the Responses store is read and
written by the caller, with `ResponsesDialect.history` and `.turn`).
"""
from __future__ import annotations

import orjson
from pydantic import ValidationError

from control.config import Backend
from control.protocol import ChatCompletionRequest, validation_error
from control.protocols import anthropic, responses
from control.protocols.anthropic_stream import AnthropicStream
from control.protocols.chat_stream import with_stream_usage
from control.protocols.completions import CompletionRequest, EmbeddingRequest
from control.protocols.endpoints import API, passes_through, upstream_path
from control.protocols.passthrough import (AnthropicPassthrough, ChatPassthrough, ChatUsageStripped,
                                           ResponsesPassthrough, usage_of_message, usage_of_response)
from control.protocols.responses_stream import ResponsesStream


def chat_usage_of(data: bytes) -> dict | None:
    try:
        usage = orjson.loads(data).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


class Dialect:
    """Chat completions: sent as it came (asking for stream usage when the client did not)."""
    api: API = "chat"

    def __init__(self, body: dict, routing: ChatCompletionRequest):
        self.body, self.routing = body, routing
        self.stream = bool(body.get("stream"))

    def cache_body(self) -> dict | None:
        """What identifies the question for the cache (None: never cached). Other APIs are
        keyed on their chat form and their name, so one API's answer never meets another's client."""
        return self.body if self.api == "chat" else {**self.body, "semroute_api": self.api}

    def request_for(self, backend: Backend) -> tuple[str, dict]:
        """(path under the backend's URL, body before its model id and reasoning switch)."""
        return upstream_path(backend, self.api), with_stream_usage(self.body)[0]

    def transcoder(self, backend: Backend):
        return ChatPassthrough() if with_stream_usage(self.body)[1] else ChatUsageStripped()

    def answer(self, backend: Backend, data: bytes) -> bytes:
        """A backend's whole 200 answer in the client's format."""
        return data

    def usage_of(self, backend: Backend, data: bytes) -> dict | None:
        """Usage (chat completions' form) of a whole 200 answer as the backend sent it."""
        return chat_usage_of(data)

    def error_answer(self, status: int, data: bytes) -> bytes:
        """A backend's own error answer as the client gets it (chat: as it is)."""
        return data


class CompletionsDialect(Dialect):
    api: API = "completions"


class EmbeddingsDialect(Dialect):
    api: API = "embeddings"

    def cache_body(self) -> dict | None:
        return None  # a similar text's vector is not this text's

    def request_for(self, backend: Backend) -> tuple[str, dict]:
        return upstream_path(backend, self.api), self.body


class MessagesDialect(Dialect):
    """Anthropic Messages: as is to an Anthropic backend, translated for a chat backend."""
    api: API = "messages"

    def __init__(self, body: dict, request: anthropic.MessagesRequest):
        self.request, self.chat_body = request, anthropic.to_chat(request)
        super().__init__(body, ChatCompletionRequest.model_validate(self.chat_body))

    def cache_body(self) -> dict | None:
        return {**self.chat_body, "semroute_api": self.api}

    def request_for(self, backend: Backend) -> tuple[str, dict]:
        return upstream_path(backend, self.api), self.body if passes_through(backend, self.api) else self.chat_body

    def transcoder(self, backend: Backend):
        return AnthropicPassthrough() if passes_through(backend, self.api) else AnthropicStream(self.request.model)

    def answer(self, backend: Backend, data: bytes) -> bytes:
        return data if passes_through(backend, self.api) else orjson.dumps(anthropic.from_chat(orjson.loads(data)))

    def usage_of(self, backend: Backend, data: bytes) -> dict | None:
        return usage_of_message(orjson.loads(data)) if passes_through(backend, self.api) else chat_usage_of(data)

    def error_answer(self, status: int, data: bytes) -> bytes:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            body = data.decode(errors="replace")[:500]
        if isinstance(body, dict) and body.get("type") == "error":  # an Anthropic backend's own
            return data
        return orjson.dumps(anthropic.error_from_openai(status, body))


class ResponsesDialect(Dialect):
    """OpenAI Responses over `history` (the conversation `previous_response_id` names)."""
    api: API = "responses"

    def __init__(self, body: dict, request: responses.ResponsesRequest, history: list[dict]):
        self.request, self.history = request, history
        self.id = responses.response_id()
        self.chat_body = responses.to_chat(request, history)
        super().__init__(body, ChatCompletionRequest.model_validate(self.chat_body))

    def cache_body(self) -> dict | None:
        return {**self.chat_body, "semroute_api": self.api}

    def request_for(self, backend: Backend) -> tuple[str, dict]:
        if not passes_through(backend, self.api):
            return upstream_path(backend, self.api), self.chat_body
        if not self.history:
            return upstream_path(backend, self.api), self.body
        # our previous_response_id means nothing to the backend: it gets the conversation itself
        items = responses.chat_to_items(self.history) + responses.chat_to_items(self.request.input_messages())
        native = {k: v for k, v in self.body.items() if k != "previous_response_id"}
        return upstream_path(backend, self.api), {**native, "input": items}

    def transcoder(self, backend: Backend):
        return ResponsesPassthrough() if passes_through(backend, self.api) else ResponsesStream(self.request, self.id)

    def answer(self, backend: Backend, data: bytes) -> bytes:
        if passes_through(backend, self.api):
            return data
        return orjson.dumps(responses.from_chat(self.request, orjson.loads(data), self.id))

    def usage_of(self, backend: Backend, data: bytes) -> dict | None:
        return usage_of_response(orjson.loads(data)) if passes_through(backend, self.api) else chat_usage_of(data)

    def turn(self, response: dict) -> tuple[str, list[dict]] | None:
        """(its id, the conversation to store) for a finished Response; None when not to store."""
        if not self.request.store or not isinstance(response, dict) or not response.get("id"):
            return None
        answer = responses.assistant_message(response.get("output") or [])
        return response["id"], [*self.history, *self.request.input_messages(), answer]


def dialect_for(api: API, body: dict, parsed, history: list[dict] | None = None) -> Dialect:
    """The dialect of a parsed request (`history`: Responses only). A translated request the
    chat schema refuses (five stop sequences, say) is the client's 400."""
    try:
        return _dialect(api, body, parsed, history)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _dialect(api: API, body: dict, parsed, history: list[dict] | None) -> Dialect:
    if api == "chat":
        return Dialect(body, parsed)
    if api == "messages":
        return MessagesDialect(body, parsed)
    if api == "responses":
        return ResponsesDialect(body, parsed, history or [])
    if api == "completions":
        return CompletionsDialect(body, parsed.routing_chat())
    return EmbeddingsDialect(body, parsed.routing_chat())


PARSERS = {"messages": anthropic.MessagesRequest, "responses": responses.ResponsesRequest,
           "completions": CompletionRequest, "embeddings": EmbeddingRequest, "chat": ChatCompletionRequest}
