"""A real OTLP/HTTP trace receiver for tests: takes protobuf (the Python SDK) and JSON (Triton)."""
from __future__ import annotations

import base64
import json

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.thread_server import ThreadedApp


class OtlpReceiver(ThreadedApp):
    """Collects spans as dicts: service, name, trace_id, span_id, parent_span_id (hex), attributes."""

    def __init__(self):
        super().__init__()
        self.spans: list[dict] = []
        self.content_types: set[str] = set()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self._traces)

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.content_types.add(request.content_type)
        if request.content_type == "application/json":
            self.spans += spans_from_json(json.loads(body))
        else:
            message = ExportTraceServiceRequest()
            message.ParseFromString(body)
            self.spans += spans_from_proto(message)
        return web.json_response({})


def _service(resource_attributes) -> str:
    for attr in resource_attributes:
        if attr["key"] == "service.name":
            return attr["value"].get("stringValue", "")
    return ""


def _hex_id(value: str) -> str:
    """OTLP JSON ids are hex by the spec; accept base64 too (proto3 JSON mapping of bytes)."""
    if not value:
        return ""
    try:
        int(value, 16)
        return value.lower()
    except ValueError:
        return base64.b64decode(value).hex()


def spans_from_json(payload: dict) -> list[dict]:
    spans = []
    for rs in payload.get("resourceSpans", []):
        service = _service(rs.get("resource", {}).get("attributes", []))
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                spans.append({"service": service, "name": s["name"], "trace_id": _hex_id(s["traceId"]),
                              "span_id": _hex_id(s["spanId"]), "parent_span_id": _hex_id(s.get("parentSpanId", "")),
                              "attributes": {a["key"]: next(iter(a["value"].values()), None) for a in s.get("attributes", [])}})
    return spans


def spans_from_proto(message: ExportTraceServiceRequest) -> list[dict]:
    from google.protobuf.json_format import MessageToDict

    spans = []
    for rs in message.resource_spans:
        service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
        for ss in rs.scope_spans:
            for s in ss.spans:
                attributes = {a.key: next(iter(MessageToDict(a.value).values()), None) for a in s.attributes}
                spans.append({"service": service, "name": s.name, "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                              "parent_span_id": s.parent_span_id.hex(), "attributes": attributes})
    return spans
