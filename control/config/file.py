"""The whole YAML file: `Config` composes the sections, checks that every name it uses exists,
and `load_config` reads a file into it with errors that say where and why.

Label names used in rules (domains, tasks) are checked against the served model's own label
lists once the classifier is connected (`check_labels`), never against a copy here.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from control.config.access import Auth, MetricsAccess
from control.config.backends import Backend
from control.config.feedback import FeedbackConfig
from control.config.base import BACKEND, DOMAIN, LABEL, TASK, Strict, named, repeated
from control.config.limits import Limits
from control.config.resilience import Resilience
from control.config.responses import ResponsesConfig
from control.config.routing import CacheConfig, CustomCategory, EmbeddingRoute, Routing
from control.config.state import StateConfig


class ConfigError(ValueError):
    """A config file that cannot be used, with a message that says where and why."""


class Config(Strict):
    backends: list[Backend] = Field(min_length=1)
    routing: Routing
    routes: list[EmbeddingRoute] = Field(default_factory=list, description="embedding routes (signals for rules)")
    categories: list[CustomCategory] = Field(default_factory=list, description="categories of your own, learned "
                                                                                 "from examples at start-up")
    cache: CacheConfig = CacheConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    resilience: Resilience = Resilience()
    auth: Auth = Auth()
    metrics: MetricsAccess = MetricsAccess()
    limits: Limits = Limits()
    responses: ResponsesConfig = ResponsesConfig()
    state: StateConfig = StateConfig()

    @model_validator(mode="after")
    def _references_exist(self) -> "Config":
        names = [b.name for b in self.backends]
        repeated(names, "backend")
        if "auto" in names:
            raise ValueError("'auto' is reserved for routing and cannot name a backend")
        for where, name in named(self, BACKEND):
            if name not in names:
                raise ValueError(f"{where}: '{name}' is not a configured backend (backends: {', '.join(names)})")
        for section, key in (("routes", "route"), ("categories", "category")):
            _check_names(section, [item.name for item in getattr(self, section)], key, self.routing.rules)
        return self

    def max_cost(self, input_tokens: int, output_tokens: int) -> float:
        """What the same tokens cost on the dearest backend: the baseline for savings."""
        return max(b.price.cost(input_tokens, output_tokens) for b in self.backends)

    def backend(self, name: str) -> Backend | None:
        return next((b for b in self.backends if b.name == name), None)

    def check_labels(self, domains: list[str], tasks: list[str]) -> None:
        """Raise if a rule names a label the served model does not produce."""
        known = {TASK: tasks, DOMAIN: domains, LABEL: tasks + domains}
        bad = [f"{where} ({label})" for marker, labels in known.items()
               for where, label in named(self, marker) if label not in labels]
        if bad:
            raise ConfigError(f"unknown labels in {', '.join(bad)}; the model knows tasks {tasks} and domains {domains}")


def _check_names(section: str, names: list[str], key: str, rules) -> None:
    """Unique names in a named section, and every rule's `when.<key>` (a name of one) among them."""
    repeated(names, key)
    for rule in rules:
        for name in getattr(rule.when, key) or []:
            if name not in names:
                raise ValueError(f"routing.rules.{rule.name}.when.{key}: '{name}' is not a configured {key}")


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
