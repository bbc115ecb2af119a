"""Envoy's bootstrap, generated from the semroute config: Envoy is the data plane, semroute's
processor (ext_proc) decides.

- One listener on the gateway port (HTTP/1.1 and HTTP/2, `codec_type: AUTO`), whose
  `ext_proc` filter sends each request's headers and buffered body to the processor
  (`failure_mode_allow: false`: no request passes undecided).
- The processor answers with the header `x-semroute-route` and `clear_route_cache`; the route
  with that exact value names the cluster. A route is one backend (`a`) or a failover pair
  (`a>b`): an aggregate cluster over the two, whose retry goes to the next priority
  (`previous_priorities`), i.e. to the decision's next candidate.
- One cluster per backend (TLS with SNI when its URL is https, its timeouts and outlier
  detection from the config). Its upstream filters run the processor once more per attempt,
  with the gRPC metadata naming the backend: the attempt gets that backend's path, model,
  reasoning switch and key, so a failover attempt is rewritten for the backend it goes to.
- The admin port serves Envoy's stats (`/stats/prometheus`); with OTEL_* set, Envoy traces
  (OpenTelemetry over OTLP/HTTP) and propagates the context to the processor.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import permutations
from urllib.parse import urlsplit

import yaml

from control.config import Backend, Config
from control.telemetry import otlp_traces_endpoint

ROUTE_HEADER = "x-semroute-route"
ATTEMPT_METADATA = ("x-semroute-stream", "attempt")  # gRPC metadata naming the per-attempt processor stream
ATTEMPT_HEADER = "x-semroute-attempt"  # the backend an attempt goes to, from its endpoint's metadata
PROCESSOR_CLUSTER = "semroute_processor"
TRACING_CLUSTER = "semroute_otlp"
RETRY_ON = "connect-failure,reset,refused-stream,5xx,retriable-status-codes"  # retried only before the first byte reaches the client


@dataclass(frozen=True)
class EnvoyPorts:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    admin_port: int = 9901
    processor_host: str = "127.0.0.1"
    processor_port: int = 50051


def cluster_name(backend: str) -> str:
    return f"backend_{backend}"


def route_value(candidates: tuple[str, ...]) -> str:
    """The header value naming a route: the first candidate, and the next one when there is one."""
    return ">".join(candidates[:2])


def bootstrap(config: Config, ports: EnvoyPorts) -> dict:
    clusters = [processor_cluster(ports)] + [backend_cluster(b, config) for b in config.backends]
    clusters += [failover_cluster(a, b) for a, b in permutations([b.name for b in config.backends], 2)]
    tracing = tracing_config()
    if tracing:
        clusters.append(tracing[1])
    return {
        "node": {"id": "semroute", "cluster": "semroute"},
        "admin": {"address": _address(ports.listen_host, ports.admin_port)},
        "static_resources": {"listeners": [listener(config, ports, tracing[0] if tracing else None)],
                             "clusters": clusters},
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {
            # A connection per client, many clients: Envoy's defaults cap neither, but say so.
            "overload.global_downstream_max_connections": 50000}}]},
    }


def render(config: Config, ports: EnvoyPorts) -> str:
    return yaml.safe_dump(bootstrap(config, ports), sort_keys=False)


# ---- listener -----------------------------------------------------------------------------

def listener(config: Config, ports: EnvoyPorts, tracing: dict | None) -> dict:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "semroute",
        "codec_type": "AUTO",  # HTTP/1.1 and HTTP/2 (prior knowledge) on one port
        "generate_request_id": True,
        "preserve_external_request_id": True,  # the client's x-request-id goes upstream, as with the gateway
        "stream_idle_timeout": "300s",
        "max_request_headers_kb": 64,
        "local_reply_config": local_replies(),
        "route_config": {"name": "semroute", "virtual_hosts": [
            {"name": "semroute", "domains": ["*"], "routes": routes(config)}]},
        "http_filters": [
            {"name": "envoy.filters.http.ext_proc", "typed_config": decision_filter(ports)},
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                              "suppress_envoy_headers": True}},  # no x-envoy-* to clients or backends
        ],
    }
    if tracing:
        hcm["tracing"] = tracing
    return {"name": "semroute", "address": _address(ports.listen_host, ports.listen_port),
            # the whole body is buffered for the processor: up to the config's limit, not Envoy's 1 MiB
            "per_connection_buffer_limit_bytes": config.limits.max_body_bytes,
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}


# Envoy's own refusals (the processor unreachable, no healthy backend, a timeout, a body over
# the buffer) in OpenAI's error shape. The processor's immediate responses (details
# "semroute_<code>") and direct responses are already in it and are left alone.
_LOCAL_REPLIES = (
    ("response.code_details.startsWith('ext_proc_error')", "the semroute processor is unavailable",
     "service_unavailable", "processor_unavailable"),
    ("response.code == 504", "no backend answered in time: %LOCAL_REPLY_BODY%", "upstream_error", "upstream_timeout"),
    ("response.code == 413", "request body is larger than the limit", "invalid_request_error", "request_too_large"),
    ("true", "no backend answered: %LOCAL_REPLY_BODY%", "upstream_error", "upstream_unavailable"),
)


def local_replies() -> dict:
    ours = "response.code_details.startsWith('semroute_') || response.code_details == 'direct_response'"
    return {"mappers": [{
        "filter": {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
            "expression": f"!({ours}) && ({condition})"}}},
        "body_format_override": {"content_type": "application/json", "json_format": {"error": {
            "message": message, "type": kind, "param": None, "code": code}}},
    } for condition, message, kind, code in _LOCAL_REPLIES]}


def decision_filter(ports: EnvoyPorts) -> dict:
    """The request's headers and whole body go to the processor; the answer's headers and body
    chunks too, streamed (each chunk forwarded as it comes) so usage is counted."""
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
        "grpc_service": {"envoy_grpc": {"cluster_name": PROCESSOR_CLUSTER}, "timeout": "30s"},
        "failure_mode_allow": False,
        "message_timeout": "10s",  # classification waits for Triton; the processor's own budget is shorter
        "processing_mode": {"request_header_mode": "SEND", "request_body_mode": "BUFFERED",
                            "response_header_mode": "SEND", "response_body_mode": "STREAMED",
                            "request_trailer_mode": "SKIP", "response_trailer_mode": "SKIP"},
        "mutation_rules": {"allow_all_routing": True},
        # A processor that is gone answers 500 in OpenAI's shape (local_reply_config would
        # apply to every local reply; this one is the processor's own).
        "status_on_error": {"code": 503},
    }


def routes(config: Config) -> list[dict]:
    names = [b.name for b in config.backends]
    out = [backend_route((a,), config) for a in names]
    out += [backend_route(pair, config) for pair in permutations(names, 2)]
    # Reached only when the processor set no route: it answers every request it does not route.
    out.append({"match": {"prefix": "/"}, "direct_response": {
        "status": 404, "body": {"inline_string": json.dumps({"error": {
            "message": "no route: the semroute processor routed nothing here", "type": "invalid_request_error",
            "param": None, "code": "not_found"}})}}})
    return out


def backend_route(candidates: tuple[str, ...], config: Config) -> dict:
    first = config.backend(candidates[0])
    cluster = cluster_name(first.name) if len(candidates) == 1 else failover_name(*candidates)
    retry = {"retry_on": RETRY_ON, "retriable_status_codes": [429],
             "num_retries": max(0, config.resilience.max_attempts - 1),
             "retry_back_off": {"base_interval": f"{max(config.resilience.backoff_s, 0.001):g}s",
                                "max_interval": f"{max(config.resilience.backoff_max_s, 0.001):g}s"}}
    if len(candidates) > 1:  # each retry goes to a priority not tried yet: the next candidate
        retry["retry_priority"] = {"name": "envoy.retry_priorities.previous_priorities", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
            "update_frequency": 1}}
        retry["num_retries"] = max(1, retry["num_retries"])
    return {
        "name": route_value(candidates),
        "match": {"prefix": "/", "headers": [{"name": ROUTE_HEADER, "string_match": {"exact": route_value(candidates)}}]},
        "route": {"cluster": cluster, "timeout": f"{first.timeout_s:g}s", "idle_timeout": f"{first.idle_timeout_s:g}s",
                  "auto_host_rewrite": True, "retry_policy": retry},
    }


# ---- clusters -----------------------------------------------------------------------------

def backend_cluster(backend: Backend, config: Config) -> dict:
    url = urlsplit(backend.base_url)
    https = url.scheme == "https"
    port = url.port or (443 if https else 80)
    cluster = {
        "name": cluster_name(backend.name),
        "type": "STRICT_DNS" if not _is_ip(url.hostname or "") else "STATIC",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": f"{backend.connect_timeout_s:g}s",
        "load_assignment": {"cluster_name": cluster_name(backend.name), "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": _address(url.hostname, port), "hostname": url.hostname},
             "metadata": {"filter_metadata": {"semroute": {"backend": backend.name}}}}]}]},
        "outlier_detection": {"consecutive_5xx": config.resilience.circuit.failures,
                              "consecutive_gateway_failure": config.resilience.circuit.failures,
                              "base_ejection_time": f"{config.resilience.circuit.cooldown_s:g}s",
                              "max_ejection_percent": 100},
        "typed_extension_protocol_options": attempt_options(),
    }
    if https:
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": url.hostname,
            "common_tls_context": {"validation_context": {
                "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"}}}}}
    return cluster


def attempt_options() -> dict:
    """Upstream filters, run per attempt (retries and failovers included): the endpoint's
    metadata names the backend (an aggregate cluster's attempt goes to one of its members),
    the processor rewrites path, model, reasoning and key for it, and the answer names it."""
    backend = "%UPSTREAM_METADATA(semroute:backend)%"
    return {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http_protocol_options": {}},
        "http_filters": attempt_filters(backend)}}


def attempt_filters(backend: str) -> list[dict]:
    return [
        {"name": "envoy.filters.http.header_mutation", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {
                "request_mutations": [{"append": {"header": {"key": ATTEMPT_HEADER, "value": backend},
                                                  "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}}],
                "response_mutations": [{"append": {"header": {"key": "x-semroute-model", "value": backend},
                                                   "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}}]}}},
        {"name": "envoy.filters.http.ext_proc", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": PROCESSOR_CLUSTER}, "timeout": "5s",
                             "initial_metadata": [{"key": ATTEMPT_METADATA[0], "value": ATTEMPT_METADATA[1]}]},
            "failure_mode_allow": False,
            "message_timeout": "5s",
            "processing_mode": {"request_header_mode": "SEND", "request_body_mode": "BUFFERED",
                                "response_header_mode": "SKIP", "response_body_mode": "NONE",
                                "request_trailer_mode": "SKIP", "response_trailer_mode": "SKIP"},
            "mutation_rules": {"allow_all_routing": True}}},
        {"name": "envoy.filters.http.upstream_codec", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}},
    ]


def failover_name(first: str, second: str) -> str:
    return f"failover_{first}_to_{second}"


def failover_cluster(first: str, second: str) -> dict:
    """An aggregate cluster: `first` is priority 0, `second` priority 1 (used when the first is
    ejected, or by a retry through previous_priorities)."""
    return {"name": failover_name(first, second), "connect_timeout": "5s", "lb_policy": "CLUSTER_PROVIDED",
            "typed_extension_protocol_options": attempt_options(),
            "cluster_type": {"name": "envoy.clusters.aggregate", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig",
                "clusters": [cluster_name(first), cluster_name(second)]}}}


def processor_cluster(ports: EnvoyPorts) -> dict:
    return {"name": PROCESSOR_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": PROCESSOR_CLUSTER, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": _address(ports.processor_host, ports.processor_port)}}]}]},
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}}}


def tracing_config() -> tuple[dict, dict] | None:
    """(the HCM's tracing block, the collector's cluster), when OTEL_* names a collector."""
    endpoint = otlp_traces_endpoint()
    if endpoint is None:
        return None
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    cluster = {"name": TRACING_CLUSTER, "type": "STRICT_DNS", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": TRACING_CLUSTER, "endpoints": [{"lb_endpoints": [
                   {"endpoint": {"address": _address(url.hostname, port)}}]}]}}
    tracing = {"provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
        "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
        "service_name": "semroute-envoy",
        "http_service": {"http_uri": {"uri": endpoint, "cluster": TRACING_CLUSTER, "timeout": "2s"}}}},
        "random_sampling": {"value": 100}}
    return tracing, cluster


def _address(host: str, port: int) -> dict:
    return {"socket_address": {"address": host, "port_value": port}}


def _is_ip(host: str) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
