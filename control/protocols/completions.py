"""OpenAI legacy completions (`POST /v1/completions`) and embeddings (`POST /v1/embeddings`).

Both are forwarded to the backend in their own format (its `serves` says which it takes);
translation is needed only for routing: `routing_chat` is the chat request the router reads,
with the prompt (or the text to embed) as the user turn. Token-id prompts carry no text to
classify: they route on what needs no text (the default, named backends).
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from control.protocol import ChatCompletionRequest, Message

TokenIds = list[Annotated[int, Field(ge=0)]]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


def prompt_text(value: str | list) -> str:
    """The text in a prompt or input given as a string or a list of strings (token ids: none)."""
    if isinstance(value, str):
        return value
    return "\n".join(v for v in value if isinstance(v, str))


class CompletionRequest(_Open):
    model: str = Field(min_length=1)
    prompt: str | list[str] | TokenIds | list[TokenIds]
    max_tokens: int | None = Field(None, ge=0, strict=True)
    temperature: float | None = Field(None, ge=0, le=2, strict=True)
    top_p: float | None = Field(None, ge=0, le=1, strict=True)
    n: int | None = Field(None, ge=1, le=128, strict=True)
    stream: bool = Field(False, strict=True)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None

    def text(self) -> str:
        return prompt_text(self.prompt)

    def routing_chat(self) -> ChatCompletionRequest:
        return ChatCompletionRequest(model=self.model, messages=[Message(role="user", content=self.text())],
                                     max_tokens=self.max_tokens or None, stream=self.stream)


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1)
    input: Annotated[str, Field(min_length=1)] | Annotated[list[str], Field(min_length=1, max_length=2048)] \
        | Annotated[TokenIds, Field(min_length=1)] | Annotated[list[TokenIds], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1, strict=True)
    user: str | None = None

    def text(self) -> str:
        return prompt_text(self.input)

    def routing_chat(self) -> ChatCompletionRequest:
        return ChatCompletionRequest(model=self.model, messages=[Message(role="user", content=self.text())])
