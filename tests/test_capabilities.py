"""Capabilities: unknown means allowed; a declared lack or a too small context window refuses."""
import pytest

from control.capabilities import Capabilities, Needs, needs_of, why_not
from control.protocol import ChatCompletionRequest

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.mark.parametrize("capabilities,needs,refused", [
    ({}, Needs(vision=True, tools=True, json_schema=True, tokens=10**6), None),  # nothing declared: allowed
    ({"vision": False}, Needs(vision=True), "no vision"),
    ({"vision": False}, Needs(tools=True), None),
    ({"tools": False}, Needs(tools=True), "no tools"),
    ({"json_schema": False}, Needs(json_schema=True), "no json_schema"),
    ({"context_window": 1000}, Needs(tokens=1000), None),
    ({"context_window": 1000}, Needs(tokens=1001), "context window 1000"),
])
def test_why_not(capabilities, needs, refused):
    why = why_not(Capabilities(**capabilities), needs)
    assert (why is None) if refused is None else why.startswith(refused)


def test_needs_of_a_request():
    chat = ChatCompletionRequest.model_validate({
        "model": "auto", "max_tokens": 500, "tools": [{"type": "function", "function": {"name": "f"}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, IMAGE]}]})
    assert needs_of(chat, 100) == Needs(vision=True, tools=True, json_schema=True, tokens=600)
    plain = ChatCompletionRequest.model_validate({"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert needs_of(plain, 3) == Needs(tokens=3)
