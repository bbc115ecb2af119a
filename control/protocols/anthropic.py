"""Anthropic Messages (`POST /v1/messages`): request types, the translation to and from chat
completions, and Anthropic's error shape.

What has no chat-completions counterpart is refused with a 400 naming the field (server tools
such as web search, documents, `top_k` is dropped since OpenAI refuses it); thinking blocks in
earlier assistant turns are dropped (a chat backend keeps no reasoning between turns).
"""
from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from control.chat_params import TOOL_NAME
from control.protocol import APIError


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextBlock(_Open):
    type: Literal["text"]
    text: str


class Base64Source(_Open):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(_Open):
    type: Literal["url"]
    url: str


class ImageBlock(_Open):
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource, Field(discriminator="type")]


class ToolUseBlock(_Open):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict


class ToolResultBlock(_Open):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] = ""
    is_error: bool | None = None


class ThinkingBlock(_Open):
    type: Literal["thinking", "redacted_thinking"]


Block = Annotated[TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock, Field(discriminator="type")]


class Message(_Open):
    role: Literal["user", "assistant"]
    content: str | list[Block]

    def blocks(self) -> list:
        return [TextBlock(type="text", text=self.content)] if isinstance(self.content, str) else self.content

    def text(self) -> str:
        return "\n".join(b.text for b in self.blocks() if isinstance(b, TextBlock))


class Tool(_Open):
    """A client tool; server tools (`type: web_search_...` and the like) have no chat equivalent."""
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    input_schema: dict
    type: Literal["custom"] | None = None


class ToolChoice(_Open):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class MessagesRequest(_Open):
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1, strict=True)
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = Field(False, strict=True)
    temperature: float | None = Field(None, ge=0, le=1, strict=True)
    top_p: float | None = Field(None, ge=0, le=1, strict=True)
    top_k: int | None = Field(None, ge=0, strict=True)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    metadata: dict | None = None

    def system_text(self) -> str:
        if isinstance(self.system, list):
            return "\n".join(b.text for b in self.system)
        return self.system or ""


def to_chat(request: MessagesRequest) -> dict[str, Any]:
    """The chat completions body an OpenAI-compatible backend gets for this request."""
    messages = [{"role": "system", "content": request.system_text()}] if request.system else []
    for message in request.messages:
        messages += chat_messages(message)
    body: dict[str, Any] = {"model": request.model, "messages": messages, "max_tokens": request.max_tokens}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("stop_sequences", "stop")):
        if getattr(request, ours) is not None:
            body[theirs] = getattr(request, ours)
    if request.tools:
        body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                           "parameters": t.input_schema}} for t in request.tools]
    if request.tool_choice is not None:
        body.update(chat_tool_choice(request.tool_choice))
    if request.metadata and isinstance(request.metadata.get("user_id"), str):
        body["user"] = request.metadata["user_id"]
    if request.stream:
        body["stream"], body["stream_options"] = True, {"include_usage": True}
    return body


def chat_messages(message: Message) -> list[dict]:
    """One Anthropic turn as chat messages: a user turn's tool results become `tool` messages
    (first: they answer the assistant's calls just before), an assistant's tool_use blocks its
    `tool_calls`."""
    blocks = message.blocks()
    if message.role == "assistant":
        text = "".join(b.text for b in blocks if isinstance(b, TextBlock))
        calls = [{"id": b.id, "type": "function", "function": {"name": b.name, "arguments": orjson.dumps(b.input).decode()}}
                 for b in blocks if isinstance(b, ToolUseBlock)]
        out: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            out["tool_calls"] = calls
        return [out]
    results = [{"role": "tool", "tool_call_id": b.tool_use_id, "content": tool_result_text(b)}
               for b in blocks if isinstance(b, ToolResultBlock)]
    parts = [chat_part(b) for b in blocks if isinstance(b, TextBlock | ImageBlock)]
    if not parts:
        return results
    if all(p["type"] == "text" for p in parts):
        return results + [{"role": "user", "content": "\n".join(p["text"] for p in parts)}]
    return results + [{"role": "user", "content": parts}]


def chat_part(block: TextBlock | ImageBlock) -> dict:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    source = block.source
    url = source.url if isinstance(source, URLSource) else f"data:{source.media_type};base64,{source.data}"
    return {"type": "image_url", "image_url": {"url": url}}


def tool_result_text(block: ToolResultBlock) -> str:
    text = block.content if isinstance(block.content, str) else "\n".join(
        b.text for b in block.content if isinstance(b, TextBlock))
    return f"Error: {text}" if block.is_error else text


def chat_tool_choice(choice: ToolChoice) -> dict:
    if choice.type == "tool":
        if not choice.name:
            raise APIError(400, "tool_choice of type 'tool' needs a 'name'", param="tool_choice")
        out: dict[str, Any] = {"tool_choice": {"type": "function", "function": {"name": choice.name}}}
    else:
        out = {"tool_choice": {"auto": "auto", "any": "required", "none": "none"}[choice.type]}
    if choice.disable_parallel_tool_use:
        out["parallel_tool_calls"] = False
    return out


STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}


def stop_reason(finish_reason: str | None) -> str:
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def usage_of(chat_usage: dict | None) -> dict:
    usage = chat_usage or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    return {"input_tokens": int(usage.get("prompt_tokens") or 0), "output_tokens": int(usage.get("completion_tokens") or 0),
            **({"cache_read_input_tokens": int(cached)} if cached else {})}


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def from_chat(answer: dict) -> dict:
    """A chat completion as an Anthropic message: its text and tool calls as content blocks."""
    choice = (answer.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict] = [{"type": "text", "text": message["content"]}] if message.get("content") else []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                        "name": function.get("name", ""), "input": tool_input(function.get("arguments"))})
    return {"id": message_id(), "type": "message", "role": "assistant", "model": answer.get("model", ""),
            "content": content, "stop_reason": stop_reason(choice.get("finish_reason")), "stop_sequence": None,
            "usage": usage_of(answer.get("usage"))}


def tool_input(arguments: str | None) -> dict:
    """A tool call's JSON arguments as the object Anthropic's `input` is (a model's malformed
    JSON is kept under `_raw`, not lost)."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_value": value}


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error",
               503: "overloaded_error", 529: "overloaded_error"}


def error_body(status: int, message: str) -> dict:
    """Anthropic's error shape: {"type": "error", "error": {"type", "message"}}."""
    kind = ERROR_TYPES.get(status, "invalid_request_error" if 400 <= status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_from_openai(status: int, body: Any) -> dict:
    """An OpenAI-shaped error (ours, or a chat backend's) in Anthropic's shape."""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return error_body(status, str(message or body or "error"))
