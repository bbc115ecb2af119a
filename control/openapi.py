"""The gateway's OpenAPI 3.1 description, served at /openapi.json.

Request bodies come from the pydantic models the gateway validates with (control/protocol.py),
so the spec cannot drift from the code; responses the gateway relays from a backend are
described loosely, as they are the backend's. Built per request from the live config: the
`model` field lists the configured backends as examples, and the bearer scheme is required
only when auth is on.
"""
from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from control.feedback.protocol import FeedbackRequest
from control.protocol import AUTO_MODEL, ChatCompletionRequest, RouteRequest
from control.protocols.anthropic import MessagesRequest
from control.protocols.completions import CompletionRequest, EmbeddingRequest
from control.protocols.responses import ResponsesRequest


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """OpenAI's error shape; every error of the gateway has it."""
    error: ErrorDetail


class ChatCompletion(BaseModel):
    """The backend's answer, relayed unchanged (OpenAI chat.completion)."""
    model_config = ConfigDict(extra="allow")
    choices: list[dict]


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    """Anthropic's error shape: every error of /v1/messages has it."""
    type: Literal["error"]
    error: AnthropicErrorDetail


class AnthropicMessage(BaseModel):
    """An Anthropic message (translated from a chat backend's answer, or an Anthropic backend's own)."""
    model_config = ConfigDict(extra="allow")
    type: Literal["message"]
    content: list[dict]


class ResponseObject(BaseModel):
    """An OpenAI Response (translated from a chat backend's answer, or a Responses backend's own)."""
    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["response"]
    output: list[dict]


class Completion(BaseModel):
    """The backend's answer, relayed unchanged (OpenAI text_completion)."""
    model_config = ConfigDict(extra="allow")
    choices: list[dict]


class EmbeddingList(BaseModel):
    """The backend's answer, relayed unchanged (OpenAI embeddings list)."""
    model_config = ConfigDict(extra="allow")
    data: list[dict]


class Model(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class RouteDecision(BaseModel):
    """The decision alone (see README: `POST /v1/route`)."""
    model_config = ConfigDict(extra="allow")
    backend: str
    model: str
    rule: str
    reason: str
    candidates: list[str]
    signals: dict | None
    timings_ms: dict[str, float]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ready", "degraded"]
    classifier: bool
    degraded: str | None = Field(description="why routing goes without the classifier, when it does")


class FeedbackRating(BaseModel):
    request_id: str
    backend: str
    score: float


class FeedbackResult(BaseModel):
    """The ratings stored, and the quality profiles that learned from them (see README: feedback)."""
    object: Literal["feedback"]
    ratings: list[FeedbackRating]
    learned: list[str]


# One server-sent event: `data` is a chat.completion.chunk as JSON, `[DONE]`, or an error object.
SSE_EVENT = {"type": "object", "required": ["data"],
             "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}}}
MODELS = (ChatCompletionRequest, RouteRequest, ErrorResponse, ChatCompletion, ModelList, RouteDecision, Health, Readiness,
          MessagesRequest, ResponsesRequest, CompletionRequest, EmbeddingRequest, AnthropicError, AnthropicMessage,
          ResponseObject, Completion, EmbeddingList, Model, FeedbackRequest, FeedbackResult)
REQUESTS = ("ChatCompletionRequest", "MessagesRequest", "ResponsesRequest", "CompletionRequest", "EmbeddingRequest")
RELAYED = ["400", "401", "403", "404", "413", "415", "429", "431", "502", "503", "504"]
ERRORS = {
    "400": "malformed JSON, a bad field, too many messages or characters, JSON nested too deep",
    "401": "no API key, or not a valid one (auth on)",
    "403": "the key may not use this backend; the prompt was blocked (jailbreak_detected, harmful_request, pii_not_allowed)",
    "404": "unknown model",
    "413": "body larger than limits.max_body_bytes",
    "415": "Content-Type is not application/json (UTF-8)",
    "429": "the key's request or token rate limit (Retry-After says when), or every backend's own 429",
    "431": "headers larger than limits.max_header_bytes",
    "502": "every candidate backend failed (unreachable, 5xx, reset)",
    "503": "every candidate backend is cooling down (Retry-After), or the classifier is unavailable (/v1/route)",
    "504": "every candidate backend timed out",
}


def build_spec(config, auth_on: bool) -> dict:
    _, top = models_json_schema([(m, "validation") for m in MODELS], ref_template="#/components/schemas/{model}")
    schemas = top["$defs"]
    names = [AUTO_MODEL] + [b.name for b in config.backends]
    # A configured name or any other string (answered 404): generators and readers see the real ones.
    for request in REQUESTS:
        schemas[request]["properties"]["model"] = {
            "anyOf": [{"enum": names}, {"type": "string", "minLength": 1}], "examples": names,
            "description": "'auto' routes; a backend's name passes through"}
    security = [{"bearer": []}] if auth_on else []
    metrics_auth = config.metrics.auth == "key" or (config.metrics.auth == "api" and auth_on)
    paths = {
        "/v1/chat/completions": {"post": _operation(
            "Chat completion: model 'auto' routes, a backend's name passes through", "ChatCompletionRequest",
            {"200": {"description": "the backend's answer; with stream=true server-sent events ending in "
                                    "`data: [DONE]`, or an error event when the backend fails midway",
                     "content": {"application/json": _ref("ChatCompletion"),
                                 "text/event-stream": {"schema": SSE_EVENT}}},
             "4XX": _error("a backend's own 4xx answer, relayed as is")},
            RELAYED, security)},
        **api_paths(security),
        "/v1/route": {"post": _operation(
            "The routing decision alone: backend, rule, reason, every signal", "RouteRequest",
            {"200": {"description": "the decision", "content": {"application/json": _ref("RouteDecision")}}},
            ["400", "401", "403", "413", "415", "429", "431", "503"], security)},
        "/v1/feedback": {"post": _operation(
            "Rate a routed answer (score, thumbs) or compare two; the quality profiles learn from it",
            "FeedbackRequest",
            {"200": {"description": "stored", "content": {"application/json": _ref("FeedbackResult")}},
             "404": _error("no such request routed by this gateway for this key, or feedback is off")},
            ["400", "401", "413", "415", "429", "431"], security)},
        "/v1/models": {"get": {"summary": "'auto' and every backend the key may use", "security": security,
                               "responses": {"200": {"description": "models", "content": {"application/json": _ref("ModelList")}},
                                             **{s: _error(ERRORS[s]) for s in ("401", "429", "431")}}}},
        "/v1/models/{model}": {"get": {"summary": "one model: 'auto' or a backend the key may use", "security": security,
                                       "parameters": [{"name": "model", "in": "path", "required": True,
                                                       "schema": {"type": "string"}}],
                                       "responses": {"200": {"description": "the model",
                                                             "content": {"application/json": _ref("Model")}},
                                                     **{s: _error(ERRORS[s]) for s in ("401", "404", "429", "431")}}}},
        "/healthz": {"get": _plain("the process is up", "Health")},
        "/readyz": {"get": {"summary": "Kubernetes readiness", "responses": {
            "200": {"description": "ready: the classifier serves", "content": {"application/json": _ref("Readiness")}},
            "503": {"description": "degraded: routing without the classifier (take it out of rotation)",
                    "content": {"application/json": _ref("Readiness")}}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (key as `metrics.auth` says)",
                             "security": [{"bearer": []}] if metrics_auth else [], "responses": {"200": {
            "description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **({"401": _error(ERRORS["401"])} if metrics_auth else {})}}},
        "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {
            "description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "semroute gateway", "version": "0.1.0",
                 "description": "OpenAI-compatible semantic LLM router. Errors use OpenAI's shape."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def api_paths(security: list) -> dict:
    """The APIs besides chat completions: routed and relayed the same way."""
    streamed = {"text/event-stream": {"schema": SSE_EVENT}}
    messages = _operation(
        "Anthropic Messages: translated for chat backends, as is for protocol: anthropic ones", "MessagesRequest",
        {"200": {"description": "an Anthropic message; with stream=true its event sequence (message_start ... "
                                "message_stop)", "content": {"application/json": _ref("AnthropicMessage"), **streamed}},
         "4XX": _error("a backend's own 4xx answer", "AnthropicError")}, [], security)
    messages["responses"].update({s: _error(ERRORS[s], "AnthropicError") for s in RELAYED})
    messages["parameters"].append({"name": "x-api-key", "in": "header", "required": False, "schema": {"type": "string"},
                                   "description": "the API key, as Anthropic's SDK sends it (or Authorization: Bearer)"})
    return {
        "/v1/messages": {"post": messages},
        "/v1/responses": {"post": _operation(
            "OpenAI Responses: translated for chat backends, as is for protocol: responses ones; "
            "previous_response_id continues a stored conversation", "ResponsesRequest",
            {"200": {"description": "a Response; with stream=true its typed events (response.created ... "
                                    "response.completed)", "content": {"application/json": _ref("ResponseObject"), **streamed}},
             "4XX": _error("a backend's own 4xx answer")}, RELAYED, security)},
        "/v1/completions": {"post": _operation(
            "Legacy completion, routed on the prompt, to backends serving completions", "CompletionRequest",
            {"200": {"description": "the backend's answer (or its stream)",
                     "content": {"application/json": _ref("Completion"), **streamed}},
             "4XX": _error("a backend's own 4xx answer")}, RELAYED, security)},
        "/v1/embeddings": {"post": _operation(
            "Embeddings, routed among the backends serving embeddings", "EmbeddingRequest",
            {"200": {"description": "the backend's answer", "content": {"application/json": _ref("EmbeddingList")}},
             "4XX": _error("a backend's own 4xx answer")}, RELAYED, security)},
    }


def _ref(name: str) -> dict:
    return {"schema": {"$ref": f"#/components/schemas/{name}"}}


def _error(description: str, shape: str = "ErrorResponse") -> dict:
    return {"description": description, "content": {"application/json": _ref(shape)}}


def _plain(summary: str, schema: str) -> dict:
    return {"summary": summary, "responses": {"200": {"description": summary, "content": {"application/json": _ref(schema)}}}}


def _operation(summary: str, request: str, ok: dict, errors: list[str], security: list) -> dict:
    headers = [{"name": "x-session-id", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "a conversation id: sticky routing"},
               {"name": "x-request-id", "in": "header", "required": False, "schema": {"type": "string"}}]
    return {"summary": summary, "security": security, "parameters": headers,
            "requestBody": {"required": True, "content": {"application/json": _ref(request)}},
            "responses": {**ok, **{s: _error(ERRORS[s]) for s in errors}}}


def openapi_handler(gateway):
    """The /openapi.json handler for this gateway (its live config and auth state)."""
    async def handler(request: web.Request) -> web.Response:
        auth = gateway.auth
        return web.json_response(build_spec(gateway.config, auth.auth_of().enabled(auth.host)))
    return handler
