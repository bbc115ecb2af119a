"""The shipped dashboard and scrape config refer only to metrics the gateway really exports."""
from __future__ import annotations

import json
import re
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).parents[1] / "observability"
METRIC = re.compile(r"\b(semroute_[a-z_]+)")
TRITON_METRIC = re.compile(r"\b(nv_[a-z_]+)")  # Triton's own, from its metrics port
SUFFIXES = ("_bucket", "_count", "_sum")


def family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def exported_families(metrics_text: str) -> set[str]:
    """Metric families announced on /metrics (counters are announced without their _total)."""
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name + "_total" if kind == "counter" and not name.endswith("_total") else name)
    return names


def triton_families(metrics_text: str) -> set[str]:
    """Triton's families are announced by their sample names (counters keep no hidden _total)."""
    return {line.split()[2] for line in metrics_text.splitlines() if line.startswith("# TYPE ")}


def test_dashboard_queries_name_exported_metrics(gateway, triton):
    dashboard = json.loads((ROOT / "grafana" / "semroute-dashboard.json").read_text())
    exported = exported_families(requests.get(f"{gateway.url}/metrics", timeout=5).text)
    exported |= triton_families(requests.get(triton.metrics_url, timeout=5).text)
    assert len(dashboard["panels"]) >= 10
    for panel in dashboard["panels"]:
        exprs = [t["expr"] for t in panel["targets"]]
        used = {family(m) for e in exprs for m in METRIC.findall(e) + TRITON_METRIC.findall(e)}
        assert used, f"panel {panel['title']!r} queries no semroute or Triton metric"
        missing = used - exported
        assert not missing, f"panel {panel['title']!r} uses metrics neither the gateway nor Triton exports: {missing}"


def test_dashboard_covers_what_operators_ask_for(gateway):
    exprs = " ".join(t["expr"] for p in json.loads((ROOT / "grafana" / "semroute-dashboard.json").read_text())["panels"]
                     for t in p["targets"])
    for needed in ("semroute_requests_total", "semroute_decision_seconds_bucket", "semroute_cost_usd_total",
                   "semroute_saving_usd_total", "histogram_quantile(0.99", "semroute_blocked_total",
                   "semroute_cache_requests_total", "nv_inference_queue_duration_us",
                   "nv_inference_compute_infer_duration_us"):
        assert needed in exprs


def test_prometheus_config_scrapes_gateway_and_triton():
    config = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs == {"semroute-gateway": ["localhost:8080"], "semroute-triton": ["localhost:8102"]}


def test_access_log_is_json_with_ids_and_no_prompt(gateway, client_prompt="Tell me a secret recipe for pancakes"):
    resp = requests.post(f"{gateway.url}/v1/chat/completions", timeout=20, headers={"x-request-id": "req-obs-1"},
                         json={"model": "auto", "messages": [{"role": "user", "content": client_prompt}]})
    assert resp.status_code == 200 and resp.headers["x-request-id"] == "req-obs-1"
    lines = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
    entry = next(line for line in lines if line.get("request_id") == "req-obs-1")
    assert entry["message"] == "chat request" and entry["status"] == 200 and entry["backend"]
    assert "prompt" not in entry and "pancakes" not in gateway.log()


def requests_total(gateway, status: str) -> float:
    """semroute_requests_total of requests refused before any decision, for one status."""
    text = requests.get(f"{gateway.url}/metrics", timeout=5, headers=getattr(gateway, "metrics_headers", {})).text
    sample = f'semroute_requests_total{{api="chat",backend="none",category="none",rule="none",status="{status}",task="none"}} '
    return next((float(line[len(sample):]) for line in text.splitlines() if line.startswith(sample)), 0.0)


def test_requests_total_counts_refusals_with_their_status(gateway):
    before = {s: requests_total(gateway, s) for s in ("400", "404")}
    url = f"{gateway.url}/v1/chat/completions"
    assert requests.post(url, data=b"{not json", timeout=10, headers={"Content-Type": "application/json"}).status_code == 400
    unknown = requests.post(url, timeout=10, json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert requests_total(gateway, "400") == before["400"] + 1
    assert requests_total(gateway, "404") == before["404"] + 1
