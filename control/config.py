"""The YAML config: one pydantic model is its schema, validator and reference.

Label names used in rules (domains, tasks) are checked against the served model's own
label lists once the classifier is connected (`check_labels`), never against a copy here.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator


class ConfigError(ValueError):
    """A config file that cannot be used, with a message that says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(_Strict):
    input: float = Field(0.0, ge=0, description="USD per 1M prompt tokens")
    output: float = Field(0.0, ge=0, description="USD per 1M completion tokens")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1e6


class Backend(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    url: HttpUrl = Field(description="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    model: str = Field(min_length=1, description="model id sent upstream")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    price: Price = Price()
    timeout_s: float = Field(120.0, gt=0, description="total time allowed for one upstream call")

    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class StrongTier(_Strict):
    backend: str
    threshold: float = Field(0.5, ge=0, le=1, description="strong_prob at or above this picks the strong backend")


class Routing(_Strict):
    default: str = Field(description="backend used when no rule applies or confidence is low")
    min_confidence: float = Field(0.5, ge=0, le=1, description="a task/domain rule applies only at this probability or above")
    tasks: dict[str, str] = Field(default_factory=dict, description="task label → backend name")
    domains: dict[str, str] = Field(default_factory=dict, description="domain label → backend name")
    strong: StrongTier | None = None


class Config(_Strict):
    backends: list[Backend] = Field(min_length=1)
    routing: Routing

    @model_validator(mode="after")
    def _references_exist(self) -> "Config":
        names = [b.name for b in self.backends]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"backend names must be unique; repeated: {', '.join(dupes)}")
        if "auto" in names:
            raise ValueError("'auto' is reserved for routing and cannot name a backend")
        refs = [("routing.default", self.routing.default)]
        refs += [(f"routing.tasks.{k}", v) for k, v in self.routing.tasks.items()]
        refs += [(f"routing.domains.{k}", v) for k, v in self.routing.domains.items()]
        if self.routing.strong:
            refs.append(("routing.strong.backend", self.routing.strong.backend))
        for where, name in refs:
            if name not in names:
                raise ValueError(f"{where}: '{name}' is not a configured backend (backends: {', '.join(names)})")
        return self

    def max_cost(self, input_tokens: int, output_tokens: int) -> float:
        """What the same tokens cost on the dearest backend: the baseline for savings."""
        return max(b.price.cost(input_tokens, output_tokens) for b in self.backends)

    def backend(self, name: str) -> Backend | None:
        return next((b for b in self.backends if b.name == name), None)

    def check_labels(self, domains: list[str], tasks: list[str]) -> None:
        """Raise if a rule names a label the served model does not produce."""
        bad = [f"routing.tasks.{k}" for k in self.routing.tasks if k not in tasks]
        bad += [f"routing.domains.{k}" for k in self.routing.domains if k not in domains]
        if bad:
            raise ConfigError(f"unknown labels in {', '.join(bad)}; the model knows tasks {tasks} and domains {domains}")


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
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
