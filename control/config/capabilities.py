"""A backend's `capabilities:` (the request-side check is control/capabilities.py)."""
from __future__ import annotations

from pydantic import Field

from control.config.base import Strict


class Capabilities(Strict):
    """What a backend can serve; unset means unknown, and unknown means allowed."""
    vision: bool | None = Field(None, description="accepts image parts (unset: unknown, allowed)")
    tools: bool | None = Field(None, description="accepts tools / functions (unset: unknown, allowed)")
    json_schema: bool | None = Field(None, description="accepts response_format json_schema (unset: unknown, allowed)")
    context_window: int | None = Field(None, gt=0, description="tokens: estimated prompt + max_tokens must fit")
