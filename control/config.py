"""The YAML config: one pydantic model is its schema, validator and reference.

Label names used in rules (domains, tasks) are checked against the served model's own
label lists once the classifier is connected (`check_labels`), never against a copy here.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator

from control.auth import Auth, MetricsAccess
from control.capabilities import Capabilities
from control.limits import Limits
from control.resilience import Resilience
from control.routing_config import CacheConfig, EmbeddingRoute, Routing


class ConfigError(ValueError):
    """A config file that cannot be used, with a message that says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(_Strict):
    input: float = Field(0.0, ge=0, description="USD per 1M prompt tokens")
    output: float = Field(0.0, ge=0, description="USD per 1M completion tokens")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1e6


class PiiAllowTypes(_Strict):
    allow_types: list[str]


class Backend(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    url: HttpUrl = Field(description="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
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

    def allows_pii(self, types: set[str]) -> bool:
        if not types or self.pii == "allow":
            return True
        return self.pii != "block" and types <= set(self.pii.allow_types)

    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class Config(_Strict):
    backends: list[Backend] = Field(min_length=1)
    routing: Routing
    routes: list[EmbeddingRoute] = Field(default_factory=list, description="embedding routes (signals for rules)")
    cache: CacheConfig = CacheConfig()
    resilience: Resilience = Resilience()
    auth: Auth = Auth()
    metrics: MetricsAccess = MetricsAccess()
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _references_exist(self) -> "Config":
        names = [b.name for b in self.backends]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"backend names must be unique; repeated: {', '.join(dupes)}")
        if "auto" in names:
            raise ValueError("'auto' is reserved for routing and cannot name a backend")
        refs = self.routing.backend_refs()
        refs += [(f"auth.keys.{k.name}.backends", b) for k in self.auth.keys for b in k.backends or []]
        for where, name in refs:
            if name not in names:
                raise ValueError(f"{where}: '{name}' is not a configured backend (backends: {', '.join(names)})")
        route_names = [r.name for r in self.routes]
        for rule in self.routing.rules:
            for route in rule.when.route or []:
                if route not in route_names:
                    raise ValueError(f"routing.rules.{rule.name}.when.route: '{route}' is not a configured route")
        return self

    def max_cost(self, input_tokens: int, output_tokens: int) -> float:
        """What the same tokens cost on the dearest backend: the baseline for savings."""
        return max(b.price.cost(input_tokens, output_tokens) for b in self.backends)

    def backend(self, name: str) -> Backend | None:
        return next((b for b in self.backends if b.name == name), None)

    def check_labels(self, domains: list[str], tasks: list[str]) -> None:
        """Raise if a rule names a label the served model does not produce."""
        task_refs, domain_refs = self.routing.label_refs()
        bad = [f"{where} ({label})" for where, label in task_refs if label not in tasks]
        bad += [f"{where} ({label})" for where, label in domain_refs if label not in domains]
        bad += [f"routing.model_scores.{label}" for label in self.routing.model_scores if label not in tasks + domains]
        if bad:
            raise ConfigError(f"unknown labels in {', '.join(bad)}; the model knows tasks {tasks} and domains {domains}")


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, not text: refused like bad YAML
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'backends' and 'routing' at the top")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid config:\n{_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  - {where}: {err['msg']}")
    return "\n".join(lines)
