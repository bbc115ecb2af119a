"""Request bodies (already read as JSON within the limits) to validated requests, with the
prompt's estimated tokens; every refusal is a 400 in OpenAI's error shape."""
from __future__ import annotations

from pydantic import BaseModel, ValidationError

from control.auth import estimate_tokens
from control.limits import Limits, check_messages
from control.protocol import APIError, ChatCompletionRequest, RouteRequest, validation_error


def parse_model(model: type[BaseModel], body: dict):
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


def parse_route(body: dict) -> ChatCompletionRequest:
    """A /v1/route body as the chat request it stands for."""
    route_request = parse_model(RouteRequest, body)
    try:
        return route_request.as_chat()
    except ValidationError as exc:  # a parameter out of OpenAI's range
        raise validation_error(exc) from None
    except ValueError as exc:
        raise APIError(400, str(exc), code="invalid_request") from None


def prompt_tokens(chat: ChatCompletionRequest, limits: Limits) -> int:
    """The prompt's estimated tokens, once its messages are within the limits."""
    return estimate_tokens(check_messages([m.text() for m in chat.messages], limits))
