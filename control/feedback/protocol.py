"""POST /v1/feedback: one rating (score or thumbs) or one comparison of two answers."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

THUMBS = {"up": 1.0, "down": 0.0}


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=128, description="x-request-id of a routed answer")
    score: float | None = Field(None, ge=0, le=1, description="how good the answer was, 0 (bad) to 1 (good)")
    thumbs: Literal["up", "down"] | None = None
    comment: str | None = Field(None, max_length=2000)
    other_request_id: str | None = Field(None, min_length=1, max_length=128,
                                         description="pairwise: the answer it was compared with")
    winner: str | None = Field(None, description="pairwise: request_id or other_request_id, the better answer")

    @model_validator(mode="after")
    def _one_form(self) -> "FeedbackRequest":
        forms = [self.score is not None, self.thumbs is not None, self.other_request_id is not None]
        if sum(forms) != 1:
            raise ValueError("give exactly one of score, thumbs, or other_request_id with winner")
        if self.other_request_id is not None:
            if self.other_request_id == self.request_id:
                raise ValueError("other_request_id must name another request")
            if self.winner not in (self.request_id, self.other_request_id):
                raise ValueError("winner must be request_id or other_request_id")
        elif self.winner is not None:
            raise ValueError("winner goes with other_request_id")
        return self

    def scores(self) -> dict[str, float]:
        """request id → score: a comparison scores the winner 1 and the other 0."""
        if self.other_request_id is not None:
            return {rid: float(rid == self.winner) for rid in (self.request_id, self.other_request_id)}
        return {self.request_id: self.score if self.score is not None else THUMBS[self.thumbs]}
