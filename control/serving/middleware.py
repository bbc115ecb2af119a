"""Middlewares every request passes, and the bridge from an aiohttp request to the pipeline's context."""
from __future__ import annotations

import logging
import uuid

from aiohttp import web

from control import metrics, redact
from control.auth import lease_of
from control.limits import answer_and_close
from control.protocol import APIError
from control.protocols import anthropic
from control.serving.context import RequestContext

log = logging.getLogger("semroute.gateway")
CHAT_PATH = "/v1/chat/completions"
API_PATHS = {CHAT_PATH: "chat", "/v1/messages": "messages", "/v1/responses": "responses",
             "/v1/completions": "completions", "/v1/embeddings": "embeddings"}
NO_LABELS = {"backend": "none", "category": "none", "task": "none", "rule": "none", "api": "chat"}
LABELS = web.RequestKey("labels", dict)  # the request counter's labels, once a chat request is routed
REQUEST_ID = web.RequestKey("request_id", str)


@web.middleware
async def count_requests_middleware(request: web.Request, handler):
    """semroute_requests_total for every API request with its final status: refusals before a
    decision (401, 429, 400, 404, 403 blocks) count with "none" labels, so error panels see them."""
    response = await handler(request)  # errors_middleware, inside, has made every failure a response
    api = API_PATHS.get(request.path)
    if api is not None:
        labels = request.get(LABELS) or {**NO_LABELS, "api": api}
        metrics.REQUESTS.labels(**labels, status=str(response.status)).inc()
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler):
    # A client's id is echoed and logged: capped, so it cannot blow up headers or log lines.
    request[REQUEST_ID] = request.headers.get("x-request-id", "")[:128] or uuid.uuid4().hex
    try:
        return await handler(request)
    except APIError as err:
        err.message = redact.redact(err.message)
        response = web.json_response(error_body(request, err), status=err.status,
                                     headers={**err.headers, "x-request-id": request[REQUEST_ID]})
        return await answer_and_close(request, response) if err.status == 408 else response  # 408: a stalled body
    except web.HTTPException as exc:  # unknown path, wrong method, body too large
        err = APIError(exc.status, exc.reason, code=exc.reason.lower().replace(" ", "_"))
        return web.json_response(error_body(request, err), status=exc.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        err = APIError(500, "internal error in the gateway", type="server_error", code="internal_error")
        return web.json_response(error_body(request, err), status=500)


def error_body(request: web.Request, err: APIError) -> dict:
    """The error in the shape of the API asked: Anthropic's on /v1/messages, else OpenAI's."""
    if API_PATHS.get(request.path) == "messages":
        return anthropic.error_body(err.status, err.message)
    return err.body()


def context_of(request: web.Request) -> RequestContext:
    """What the pipeline needs of this request (the middlewares above have set its id and lease)."""
    return RequestContext(request_id=request.get(REQUEST_ID, ""), lease=lease_of(request),
                          session_id=request.headers.get("x-session-id"),
                          debug=request.headers.get("x-semroute-debug") == "1")
