"""The `limits:` section: request sizes and counts refused before any work is done."""
from __future__ import annotations

from pydantic import Field

from control.config.base import Strict


class Limits(Strict):
    """The `limits:` section: what a client may send (checked in control/limits.py)."""
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0, description="request body size")
    max_header_bytes: int = Field(32 * 1024, gt=0, description="all request headers together (names + values)")
    max_messages: int = Field(2048, gt=0, description="messages in one chat request")
    max_chars: int = Field(2_000_000, gt=0, description="text characters in all messages (or /v1/route text) together")
    max_json_depth: int = Field(64, gt=0, description="nesting depth of the JSON body")
    max_content_parts: int = Field(2048, gt=0, description="content parts in all messages together")
    max_parts_per_message: int = Field(1024, gt=0, description="content parts in one message")
    max_tools: int = Field(128, gt=0, description="tools (and functions) in one request; OpenAI's own limit is 128")
    parse_in_thread_bytes: int = Field(256 * 1024, ge=0, description="bodies larger than this are parsed in a "
                                                                     "thread, not on the event loop")
    body_read_timeout_s: float = Field(30.0, gt=0, description="time allowed to receive the whole body; a client "
                                                               "that stalls midway gets a 408 and is dropped")
