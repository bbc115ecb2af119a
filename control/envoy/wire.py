"""The ext_proc messages the processor reads and writes, built in one place (protobuf is verbose)."""
from __future__ import annotations

import orjson
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext
from envoy.type.v3 import http_status_pb2

from control.protocol import APIError

OVERWRITE = base_pb2.HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD


def headers_of(http_headers: ext.HttpHeaders) -> dict[str, str]:
    """Lower-case names → values (Envoy sends raw_value; older builds `value`)."""
    return {h.key.lower(): (h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value)
            for h in http_headers.headers.headers}


def mutation(set_headers: dict[str, str] | None = None, remove: list[str] | tuple[str, ...] = ()) -> ext.HeaderMutation:
    return ext.HeaderMutation(
        set_headers=[base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, raw_value=v.encode()),
                                                append_action=OVERWRITE) for k, v in (set_headers or {}).items()],
        remove_headers=list(remove))


def common(set_headers: dict[str, str] | None = None, remove: list[str] | tuple[str, ...] = (),
           body: bytes | None = None, clear_route_cache: bool = False) -> ext.CommonResponse:
    response = ext.CommonResponse(header_mutation=mutation(set_headers, remove), clear_route_cache=clear_route_cache)
    if body is not None:
        response.body_mutation.body = body
    return response


def continue_request_headers(**kwargs) -> ext.ProcessingResponse:
    return ext.ProcessingResponse(request_headers=ext.HeadersResponse(response=common(**kwargs)))


def continue_request_body(**kwargs) -> ext.ProcessingResponse:
    return ext.ProcessingResponse(request_body=ext.BodyResponse(response=common(**kwargs)))


def continue_response_headers(**kwargs) -> ext.ProcessingResponse:
    return ext.ProcessingResponse(response_headers=ext.HeadersResponse(response=common(**kwargs)))


def continue_response_body(body: bytes | None = None) -> ext.ProcessingResponse:
    return ext.ProcessingResponse(response_body=ext.BodyResponse(response=common(body=body)))


def immediate(status: int, body: bytes, headers: dict[str, str] | None = None,
              details: str = "semroute_answer") -> ext.ProcessingResponse:
    """An answer from the processor itself: the request goes to no backend. `details` starts
    with "semroute_": Envoy's local-reply mappers leave such answers as they are."""
    return ext.ProcessingResponse(immediate_response=ext.ImmediateResponse(
        status=http_status_pb2.HttpStatus(code=status), body=body, headers=mutation(headers), details=details))


def error_response(err: APIError, headers: dict[str, str] | None = None) -> ext.ProcessingResponse:
    """An APIError in OpenAI's shape, as the aiohttp gateway answers it."""
    return immediate(err.status, orjson.dumps(err.body()),
                     {"content-type": "application/json", **err.headers, **(headers or {})},
                     details=f"semroute_{err.code or 'error'}")


def json_response(status: int, data: dict, headers: dict[str, str] | None = None) -> ext.ProcessingResponse:
    return immediate(status, orjson.dumps(data), {"content-type": "application/json", **(headers or {})})
