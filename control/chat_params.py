"""The chat parameters OpenAI itself validates, checked the same way before anything is
forwarded: an out-of-range `temperature` or a malformed `tools` list is the client's 400 here,
with `param` naming the field, not a backend's surprise (or, worse, silently accepted by one
backend and refused by the next after a failover).

Only what OpenAI documents is refused; the body forwarded is still the client's own, so
fields not declared here (and extra keys inside tools) pass through untouched.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"  # OpenAI's rule for function names


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class FunctionDefinition(_Open):
    name: str = Field(pattern=TOOL_NAME, description="a-z, A-Z, 0-9, underscores and dashes, at most 64")
    description: str | None = None
    parameters: dict | None = Field(None, description="a JSON Schema object; omitted: no parameters")
    strict: bool | None = Field(None, strict=True)


class CustomToolDefinition(_Open):
    name: str = Field(pattern=TOOL_NAME)


class Tool(_Open):
    """`{"type": "function", "function": {...}}`, or OpenAI's newer `{"type": "custom", "custom": {...}}`."""
    type: Literal["function", "custom"]
    function: FunctionDefinition | None = None
    custom: CustomToolDefinition | None = None

    @model_validator(mode="after")
    def _definition_for_its_type(self) -> "Tool":
        if getattr(self, self.type) is None:
            raise ValueError(f"a tool of type '{self.type}' needs a '{self.type}' object")
        return self


class NamedFunction(_Open):
    name: str = Field(min_length=1)


class NamedToolChoice(_Open):
    """Forces one tool: `{"type": "function", "function": {"name": ...}}` (or custom)."""
    type: Literal["function", "custom"]
    function: NamedFunction | None = None
    custom: NamedFunction | None = None

    @model_validator(mode="after")
    def _names_a_tool(self) -> "NamedToolChoice":
        if getattr(self, self.type) is None:
            raise ValueError(f"tool_choice of type '{self.type}' needs '{self.type}': {{'name': ...}}")
        return self


class AllowedToolsChoice(_Open):
    type: Literal["allowed_tools"]
    allowed_tools: dict


class ChatParams(BaseModel):
    """Declared on the chat request; strict types, as OpenAI's (1.0 is not an integer, "1" not a number)."""
    max_tokens: int | None = Field(None, ge=1, strict=True)
    max_completion_tokens: int | None = Field(None, ge=1, strict=True)
    temperature: float | None = Field(None, ge=0, le=2, strict=True)
    top_p: float | None = Field(None, ge=0, le=1, strict=True)
    n: int | None = Field(None, ge=1, le=128, strict=True)
    presence_penalty: float | None = Field(None, ge=-2, le=2, strict=True)
    frequency_penalty: float | None = Field(None, ge=-2, le=2, strict=True)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = Field(None, description="up to 4 sequences")
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | AllowedToolsChoice | None = None
