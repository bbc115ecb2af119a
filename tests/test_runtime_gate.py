"""`semroute eval --compare fp32` (export/runtime_gate.py, issue 18 item 2): the verdict's rules,
and one real run of the CLI on a few eval prompts through two private Tritons."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from export import data
from export.runtime_gate import FP32, gate, is_runtime_comparison, metric_leaves

REPO = Path(__file__).resolve().parents[1]


def results(accuracy: float) -> dict:
    """A metrics.json-shaped dict: one metric, and leaves that are not metrics."""
    return {"domain": {"mmlu": {"n": 1000, "accuracy": accuracy, "confusion": [[1, 0], [0, 1]]}},
            "jailbreak": {"recall": {"jbb": {"n": 10, "flagged": 0.9, "threshold": 0.5}}},
            "long_inputs": {"chunked": 3}, "meta": {"texts": 1000}}


def outcomes(differing: int, total: int = 1000) -> tuple[dict, dict]:
    base = {f"prompt {i}": "backend:ollama" for i in range(total)}
    fast = {**base, **{f"prompt {i}": "refused:jailbreak_detected" for i in range(differing)}}
    return fast, base


def test_only_model_card_metrics_count():
    assert metric_leaves(results(0.8)) == {"domain.mmlu.accuracy": 0.8, "jailbreak.recall.jbb.flagged": 0.9}


@pytest.mark.parametrize(("differing", "passed"), [(5, True), (6, False)])
def test_decisions_must_agree_on_995_in_1000(differing, passed):
    report = gate(results(0.8), results(0.8), *outcomes(differing), "openvino-bf16")
    assert report["passed"] is passed and report["disagreements"] == differing
    assert report["changed_decisions"][0] == {"text": "prompt 0", FP32: "backend:ollama", "openvino-bf16": "refused:jailbreak_detected"}


@pytest.mark.parametrize(("accuracy", "passed"), [(0.805, True), (0.806, False), (0.794, False)])
def test_every_metric_within_half_a_point(accuracy, passed):
    report = gate(results(accuracy), results(0.8), *outcomes(0), "openvino-bf16")
    assert report["passed"] is passed
    assert report["worst_metric"]["metric"] == "domain.mmlu.accuracy"


def test_compare_takes_a_runtime_or_a_metrics_file():
    assert is_runtime_comparison("fp32") and is_runtime_comparison("onnxruntime-fp32")
    assert not is_runtime_comparison("export/model_card/metrics.json") and not is_runtime_comparison(None)


def test_the_cli_gates_a_runtime_on_real_prompts_through_two_tritons(model_repository, tmp_path):
    try:
        root = data.resolve_data_dir()
    except (FileNotFoundError, ValueError) as exc:
        pytest.skip(f"staged eval data not found (set SEMROUTE_DATA_DIR): {exc}")
    out = tmp_path / "gate"
    run = subprocess.run([sys.executable, "-m", "control.cli", "eval", "--compare", "fp32", "--cpu-runtime", "openvino-fp32",
                          "--limit", "1", "--data-dir", str(root), "--output-dir", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=900, env=os.environ.copy())
    assert run.returncode == 0, run.stderr[-3000:]
    assert "gate: PASSED for openvino-fp32+trim against onnxruntime-fp32" in run.stdout  # trimmed, against rows as sent
    report = json.loads((out / "runtime_gate.json").read_text())
    assert report["prompts"] > 20 and report["agreement"] == 1.0
    assert "runs f32" in report["served_as"]["openvino-fp32+trim"] and report["served_as"]["openvino-fp32+trim"].endswith("padding trimmed")
    assert "ONNX Runtime" in report["served_as"][FP32] and report["served_as"][FP32].endswith("padding as sent")
    assert {r.split(":")[0] for r in report["fp32_outcomes"]} == {"backend", "refused"}  # routes and blocks both seen
    fast, base = (json.loads((d / "metrics.json").read_text()) for d in (out, out / "fp32"))
    assert fast.keys() == base.keys() and fast["meta"]["cpu_runtime"] == "openvino-fp32" and fast["meta"]["trim_padding"]
    assert base["meta"]["cpu_runtime"] == FP32 and not base["meta"]["trim_padding"]
    assert len(report["metrics"]) > 100
