"""The selector interface and its registry.

A selector proposes ranked backends for a request, or passes (None). The decision asks them
in `routing.selectors` order (default: the registry's order) and takes the first proposal;
`routing.default` answers when none proposes. Adding a selector is one class here or in its own
module, registered under the routing key that configures it: `@register` (class attribute `key`).
A selector that reads the classifier sets `needs_signals`; without signals (degraded routing) it
is skipped, and `rules` checks only its signal-free rules.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from control.config import Config
from control.decision.values import PolicyContext, Proposal, RequestFeatures


@dataclass(frozen=True)
class Ask:
    """One request, as every selector sees it."""
    signals: object | None  # control.signals.Signals; None when the classifier is unavailable
    request: RequestFeatures
    config: Config
    context: PolicyContext


class Selector(ABC):
    key: ClassVar[str]                  # the routing key that configures it, and its name in routing.selectors
    needs_signals: ClassVar[bool] = True

    @abstractmethod
    def select(self, ask: Ask) -> Proposal | None:
        """Ranked backends for this request, or None to let the next selector answer."""


REGISTRY: dict[str, Selector] = {}


def register(cls: type[Selector]) -> type[Selector]:
    if cls.key in REGISTRY:
        raise ValueError(f"two selectors registered as '{cls.key}'")
    REGISTRY[cls.key] = cls()
    return cls


def ordered(config: Config) -> list[Selector]:
    """The selectors this config asks, in its order (routing.selectors, else the registry's)."""
    names = config.routing.selectors or list(REGISTRY)
    return [REGISTRY[name] for name in names]


def check_selectors(config: Config) -> None:
    """Refuse (ValueError, at start and on reload) a routing.selectors entry no selector is registered as."""
    unknown = [name for name in config.routing.selectors or [] if name not in REGISTRY]
    if unknown:
        raise ValueError(f"routing.selectors: unknown {unknown}; the selectors are {list(REGISTRY)}")
