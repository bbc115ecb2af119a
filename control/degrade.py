"""Routing without the classifier: a time budget around it, a breaker, and a degraded decision.

When Triton is unreachable, slow past `resilience.classifier.timeout_s`, or serves without the
model, a `model: "auto"` request is still answered by the decision core without signals: the
routing rules whose conditions need no signal (keywords, regex, tools, images, max_tokens,
prompt length counted by the local tokenizer) are tried, then `routing.default`. The response
says so in `x-semroute-degraded`.
After repeated failures a breaker skips the classifier for a cooldown (no request waits out
the budget meanwhile), then lets one request probe it.

PII rules cannot be honoured without the classifier, so a degraded request only goes to
backends that accept any PII (`pii: allow`): privacy fails closed, availability degrades.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace


from control import metrics
from control.config import Config
from control.decision import Blocked
from control.protocol import AUTO_MODEL, APIError, ChatCompletionRequest
from control.resilience import CircuitBreaker
from control.router import Routed, Router, features_of

log = logging.getLogger("semroute.degrade")
CLASSIFIER_CODES = ("classifier_unavailable", "classifier_timeout")


@dataclass
class DegradedRouted(Routed):
    degraded: str = ""  # the reason code, sent as x-semroute-degraded


class ClassifierGuard:
    """Wraps Router.route: budget + breaker for the classifier, degraded decisions on failure."""

    def __init__(self):
        self.breaker = CircuitBreaker("classifier")
        self.problem: str | None = None  # the last failure, until a classification succeeds

    async def route(self, router: Router, chat: ChatCompletionRequest, session_id: str | None, config: Config,
                    degrade: bool = True) -> Routed:
        """router.route within the budget; degraded (or, with degrade=False, a 503) on failure."""
        if chat.model != AUTO_MODEL:
            return await router.route(chat, session_id)  # no classifier involved
        try:
            return await self._classified(router, chat, session_id, config)
        except APIError as err:
            if not degrade or err.code not in CLASSIFIER_CODES:
                raise
            return await self.degraded(router, chat, config, err)

    async def _classified(self, router: Router, chat: ChatCompletionRequest, session_id: str | None,
                          config: Config) -> Routed:
        budget = config.resilience.classifier
        if not self.breaker.allow(budget.circuit):
            raise APIError(503, f"the classifier is cooling down after failures ({self.problem})",
                           type="service_unavailable", code="classifier_unavailable",
                           headers={"Retry-After": str(self.breaker.retry_after(budget.circuit))})
        try:
            async with asyncio.timeout(budget.timeout_s):
                routed = await router.route(chat, session_id)
        except TimeoutError:
            self._failed(budget, f"no answer within {budget.timeout_s:g}s")
            raise APIError(503, f"the classifier did not answer within {budget.timeout_s:g}s",
                           type="service_unavailable", code="classifier_timeout") from None
        except APIError as err:
            if err.code in CLASSIFIER_CODES:
                self._failed(budget, err.message)
            else:
                self.breaker.success()  # it classified; the request itself was refused (403, 404, ...)
            raise
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.success()
        self.problem = None
        return routed

    def _failed(self, budget, problem: str) -> None:
        if self.problem is None:
            log.warning("classifier failing, routing degraded: %s", problem)
        self.problem = problem
        self.breaker.failure(budget.circuit)

    async def degraded(self, router: Router, chat: ChatCompletionRequest, config: Config, err: APIError) -> Routed:
        text = chat.routing_text(config.routing.sessions.context_turns)
        tokens = await router.classifier.count_tokens(text)  # the local tokenizer needs no Triton; off the loop
        try:
            decision = router.decide(None, features_of(chat, text, tokens), None)
        except Blocked as blocked:
            raise APIError(503, f"the classifier is unavailable ({err.message}) and {blocked.message}",
                           type="service_unavailable", code=err.code) from None
        decision = replace(decision, reason=f"degraded ({err.code}: {err.message}): {decision.reason} without the "
                                            "classifier", confidence=0.0)
        metrics.DEGRADED.labels(reason=err.code).inc()
        return DegradedRouted(decision, None, text=text, degraded=err.code)

    def ready_problem(self, config: Config) -> str | None:
        """Why routing is degraded now, though Triton answers: the breaker is still cooling down."""
        if self.breaker.state(config.resilience.classifier.circuit) == "open":
            return f"classifier circuit open after failures ({self.problem})"
        return None


def degraded_headers(routed: Routed) -> dict[str, str]:
    """`x-semroute-degraded: <reason code>` on answers routed without the classifier."""
    return {"x-semroute-degraded": routed.degraded} if isinstance(routed, DegradedRouted) else {}
