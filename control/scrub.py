"""What leaves the gateway as telemetry carries no secrets and no prompt text.

Spans: query strings (`?api_key=…`, an email) are kept as their parameter names only, and
`user:pass@` is dropped from any URL or address attribute, whoever set it (our code, the
aiohttp instrumentation), by an exporter wrapper that sees every finished span. The debug
header (`x-semroute-debug`) masks the text of PII spans unless SEMROUTE_LOG_PROMPTS=1.
"""
from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.util.http import remove_url_credentials

MASK = "REDACTED"
QUERY_KEYS = {"url.query"}                                      # a bare query string
URL_KEYS = {"http.url", "http.target", "url.full", "http.request.url"}   # a URL or path with its query
ADDRESS_KEYS = {"server.address", "net.peer.name", "http.host", "net.host.name", "client.address"}


def mask_query(query: str) -> str:
    """Parameter names stay (they tell what was sent), values go."""
    return urlencode([(name, MASK) for name, _ in parse_qsl(query, keep_blank_values=True)], safe=MASK)


def scrub_url(url: str) -> str:
    parts = urlsplit(remove_url_credentials(url))
    netloc = parts.netloc.rpartition("@")[2]  # remove_url_credentials leaves "REDACTED:REDACTED@"
    return urlunsplit(parts._replace(netloc=netloc, query=mask_query(parts.query) if parts.query else ""))


def scrub_address(address: str) -> str:
    return address.rpartition("@")[2]


def scrub_attributes(attributes) -> dict:
    out = dict(attributes or {})
    for key, value in out.items():
        if not isinstance(value, str):
            continue
        if key in QUERY_KEYS:
            out[key] = mask_query(value)
        elif key in URL_KEYS:
            out[key] = scrub_url(value)
        elif key in ADDRESS_KEYS:
            out[key] = scrub_address(value)
    return out


def scrubbed(span: ReadableSpan) -> ReadableSpan:
    return ReadableSpan(name=span.name, context=span.context, parent=span.parent, resource=span.resource,
                        attributes=scrub_attributes(span.attributes), events=span.events, links=span.links,
                        kind=span.kind, status=span.status, start_time=span.start_time, end_time=span.end_time,
                        instrumentation_scope=span.instrumentation_scope)


class ScrubbingExporter(SpanExporter):
    """Wraps the real exporter: every span is scrubbed on its way out."""

    def __init__(self, inner: SpanExporter):
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([scrubbed(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def mask_pii_text(explanation: dict) -> dict:
    """The explanation with each PII span's text replaced by its type: the type and offsets
    say what was found, the text is the very data the span is about."""
    signals = explanation.get("signals")
    if not signals or not signals.get("pii"):
        return explanation
    pii = [{**span, "text": f"[{span['type']}]"} for span in signals["pii"]]
    return {**explanation, "signals": {**signals, "pii": pii}}
