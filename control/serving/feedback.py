"""POST /v1/feedback and the routed requests it may rate (remembered when their answer went out)."""
from __future__ import annotations

from aiohttp import web

from control.feedback.protocol import FeedbackRequest
from control.feedback.store import FeedbackStore, UnknownRequest
from control.limits import read_json
from control.protocol import APIError
from control.selection.feedback import FeedbackLearner
from control.serving.context import RequestContext
from control.serving.middleware import context_of
from control.serving.parsing import parse_model


class Feedback:
    """The gateway's feedback: the store (None when feedback.enabled is off) and the learner."""

    def __init__(self, gateway):
        self.gateway = gateway
        settings = gateway.config.feedback
        self.store = FeedbackStore(settings) if settings.enabled else None
        self.learner = FeedbackLearner(self.store) if self.store else None

    def remember(self, ctx: RequestContext, backend: str, routed) -> None:
        """A request routed with the classifier may be rated later (its embedding, never the text by default)."""
        if self.store is not None and routed.signals is not None:
            self.store.remember(ctx.lease.tenant, ctx.request_id, backend, routed.signals.embedding, routed.text)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def learn(self) -> None:
        if self.learner is not None:
            self.learner.refresh(self.gateway.config)

    async def post(self, request: web.Request) -> web.Response:
        if self.store is None:
            raise APIError(404, "feedback is off in this gateway's config (feedback.enabled)", code="feedback_disabled")
        body = parse_model(FeedbackRequest, await read_json(request, self.gateway.config.limits))
        tenant, scores = context_of(request).lease.tenant, body.scores()
        for request_id in scores:  # all or nothing: check every id before storing any rating
            try:
                self.store.routed(tenant, request_id)
            except UnknownRequest:
                raise APIError(404, f"no request '{request_id}' routed by this gateway for this key (or it is older "
                                    f"than feedback.remember_s)", code="request_not_found", param="request_id") from None
        ratings = [self.store.rate(tenant, rid, score, body.comment) for rid, score in scores.items()]
        learned = self.learner.refresh(self.gateway.config, now=True)
        return web.json_response({"object": "feedback", "learned": learned, "ratings": [
            {"request_id": r.request_id, "backend": r.backend, "score": r.score} for r in ratings]})
