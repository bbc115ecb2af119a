"""What a backend can serve (`capabilities:` on a backend) and what a request needs.

Unknown means allowed: a capability left unset never removes a backend, so existing configs
keep routing as before. The context window is the exception to "declare to restrict": when
set, it is enforced on the request's estimated prompt tokens plus its max_tokens.
The schema is control/config/capabilities.py; here is what a request needs and the check.
"""
from __future__ import annotations

from dataclasses import dataclass

from control.config.capabilities import Capabilities


@dataclass(frozen=True)
class Needs:
    """What one request asks of a backend."""
    vision: bool = False
    tools: bool = False
    json_schema: bool = False
    tokens: int = 0  # estimated prompt tokens + the client's max_tokens (0 when unset)


def needs_of(chat, prompt_tokens: int) -> Needs:
    """The needs of a ChatCompletionRequest whose prompt is estimated at `prompt_tokens`."""
    response_format = (chat.model_extra or {}).get("response_format")
    json_schema = isinstance(response_format, dict) and response_format.get("type") == "json_schema"
    return Needs(vision=chat.has_images(), tools=chat.has_tools(), json_schema=json_schema,
                 tokens=prompt_tokens + (chat.requested_max_tokens() or 0))


def why_not(capabilities: Capabilities, needs: Needs) -> str | None:
    """Why a backend with these capabilities cannot serve the request, or None when it can."""
    if needs.vision and capabilities.vision is False:
        return "no vision (the request has images)"
    if needs.tools and capabilities.tools is False:
        return "no tools (the request has tools)"
    if needs.json_schema and capabilities.json_schema is False:
        return "no json_schema (the request asks for response_format json_schema)"
    window = capabilities.context_window
    if window is not None and needs.tokens > window:
        return f"context window {window} tokens < ~{needs.tokens} needed (prompt estimate + max_tokens)"
    return None
