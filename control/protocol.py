"""OpenAI wire types the gateway reads, and OpenAI's error shape. No serving logic here.

Requests are validated as far as routing needs and OpenAI itself validates (chat_params.py);
every other field passes through to the backend untouched (extra="allow").
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from control.chat_params import ChatParams

AUTO_MODEL = "auto"


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    """Image, audio or file parts: passed through, not read by the classifier."""
    model_config = ConfigDict(extra="allow")
    type: Literal["image_url", "input_audio", "file", "refusal"]


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart | OtherPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content or [] if isinstance(p, TextPart))


class ChatCompletionRequest(ChatParams):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = Field(False, strict=True)  # "yes" or 1 would stream here but not upstream: refused

    def routing_text(self, context_turns: int = 0) -> str:
        """The text the classifier reads: the last user turn, after up to `context_turns`
        earlier user turns (so a follow-up reads like its conversation); the last message
        when there is no user turn."""
        users = [m for m in self.messages if m.role == "user"] or [self.messages[-1]]
        return "\n".join(m.text() for m in users[-(context_turns + 1):])

    def has_images(self) -> bool:
        return any(isinstance(p, OtherPart) and p.type == "image_url"
                   for m in self.messages if isinstance(m.content, list) for p in m.content)

    def has_tools(self) -> bool:
        return bool(self.tools or (self.model_extra or {}).get("functions"))

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class RouteRequest(BaseModel):
    """`/v1/route` takes either plain text or chat messages."""
    model_config = ConfigDict(extra="allow")
    text: str | None = None
    messages: list[Message] | None = None

    def as_chat(self) -> ChatCompletionRequest:
        """The chat request `model: auto` would make of this (extra fields such as tools kept)."""
        if self.text is not None:
            messages = [Message(role="user", content=self.text)]
        elif self.messages:
            messages = self.messages
        else:
            raise ValueError("give 'text' or a non-empty 'messages' list")
        extra = {k: v for k, v in (self.model_extra or {}).items() if k != "model"}
        return ChatCompletionRequest(model=AUTO_MODEL, messages=messages, **extra)

    def routing_text(self) -> str:
        return self.as_chat().routing_text()


class APIError(Exception):
    """An error the client sees in OpenAI's shape: {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = dict(headers or {})  # e.g. Retry-After on 429/503, WWW-Authenticate on 401

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def validation_error(exc: ValidationError) -> APIError:
    """The first pydantic error as a 400 naming the offending field; for a field that may take
    several shapes (a union), what each shape wanted."""
    errors = exc.errors()
    param = field_path(errors[0]["loc"])
    wanted = dict.fromkeys(e["msg"] for e in errors if field_path(e["loc"]) == param)
    return APIError(400, f"invalid request: {param or 'body'}: {' or '.join(wanted)}", code="invalid_request",
                    param=param or None)


_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none"}


def field_path(loc: tuple) -> str:
    """`tools.0.function.name` from a pydantic location, without the tags pydantic adds for
    union members (`str`, `list[str]`, `literal[...]`, class names, `function-after[...]`)."""
    return ".".join(str(p) for p in loc if isinstance(p, int)
                    or (p.isidentifier() and p.islower() and p not in _TYPE_TAGS))
