"""The `feedback:` section: ratings of routed answers, kept in SQLite and learned from."""
from __future__ import annotations

from pydantic import Field

from control.config.base import Strict


class FeedbackConfig(Strict):
    enabled: bool = Field(True, description="remember routed requests and accept POST /v1/feedback for them")
    path: str | None = Field(None, description="the SQLite file (default: feedback.sqlite3 in the state directory, "
                                               "$SEMROUTE_STATE_DIR)")
    remember_s: float = Field(7 * 86400, gt=0, description="how long a routed request can be rated")
    store_prompts: bool = Field(False, description="also keep the prompt text (default: its embedding and the scores "
                                                   "only)")
