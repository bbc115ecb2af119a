"""`semroute eval`: the model as served (Triton, through control.signals.Classifier exactly as
the gateway calls it) on every held-out set under <data>/eval, plus the held-out Dolly split
of the training data. Writes <output_dir>/metrics.json, report.md and routing.svg.

Nothing here feeds back into training: thresholds come from the weights' metadata (chosen on
training data), and eval/ only ever produces numbers.

A composition root, like control/cli.py and control/up.py: the one export/ module that imports
control/ (the classifier and the Triton launcher), to run the model exactly as served. No
other export/ module may (tests/test_architecture.py).
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

from control.signals import Classifier
from control.tritonserver import TritonServer, free_ports
from export import data, metrics, task_data
from export.eval_sets import NO_PII_SETS, load_sets
from export.model import DEFAULT_WEIGHTS, read_weights_meta
from export.report import write_outputs
from export.repository import build_repository
from modelspec import labels
from modelspec.calibration import threshold_for
from export.runtime_gate import (FP32, classify_on, decisions, exported_trim_padding, gate, is_runtime_comparison, path_label,
                                 print_gate, route_utterances, runtime_under_test, write_gate)

BATCH = 32
JAILBREAK_THRESHOLD = 0.5   # used when the weights carry no threshold chosen on training data
SWEEP = (0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99)


async def classify_all(texts: list[str], triton_url: str) -> dict[str, object]:
    """Each distinct text classified once, BATCH texts per call, a few calls in flight."""
    from tqdm import tqdm

    clf = Classifier(triton_url)
    await clf.start()
    uniq = list(dict.fromkeys(texts))
    out: dict[str, object] = {}
    sem = asyncio.Semaphore(4)
    bar = tqdm(total=len(uniq), desc="classify via Triton", unit="text")

    async def one(batch):
        async with sem:
            res = await clf.classify(batch)
        out.update(zip(batch, res))
        bar.update(len(batch))

    try:
        await asyncio.gather(*(one(uniq[i:i + BATCH]) for i in range(0, len(uniq), BATCH)))
    finally:
        bar.close()
        await clf.close()
    return out


def label_metrics(rows, sig, field: str) -> dict:
    """Accuracy, macro-F1 and confusion of the top `field` ("domain" or "task") label."""
    names = labels.DOMAINS if field == "domain" else labels.TASKS
    y = [names.index(r[field]) for r in rows]
    p = [names.index(getattr(sig[r["text"]], f"top_{field}")[0]) for r in rows]
    n = len(names)
    return {"n": len(rows), "accuracy": metrics.accuracy(y, p), "macro_f1": metrics.macro_f1(y, p, n),
            "confusion": metrics.confusion(y, p, n).tolist()}


def flag_rate(rows, sig, threshold) -> dict:
    probs = np.array([sig[r["text"]].jailbreak_prob for r in rows])
    return {"n": len(rows), "flagged": float((probs >= threshold).mean()) if len(rows) else float("nan"),
            "threshold": threshold}


def pii_metrics(rows, sig) -> dict:
    gold = [[_strip(r["text"], s) for s in r["pii"]] for r in rows]
    pred = [[_strip(r["text"], (s.start, s.end, s.type)) for s in sig[r["text"]].pii] for r in rows]
    exact = metrics.span_prf(gold, pred, labels.PII_TYPES)
    # lenient: a predicted span counts when it overlaps a gold span of the same type
    lenient_pred = [[next((g for g in gs if g[2] == p[2] and p[0] < g[1] and p[1] > g[0]), p) for p in ps]
                    for gs, ps in zip(gold, pred)]
    return {"n": len(rows), "exact": exact, "overlap": metrics.span_prf(gold, lenient_pred, labels.PII_TYPES)}


def _strip(text: str, span) -> tuple[int, int, str]:
    """Spans compared without surrounding white space or trailing punctuation."""
    s, e, t = span
    while s < e and not text[s].isalnum():
        s += 1
    while e > s and not text[e - 1].isalnum():
        e -= 1
    return (s, e, t)


def routing(rows, sig, calib: dict | None) -> dict:
    p = [sig[r["text"]].strong_prob for r in rows]
    res = metrics.routing_metrics(p, [r["weak"] for r in rows], [r["strong"] for r in rows])
    if calib:

        t = threshold_for(calib, 0.3)
        res["share_at_calibrated_30pct"] = float((np.array(p) >= t).mean())
    return res


def compute(sets: dict[str, list[dict]], sig: dict, meta: dict, config_path: Path | None = None) -> dict:
    thr = float(meta.get("jailbreak_threshold", JAILBREAK_THRESHOLD))
    calib = meta.get("calibration")
    benign = [s for s in ("alpaca_eval", "mt_bench", "arena_hard_v0_1", "arena_hard_v2", "vllm_sr_handwritten",
                          "dolly_heldout", "mmlu_eval_half") if s in sets]
    out = {
        "domain": {k: label_metrics(sets[k], sig, "domain") for k in ("mmlu_eval_half", "vllm_sr_handwritten", "vllm_sr_domain_cases")},
        "task": {k: label_metrics(sets[k], sig, "task") for k in ("arena_hard_v2", "dolly_heldout")},
        "jailbreak": {
            "recall": {k: flag_rate(sets[k], sig, thr) for k in ("jailbreakbench", "simple_safety_tests",
                                                                  "giskard_prompt_injections", "xstest_unsafe", "vllm_sr_jailbreak_cases")},
            "false_positive_rate": {"xstest_safe": flag_rate(sets["xstest_safe"], sig, thr),
                                    **{f"benign:{k}": flag_rate(sets[k], sig, thr) for k in benign}},
            "jailbreakbench_by_method": {m: flag_rate([r for r in sets["jailbreakbench"] if r["method"] == m], sig, thr)
                                         for m in sorted({r["method"] for r in sets["jailbreakbench"]})},
        },
        "pii": pii_metrics(sets["presidio_synth_v2"], sig),
        "routing": {k: routing(sets[k], sig, calib) for k in ("routellm_mmlu_eval_half", "routellm_gsm8k_eval_half", "mt_bench")},
    }
    all_benign = [r for k in benign for r in sets[k]]
    out["jailbreak"]["false_positive_rate"]["benign_all"] = flag_rate(all_benign, sig, thr)
    # the recall / false-positive trade-off at other thresholds: reported, never used to pick one
    sweep_sets = {**{k: sets[k] for k in out["jailbreak"]["recall"]}, "xstest_safe": sets["xstest_safe"], "benign_all": all_benign}
    out["jailbreak"]["threshold_sweep"] = {str(t): {k: flag_rate(v, sig, t)["flagged"] for k, v in sweep_sets.items()}
                                           for t in SWEEP}
    out["safety"] = safety_metrics(sets, sig, safety_thresholds(config_path))
    out["pii"]["prompts_with_spans"] = {k: span_rate(sets[k], sig) for k in (*NO_PII_SETS, "sharegpt")}
    out["domain"].update({k: label_metrics(sets[k], sig, "domain") for k in ("mmlu_pro_eval_half", "liveqa_med")})
    out["task"]["codealpaca"] = label_metrics(sets["codealpaca"], sig, "task")
    belle = [{**r, "task": task_data.BELLE_TASKS[r["belle_task"]]} for r in sets["belle_eval_zh"] if r["belle_task"] in task_data.BELLE_TASKS]
    out["task"]["belle_eval_zh"] = label_metrics(belle, sig, "task")
    out["routing"]["mmlu_pro_eval_half"] = difficulty_auc(sets["mmlu_pro_routing"], sig)
    read = [sig[t].read for t in {r["text"] for rows in sets.values() for r in rows}]
    out["long_inputs"] = {"texts": len(read), "chunked": int(sum(r.chunks > 1 for r in read)),
                          "max_chunks": int(max(r.chunks for r in read)), "chunk_tokens": read[0].chunk_tokens,
                          "how": "texts over chunk_tokens are read in consecutive chunks; class and strong probabilities "
                                 "are averaged by chunk length, jailbreak takes the worst chunk, PII spans keep offsets"}
    return out


# Safety sets: which signal counts. Attacks on the model are the jailbreak head's; harmful
# requests and benign look-alikes are judged by what the gateway does: block on either signal.
JAILBREAK_SETS = ("jailbreakbench", "tensor_trust", "giskard_prompt_injections", "vllm_sr_jailbreak_cases")
HARMFUL_SETS = ("simple_safety_tests", "xstest_unsafe", "sorry_bench", "do_not_answer", "malicious_instruct")
BENIGN_SETS = ("sharegpt", "alpaca_noinput", "xstest_safe", "oktest", "belle_eval_zh", "instructionwild_zh")


def safety_thresholds(config_path: Path | None) -> dict:
    """The block thresholds of a gateway config (routing.safety); the example config by default."""
    import yaml

    path = Path(config_path or Path(__file__).resolve().parents[1] / "config" / "example.yaml")
    safety = (yaml.safe_load(path.read_text()).get("routing") or {}).get("safety") or {}
    return {"config": str(path), "jailbreak": safety.get("jailbreak_threshold"), "harmful": safety.get("harmful_threshold")}


def _blocked(s, thr: dict, which: str = "either") -> bool:
    jb = thr["jailbreak"] is not None and s.jailbreak_prob >= thr["jailbreak"]
    harmful = getattr(s, "harmful_prob", None)
    hf = thr["harmful"] is not None and harmful is not None and harmful >= thr["harmful"]
    return jb if which == "jailbreak" else (jb or hf)


def safety_metrics(sets, sig, thr: dict) -> dict:
    """Share of each set the config's thresholds would block (recall on attacks and harmful
    requests, false-positive rate on benign prompts)."""
    def rate(name, which="either"):
        rows = sets[name]
        return {"n": len(rows), "flagged": float(np.mean([_blocked(sig[r["text"]], thr, which) for r in rows]))}
    return {"thresholds": thr,
            "jailbreak_recall": {k: rate(k, "jailbreak") for k in JAILBREAK_SETS},
            "harmful_recall": {k: rate(k) for k in HARMFUL_SETS},
            "benign_flagged": {k: rate(k) for k in BENIGN_SETS},
            "benign_jailbreak_flagged": {k: rate(k, "jailbreak") for k in ("sharegpt", "alpaca_noinput")}}


def span_rate(rows, sig) -> dict:
    with_spans = [r["text"] for r in rows if sig[r["text"]].pii]
    return {"n": len(rows), "with_spans": len(with_spans) / max(len(rows), 1)}


def difficulty_auc(rows, sig) -> dict:
    """How well strong_prob ranks the questions most models fail (solved by under half)."""
    hard = np.array([r["solved_share"] < 0.5 for r in rows])
    return {"n": len(rows), "hard_share": float(hard.mean()),
            "auc_hard": metrics.roc_auc(hard, np.array([sig[r["text"]].strong_prob for r in rows]))}


def run_eval(args) -> int:
    root = data.resolve_data_dir(getattr(args, "data_dir", None))
    weights = Path(getattr(args, "weights", None) or DEFAULT_WEIGHTS)
    meta = read_weights_meta(weights) if weights.exists() else {}
    sets = load_sets(root, getattr(args, "limit", None))
    texts = [r["text"] for rows in sets.values() for r in rows]
    if is_runtime_comparison(getattr(args, "compare", None)):  # `--compare fp32`: the CPU runtime's decision gate
        return run_gate(args, sets, texts, meta, weights, root)
    started = time.time()
    with _triton(args, weights) as url:
        sig = asyncio.run(classify_all(texts, url))
    results = compute(sets, sig, meta, getattr(args, "config", None))
    results["meta"] = _meta(url, meta, weights, started, texts, args, root)
    out_dir = Path(getattr(args, "output_dir", None) or "export/model_card")
    compare = json.loads(Path(args.compare).read_text()) if getattr(args, "compare", None) else None
    write_outputs(results, meta, out_dir, compare)
    print(f"wrote {out_dir}/metrics.json, report.md, routing.svg", file=sys.stderr)
    return 0


def _meta(triton_url: str, meta: dict, weights: Path, started: float, texts: list[str], args, root: Path) -> dict:
    return {"triton_url": triton_url, "weights": str(weights), "weights_version": meta.get("version"),
            "weights_sha256": data.sha256_file(weights) if weights.exists() else None,
            "classify_seconds": round(time.time() - started, 1), "texts": len(set(texts)),
            "limit": getattr(args, "limit", None), "data_dir": str(root)}


def run_gate(args, sets: dict, texts: list[str], meta: dict, weights: Path, root: Path) -> int:
    """`--compare fp32` (export/runtime_gate.py): both CPU runtimes, each on its own private
    Triton, one after the other; prints the gate and writes runtime_gate.json beside both
    metrics.json (the runtime under test's in --output-dir, fp32's in its fp32/)."""
    import shutil
    import tempfile
    from collections import Counter

    runtime = runtime_under_test(getattr(args, "cpu_runtime", None))
    config_path = Path(getattr(args, "config", None) or Path(__file__).resolve().parents[1] / "config" / "example.yaml")
    model_dir = build_repository(weights, Path(".cache/eval_repository"))
    out_dir = Path(getattr(args, "output_dir", None) or "export/model_card")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="semroute-gate-"))  # this run's Triton repositories only
    classified = list(dict.fromkeys(texts + route_utterances(config_path)))
    trimmed = exported_trim_padding(model_dir)
    served_path, reference = path_label(runtime, trimmed), path_label(FP32, False)
    results, decided, served = {}, {}, {}
    # Once when the path under test is the reference itself (fp32, rows as sent).
    for label, (name, trim) in {served_path: (runtime, trimmed), reference: (FP32, False)}.items():
        started = time.time()
        sig, served[label] = classify_on(name, trim, model_dir, classified, work, classify_all)
        results[label] = compute(sets, sig, meta, config_path)
        served_by = f"a private Triton, cpu_runtime {name}, padding {'trimmed' if trim else 'as sent'}"
        results[label]["meta"] = {**_meta(served_by, meta, weights, started, texts, args, root),
                                  "cpu_runtime": name, "trim_padding": trim}
        decided[label] = decisions(sig, texts, config_path, meta.get("calibration"), work / f"{label}-routes")
    for log in work.glob("*.log"):
        shutil.copyfile(log, out_dir / f"triton-{log.name}")
    shutil.rmtree(work, ignore_errors=True)
    report = {**gate(results[served_path], results[reference], decided[served_path], decided[reference], served_path),
              "config": str(config_path), "served_as": served,  # bf16 asked of a CPU without bf16 runs f32
              "fp32_outcomes": dict(Counter(decided[reference].values()).most_common()),
              "same_runtime": served_path == reference}
    write_outputs(results[served_path], meta, out_dir, None)
    write_outputs(results[reference], meta, out_dir / "fp32", None)
    print_gate(report)
    if report["same_runtime"]:
        print(f"(the served path is the reference, {FP32} with rows as sent: pass --cpu-runtime to compare another)")
    print(f"wrote {write_gate(report, out_dir)}, {out_dir}/metrics.json and {out_dir}/fp32/metrics.json", file=sys.stderr)
    return 0


class _triton:
    """The given Triton URL, or (--start-triton) a private server on free ports serving a
    repository built from the weights under .cache/."""

    def __init__(self, args, weights: Path):
        self.args, self.weights, self.server = args, weights, None

    def __enter__(self) -> str:
        if not getattr(self.args, "start_triton", False):
            return self.args.triton_url
        repo = Path(".cache/eval_repository")
        build_repository(self.weights, repo)
        self.server = TritonServer(repo, *free_ports(3)).__enter__()
        return self.server.grpc_url

    def __exit__(self, *exc):
        if self.server is not None:
            self.server.__exit__(*exc)
