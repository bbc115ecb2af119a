"""The learned selectors' config (`routing.quality`, `routing.budget`; control/selection runs them).

    routing:
      quality: {profile: multi_model, tolerance: 0.03}       # or lambda: 0.2 (score per USD/1M tokens)
      budget:  {profile: multi_model, usd_per_hour: 2.0}
    backends:
      - {name: small, ..., profile: gemma-2-9b-it}            # the profile model that stands for it
"""
from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from control.config.base import BackendName, Strict


class _Strict(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)  # `lambda` is a keyword: lambda_ in code


class QualitySelection(_Strict):
    """Pick by estimated quality: the cheapest within `tolerance` of the best estimate, or the
    best estimate − λ·price (price: the backend's input + output USD per 1M tokens)."""
    profile: str = Field(min_length=1, description="shipped profile name (profiles/<name>) or a profile directory")
    tolerance: float | None = Field(None, ge=0, le=1, description="take the cheapest candidate within this of the best estimate")
    lambda_: float | None = Field(None, alias="lambda", ge=0, description="maximise estimate − lambda × price (USD per 1M tokens)")
    backends: list[BackendName] | None = Field(None, description="candidates (default: every backend with a `profile`)")

    @model_validator(mode="after")
    def _one_form(self) -> "QualitySelection":
        if (self.tolerance is None) == (self.lambda_ is None):
            raise ValueError("give exactly one of tolerance or lambda")
        return self


class BudgetSelection(_Strict):
    """Estimate − λ·(the request's estimated cost), λ paced online so that spend per hour
    tracks `usd_per_hour` (pacing, not a cap: no request is refused for the budget)."""
    profile: str = Field(min_length=1, description="shipped profile name (profiles/<name>) or a profile directory")
    usd_per_hour: float = Field(gt=0, description="the spend rate to track")
    window_s: float = Field(300.0, gt=0, description="time constant of the spend-rate estimate")
    initial_lambda: float | None = Field(None, gt=0, description="λ at start (default: 0.1 score per the first "
                                                                   "request's mean candidate cost)")
    backends: list[BackendName] | None = Field(None, description="candidates (default: every backend with a `profile`)")
