"""The `backends:` section: the LLMs a request may go to, their prices, limits and policies."""
from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, HttpUrl, model_validator

from control.config.base import Strict
from control.config.capabilities import Capabilities


class Price(Strict):
    input: float = Field(0.0, ge=0, description="USD per 1M prompt tokens")
    output: float = Field(0.0, ge=0, description="USD per 1M completion tokens")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1e6


Endpoint = Literal["chat", "completions", "embeddings"]


class PiiAllowTypes(Strict):
    allow_types: list[str]


class Backend(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    url: HttpUrl = Field(description="base URL, e.g. http://localhost:8000/v1 (OpenAI-compatible) or "
                                     "https://api.anthropic.com/v1 (protocol: anthropic)")
    protocol: Literal["openai", "anthropic", "responses"] = Field(
        "openai", description="what it speaks: openai (chat completions; Messages and Responses requests are "
                              "translated), anthropic (Messages) or responses (OpenAI Responses): those requests "
                              "go to it as they are")
    serves: list[Endpoint] = Field(default_factory=lambda: ["chat", "completions"], min_length=1,
                                   description="the endpoints it serves; a request goes only to backends serving its "
                                               "endpoint (chat covers /v1/chat/completions, /v1/messages, /v1/responses)")
    model: str = Field(min_length=1, description="model id sent upstream")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    price: Price = Price()
    timeout_s: float = Field(120.0, gt=0, description="total time allowed for one upstream call")
    connect_timeout_s: float = Field(5.0, gt=0, description="time allowed to open the connection")
    first_byte_timeout_s: float = Field(60.0, gt=0, description="time allowed until the response headers, and for "
                                                                 "streams again until the first chunk")
    idle_timeout_s: float = Field(30.0, gt=0, description="streams: longest silence between two chunks")
    pii: Literal["allow", "block"] | PiiAllowTypes = Field("allow", description="may prompts with PII go to this backend")
    capabilities: Capabilities = Field(Capabilities(), description="what it can serve; unset means allowed")
    max_response_bytes: int = Field(32 * 2**20, gt=0, description="largest answer taken from it, after "
                                                                  "decompression; beyond it the answer is cut (502)")
    profile: str | None = Field(None, description="the quality-profile model that stands for this backend "
                                                  "(routing.quality / routing.budget estimate its score)")
    reasoning_family: Literal["qwen3", "deepseek", "openai"] | None = Field(
        None, description="how this backend turns reasoning on/off: chat_template_kwargs.enable_thinking, "
                          "thinking, or reasoning_effort")

    @model_validator(mode="after")
    def _one_credential(self) -> "Backend":
        # aiohttp sends URL credentials as Basic auth and refuses them beside a Bearer header,
        # so the pair would fail every request: refused here instead.
        if (self.url.username or self.url.password) and self.api_key_env:
            raise ValueError(f"backend '{self.name}': the url carries credentials (user:pass@) and api_key_env is set; "
                             "give one: api_key_env for a Bearer key, or credentials in the url for Basic auth")
        return self

    @model_validator(mode="after")
    def _serves_what_it_speaks(self) -> "Backend":
        if self.protocol != "openai" and "serves" not in self.model_fields_set:
            self.serves = ["chat"]  # its own API is a chat API
        if self.protocol != "openai" and set(self.serves) != {"chat"}:
            raise ValueError(f"backend '{self.name}': protocol {self.protocol} serves chat only (its own API); "
                             f"completions and embeddings need an OpenAI-compatible backend (serves: [chat])")
        return self

    def allows_pii(self, types: set[str]) -> bool:
        if not types or self.pii == "allow":
            return True
        return self.pii != "block" and types <= set(self.pii.allow_types)

    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None
