"""Routing: request → signals (Triton) → the decision core, with the state the pure core must not
hold: the served model's labels and calibration, embedding routes, and conversations' backends."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace

from tritonclient.utils import InferenceServerException

from control import metrics
from control.config import Config
from control.decision import Blocked, Decision, PolicyContext, RequestFeatures, decide, passthrough
from control.decision.selector import check_selectors
from control.selection.runtime import check_profiles
from control.protocol import AUTO_MODEL, APIError, ChatCompletionRequest
from control.categories import CustomCategories
from control.embedding_routes import EmbeddingRoutes
from control.health import HealthBoard
from control.sessions import session_draw
from control.state import SessionStore
from control.state.memory import MemorySessions
from control.reading import ReadBudget
from control.signals import Classifier, Signals
from modelspec.calibration import threshold_for


@dataclass
class Routed:
    decision: Decision
    signals: Signals | None = None
    classify_ms: float = 0.0
    decide_ms: float = 0.0
    text: str = ""


class Router:
    def __init__(self, config: Config, classifier: Classifier, health: HealthBoard | None = None,
                 sessions: SessionStore | None = None):
        check_selectors(config)
        check_profiles(config)
        self.config = config
        self.classifier = classifier
        self.routes = EmbeddingRoutes(config.routes)
        self.categories = CustomCategories(config.categories)
        self.health = health  # the gateway's live backend health (kept across reloads), None offline
        self.sessions = sessions if sessions is not None else MemorySessions(config.routing.sessions.max_sessions)
        self._started = False

    async def start(self) -> None:
        """Connect, check the config's labels against the model's, embed the routes' utterances."""
        await self.classifier.start()
        labels = self.classifier.labels
        self.config.check_labels(labels.domains, labels.tasks)
        strong = self.config.routing.strong
        if strong and strong.target_share is not None and not labels.strong_calibration:
            raise ValueError("routing.strong.target_share needs a model with a strong_prob calibration table; "
                             "use routing.strong.threshold or re-export the model")
        await self.routes.prepare(self.classifier)
        await self.categories.prepare(self.classifier)
        self._started = True

    async def classify(self, text: str) -> tuple[Signals, float]:
        start = time.perf_counter()
        try:
            if not self._started:
                await self.start()
            signals = (await self.classifier.classify([text], self.read_budget()))[0]
        except (InferenceServerException, ConnectionError, OSError) as exc:
            raise APIError(503, f"the classifier (Triton at {self.classifier.triton_url}) is unavailable: {exc}",
                           type="service_unavailable", code="classifier_unavailable") from None
        signals = replace(signals, routes=self.routes.match(signals.embedding),
                          categories=self.categories.predict(signals.embedding))
        elapsed = time.perf_counter() - start
        metrics.CLASSIFY_SECONDS.observe(elapsed)
        return signals, round(elapsed * 1000, 3)

    async def route(self, chat: ChatCompletionRequest, session_id: str | None = None) -> Routed:
        if chat.model != AUTO_MODEL:
            if self.config.backend(chat.model) is None:
                names = ", ".join([AUTO_MODEL] + [b.name for b in self.config.backends])
                raise APIError(404, f"model '{chat.model}' does not exist; use one of: {names}",
                               code="model_not_found", param="model")
            return Routed(passthrough(self.config, chat.model))
        text = chat.routing_text(self.config.routing.sessions.context_turns)
        signals, classify_ms = await self.classify(text)
        previous = await self.previous_backend(session_id)
        start = time.perf_counter()
        try:
            decision = self.decide(signals, features_of(chat, text, signals.read.tokens), session_id, previous)
        except Blocked as blocked:
            metrics.BLOCKED.labels(reason=blocked.code).inc()
            raise APIError(403, blocked.message, type="invalid_request_error", code=blocked.code) from None
        return Routed(decision, signals, classify_ms, round((time.perf_counter() - start) * 1000, 3), text)

    async def previous_backend(self, session_id: str | None) -> str | None:
        """The conversation's backend so far (only sticky sessions are remembered)."""
        if session_id is None or not self.config.routing.sessions.sticky:
            return None
        return await self.sessions.get(session_id)

    def decide(self, signals: Signals | None, features: RequestFeatures, session_id: str | None,
               previous_backend: str | None = None) -> Decision:
        """The core's decision (None signals: degraded); raises Blocked."""
        context = PolicyContext(
            strong_threshold=self.strong_threshold(),
            previous_backend=previous_backend,
            split_draw=session_draw(session_id, "split") if session_id else random.random(),
            health=self.health.penalties([b.name for b in self.config.backends], self.config.routing.health)
            if self.health else {},
            health_draw=random.random(),
        )
        return decide(signals, features, self.config, context)

    def read_budget(self) -> ReadBudget:
        budget = self.config.resilience.classifier
        return ReadBudget(budget.read_tokens, budget.jailbreak_tokens)

    def strong_threshold(self) -> float | None:
        strong = self.config.routing.strong
        calibration = self.classifier.labels.strong_calibration if self.classifier.labels else None
        if strong is None or strong.target_share is None or not calibration:
            return None
        return threshold_for(calibration, strong.target_share)

    async def remember(self, session_id: str | None, decision: Decision) -> None:
        if session_id is not None and self.config.routing.sessions.sticky and decision.rule != "passthrough":
            await self.sessions.put(session_id, decision.backend)


def features_of(chat: ChatCompletionRequest, text: str, prompt_tokens: int) -> RequestFeatures:
    """What the decision reads of a chat request besides the signals."""
    return RequestFeatures(prompt=text, prompt_tokens=prompt_tokens, tools=chat.has_tools(), images=chat.has_images(),
                           max_tokens=chat.requested_max_tokens())
