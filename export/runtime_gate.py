"""`semroute eval --compare fp32`: the decision gate for a faster CPU runtime (issue 18 item 2).

The eval prompts go through the real bundled Triton twice: once as served (the runtime under
test, config parameter `cpu_runtime`, model_repository/router/1/cpu_runtime.py, with the
exported `trim_padding`, row_runs.py) and once as the reference: ONNX Runtime fp32 with rows
run as sent, the computation before any of issue 18's fast paths. For each prompt the
decision core (control.decision.decide) decides under a gateway config (config/example.yaml
by default) from each path's signals; the gate is a statement about decisions and the model
card's metrics, not a tolerance on tensors:

- decisions (the backend chosen, or the block / refusal code) agree on >= 99.5% of prompts;
- every model-card metric (accuracy, F1, flag rates, routing scores ... in [0, 1]) moves by
  at most 0.5 points.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path

FP32 = "onnxruntime-fp32"  # the reference's runtime; the reference also runs rows as sent
ALIASES = {"fp32": FP32}
TRIMMED = "+trim"  # a path that cuts padding off its rows (model.py's trim_padding) is named <runtime>+trim
AGREEMENT_GOAL = 0.995
POINTS_GOAL = 0.5
# Leaves of metrics.json that are model-card metrics (fractions); counts, thresholds and
# confusion matrices are not.
METRIC_KEYS = frozenset({"accuracy", "macro_f1", "precision", "recall", "f1", "flagged", "with_spans", "weak_score",
                         "strong_score", "apgr", "cpt_50", "cpt_80", "share_at_calibrated_30pct", "auc_hard"})
SKIPPED_SECTIONS = ("meta", "goals", "long_inputs")


def cpu_runtime_module():
    """model_repository/router/1/cpu_runtime.py (it lives beside model.py, not in a package)."""
    from export.repository import backend_module

    return backend_module("cpu_runtime")


def is_runtime_comparison(compare) -> bool:
    """`--compare fp32` (or a runtime's name) rather than a metrics.json path."""
    return compare is not None and (str(compare) in ALIASES or str(compare) in cpu_runtime_module().RUNTIMES)


def runtime_under_test(requested: str | None) -> str:
    """--cpu-runtime, or what `auto` picks on this CPU."""
    module = cpu_runtime_module()
    return module.select_runtime(requested or module.AUTO, module.cpu_flags())


def route_utterances(config_path: Path) -> list[str]:
    from control.config import load_config

    return [u for route in load_config(config_path).routes for u in route.utterances]


def path_label(runtime: str, trim_padding: bool) -> str:
    return f"{runtime}{TRIMMED}" if trim_padding else runtime


def exported_trim_padding(model_dir: Path) -> bool:
    from export.triton_config import DEFAULT_TRIM_PADDING, served_parameters

    return served_parameters(model_dir).get("trim_padding", DEFAULT_TRIM_PADDING) == "1"


def runtime_repository(model_dir: Path, folder: Path, runtime: str, trim_padding: bool) -> Path:
    """A repository serving model_dir's router (ONNX linked, same config) with `cpu_runtime` and
    `trim_padding` set."""
    from google.protobuf import text_format

    from export.repository import COMMITTED_BACKEND_FILES
    from export.triton_config import CONFIG_FILE, ONNX_FILE, VERSION, parse_config

    router = folder / model_dir.name
    if folder.exists():
        shutil.rmtree(folder)  # Triton serves every folder in it
    (router / VERSION).mkdir(parents=True)
    (router / VERSION / ONNX_FILE).symlink_to((model_dir / VERSION / ONNX_FILE).resolve())
    for source in COMMITTED_BACKEND_FILES:
        shutil.copyfile(source, router / VERSION / source.name)
    config = parse_config((model_dir / CONFIG_FILE).read_text())
    config.parameters["cpu_runtime"].string_value = runtime
    config.parameters["trim_padding"].string_value = "1" if trim_padding else "0"
    (router / CONFIG_FILE).write_text(text_format.MessageToString(config))
    return folder


def classify_on(runtime: str, trim_padding: bool, model_dir: Path, texts: list[str], work: Path,
                classify_all) -> tuple[dict, str]:
    """Every text's signals from a private Triton whose router runs on `runtime`, and what it ran
    as; `classify_all(texts, url)` is the evaluation's (export.evaluate), passed in: no import back."""
    from control.tritonserver import TritonServer, free_ports

    label = path_label(runtime, trim_padding)
    repo = runtime_repository(model_dir, work / label, runtime, trim_padding)
    log = work / f"{label}.log"
    with TritonServer(repo, *free_ports(3), log_file=log) as server:
        return asyncio.run(classify_all(texts, server.grpc_url)), served_as(log)


def served_as(log: Path) -> str:
    """What model.py logged it runs on: e.g. `openvino-bf16 (OpenVINO ... bf16 requested, runs f32 ...),
    padding trimmed`."""
    import re

    text = log.read_text(errors="replace")
    found, padding = re.search(r"router: \S+ on (.+?), numpy", text), re.search(r"padding (trimmed|as sent)", text)
    if not found:
        return "unknown (no model.py line in the Triton log)"
    return f"{found[1]}, padding {padding[1]}" if padding else found[1]


class _Classified:
    """The classifier interface EmbeddingRoutes.prepare needs, answered from signals at hand."""

    def __init__(self, sig: dict):
        self.sig = sig

    async def classify(self, texts):
        return [self.sig[t] for t in texts]


def decisions(sig: dict, texts: list[str], config_path: Path, calibration: dict | None, work: Path) -> dict[str, str]:
    """text → what the decision core does with its signals: `backend:<name>` or `refused:<code>`.
    `sig` must hold the config's route utterances too (their embeddings come from the same path)."""
    from dataclasses import replace

    from control.config import load_config
    from control.decision import Blocked, PolicyContext, RequestFeatures, decide
    from control.protocol import APIError
    from control.embedding_routes import EmbeddingRoutes
    from modelspec.calibration import threshold_for

    config = load_config(config_path)
    strong = config.routing.strong
    threshold = threshold_for(calibration, strong.target_share) if strong and strong.target_share and calibration else None
    routes = EmbeddingRoutes(config.routes, cache_dir=work)  # a fresh cache: never the other path's embeddings
    asyncio.run(routes.prepare(_Classified(sig)))
    out = {}
    for text in dict.fromkeys(texts):
        signals = replace(sig[text], routes=routes.match(sig[text].embedding))
        # A/B splits draw from the text, so both paths draw alike.
        draw = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") / 2 ** 32
        try:
            decision = decide(signals, RequestFeatures(prompt=text, prompt_tokens=signals.read.tokens), config,
                              PolicyContext(strong_threshold=threshold, split_draw=draw))
            out[text] = f"backend:{decision.backend}"
        except Blocked as blocked:
            out[text] = f"refused:{blocked.code}"
        except APIError as err:
            out[text] = f"refused:{err.code}"
    return out


def metric_leaves(results: dict, prefix: str = "") -> dict[str, float]:
    """{dotted path: value} of every model-card metric in a metrics.json-shaped dict."""
    leaves = {}
    for key, value in results.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and path not in SKIPPED_SECTIONS:
            leaves.update(metric_leaves(value, path))
        elif key in METRIC_KEYS and isinstance(value, (int, float)) and value == value:  # NaN: no data
            leaves[path] = float(value)
    return leaves


def gate(fast: dict, base: dict, fast_decisions: dict, base_decisions: dict, runtime: str) -> dict:
    """The comparison: decision agreement and every metric side by side, with the verdict."""
    differing = [t for t in base_decisions if fast_decisions[t] != base_decisions[t]]
    agreement = 1 - len(differing) / max(len(base_decisions), 1)
    fast_leaves, base_leaves = metric_leaves(fast), metric_leaves(base)
    rows = [{"metric": k, FP32: base_leaves[k], runtime: fast_leaves[k],
             "points": round(100 * (fast_leaves[k] - base_leaves[k]), 3)} for k in base_leaves if k in fast_leaves]
    worst = max(rows, key=lambda r: abs(r["points"]), default=None)
    passed = agreement >= AGREEMENT_GOAL and (worst is None or abs(worst["points"]) <= POINTS_GOAL)
    changed = [{"text": t[:200], FP32: base_decisions[t], runtime: fast_decisions[t]} for t in differing[:50]]
    return {"runtime": runtime, "baseline": FP32, "prompts": len(base_decisions), "agreement": agreement,
            "agreement_goal": AGREEMENT_GOAL, "disagreements": len(differing), "changed_decisions": changed,
            "metrics": rows, "worst_metric": worst, "points_goal": POINTS_GOAL, "passed": passed}


def print_gate(report: dict) -> None:
    runtime = report["runtime"]
    width = max(len(FP32), len(runtime)) + 2
    print(f"\n{'metric':<72} {FP32:>{width}} {runtime:>{width}} {'points':>8}")
    for row in report["metrics"]:
        mark = "  <-- over 0.5" if abs(row["points"]) > POINTS_GOAL else ""
        print(f"{row['metric']:<72} {row[FP32]:>{width}.4f} {row[runtime]:>{width}.4f} {row['points']:>+8.2f}{mark}")
    worst = report["worst_metric"] or {"metric": "-", "points": 0.0}
    print(f"\ndecisions: {report['agreement']:.2%} of {report['prompts']} prompts agree "
          f"({report['disagreements']} differ; goal >= {AGREEMENT_GOAL:.1%})")
    print(f"largest metric change: {worst['points']:+.2f} points ({worst['metric']}; goal within {POINTS_GOAL})")
    for name, how in report.get("served_as", {}).items():
        print(f"{name} served as: {how}")
    print(f"gate: {'PASSED' if report['passed'] else 'NOT passed'} for {runtime} against {FP32}")


def write_gate(report: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "runtime_gate.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return path
