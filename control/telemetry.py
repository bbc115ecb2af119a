"""Tracing and structured logs, configured by the standard OTEL_* environment variables.

Traces export over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set;
otherwise no SDK is installed and incoming `traceparent` headers still propagate to Triton
and the LLM backends. No prompt text ever goes into spans, and URLs in spans lose their
credentials and query values (control/scrub.py); logs carry it only when
SEMROUTE_LOG_PROMPTS=1.
"""
from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit

from opentelemetry import propagate, trace

SERVICE_NAME = "semroute-gateway"
TRACER = trace.get_tracer("semroute")
log = logging.getLogger("semroute.telemetry")


def otlp_traces_endpoint() -> str | None:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or os.environ.get("OTEL_TRACES_EXPORTER") == "none":
        return None
    explicit = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return explicit or (f"{base.rstrip('/')}/v1/traces" if base else None)


def setup_tracing(service_name: str = SERVICE_NAME):
    """Install the SDK with an OTLP/HTTP exporter when an endpoint is configured; else None."""
    if otlp_traces_endpoint() is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from control.scrub import ScrubbingExporter

    os.environ.setdefault("OTEL_SERVICE_NAME", service_name)  # Resource.create reads it
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(ScrubbingExporter(OTLPSpanExporter())))  # no secrets in URLs
    trace.set_tracer_provider(provider)
    return provider


def instrument_aiohttp_server() -> None:
    """OpenTelemetry's aiohttp server instrumentation: every web.Application created afterwards
    gets a SERVER span per request, continuing the client's W3C traceparent."""
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    instrumentor = AioHttpServerInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=trace.get_tracer_provider())


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context as W3C headers (traceparent, tracestate)."""
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def triton_trace_args(service_name: str = "semroute-triton") -> list[str]:
    """tritonserver flags sending its spans (OTLP/HTTP JSON) to the same collector.

    rate=0: Triton traces only requests that carry a traceparent, i.e. ours.
    """
    endpoint = otlp_traces_endpoint()
    if endpoint is None:
        return []
    url = urlsplit(endpoint)
    return ["--trace-config", "mode=opentelemetry",
            "--trace-config", f"opentelemetry,url={url.netloc}{url.path or '/v1/traces'}",
            "--trace-config", "rate=0", "--trace-config", "level=TIMESTAMPS",
            "--trace-config", f"opentelemetry,resource=service.name={service_name}"]


def setup_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr (SEMROUTE_LOG_FORMAT=text for people reading a terminal)."""
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler()
    if os.environ.get("SEMROUTE_LOG_FORMAT", "json") == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def log_prompts() -> bool:
    return os.environ.get("SEMROUTE_LOG_PROMPTS") == "1"
