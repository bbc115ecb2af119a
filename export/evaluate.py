"""`semroute eval`: the model as served (Triton, through control.signals.Classifier exactly as
the gateway calls it) on every held-out set under <data>/eval, plus the held-out Dolly split
of the training data. Writes <output_dir>/metrics.json, report.md and routing.svg.

Nothing here feeds back into training: thresholds come from the weights' metadata (chosen on
training data), and eval/ only ever produces numbers.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

from export import data, labels, metrics
from export.domain_map import domain_of_subject
from export.model import DEFAULT_WEIGHTS, read_weights_meta

BATCH = 32
JAILBREAK_THRESHOLD = 0.5   # used when the weights carry no threshold chosen on training data
SWEEP = (0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99)


def _csv(path: Path, header: bool = True) -> list:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f) if header else csv.reader(f))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x.strip()]


def _decision_domain(decision: str) -> str:
    return decision.removesuffix("_decision").replace("_", " ")


def load_sets(root: Path, limit: int | None = None) -> dict[str, list[dict]]:
    """Every eval set as rows {"text": ..., label fields}. `limit` keeps the first rows (smoke runs)."""
    ev = root / "eval"
    vsr = ev / "vllm_sr"
    sets: dict[str, list[dict]] = {
        # question + choices in RouteLLM's prompt format: the same text as the routing set, so each
        # question is classified once (6,947 of the 7,006 prompts are byte-identical)
        "mmlu_eval_half": [{"text": data.mmlu_text(r["question"], [r["A"], r["B"], r["C"], r["D"]]) + "\nAnswer:",
                            "domain": domain_of_subject(r["subject"])} for r in _csv(ev / "mmlu/test_eval_half.csv")],
        "vllm_sr_domain_cases": [{"text": r["question"], "domain": r["category"]}
                                 for r in json.loads((vsr / "domain_classify_cases.json").read_text())],
        "vllm_sr_handwritten": [{"text": r["text"], "domain": r["true_label"]}
                                for r in json.loads((vsr / "test_data.json").read_text())]
        + [{"text": r["query"], "domain": _decision_domain(r["expected_decision"])}
           for r in json.loads((vsr / "decision_fallback_cases.json").read_text())["test_cases"]],
        "arena_hard_v2": [{"text": r["prompt"], "task": r["subcategory"]} for r in _jsonl(ev / "arena_hard/v2.0_question.jsonl")],
        "jailbreakbench": [{"text": r["prompt"], "jailbreak": 1, "method": r["method"]}
                           for r in _jsonl(ev / "jailbreakbench/attack_prompts.jsonl")],
        "simple_safety_tests": [{"text": r["prompts_final"], "jailbreak": 1} for r in _csv(ev / "simple_safety_tests/simple_safety_tests.csv")],
        "giskard_prompt_injections": [{"text": r["prompt"], "jailbreak": 1} for r in _csv(ev / "giskard_prompt_injections/prompt_injections.csv")],
        "xstest_unsafe": [{"text": r["prompt"], "jailbreak": 1} for r in _csv(ev / "xstest/xstest_prompts.csv") if r["label"] == "unsafe"],
        "xstest_safe": [{"text": r["prompt"], "jailbreak": 0} for r in _csv(ev / "xstest/xstest_prompts.csv") if r["label"] == "safe"],
        "vllm_sr_jailbreak_cases": [{"text": r["question"], "jailbreak": 1} for r in json.loads((vsr / "jailbreak_detection_cases.json").read_text())],
        "presidio_synth_v2": [{"text": r["full_text"], "pii": [
            (s["start_position"], s["end_position"], labels.PII_ALIASES.get(s["entity_type"], s["entity_type"]))
            for s in r["spans"]]} for r in json.loads((ev / "presidio_pii/synth_dataset_v2.json").read_text())],
        "routellm_mmlu_eval_half": [{"text": r["prompt"], "weak": float(data._truthy(r["mixtral_8x7b_correct"])),
                                     "strong": float(data._truthy(r["gpt4_1106_correct"]))}
                                    for r in _csv(ev / "routellm/mmlu_eval_half.csv")],
        "routellm_gsm8k_eval_half": [{"text": r["prompt"], "weak": float(data._truthy(r["mistralai/Mixtral-8x7B-Instruct-v0.1"])),
                                      "strong": float(data._truthy(r["gpt-4-1106-preview"]))}
                                     for r in _csv(ev / "routellm/gsm8k_eval_half.csv")],
        "mt_bench": _mt_bench(ev / "mt_bench"),
        "alpaca_eval": [{"text": r["instruction"], "jailbreak": 0} for r in json.loads((ev / "alpaca_eval/gpt4_1106_preview_model_outputs.json").read_text())],
        "arena_hard_v0_1": [{"text": r["prompt"] if "prompt" in r else r["turns"][0]["content"], "jailbreak": 0}
                            for r in _jsonl(ev / "arena_hard/v0.1_question.jsonl")],
    }
    examples, _ = data.assemble(root, verbose=False)
    sets["dolly_heldout"] = [{"text": e.text, "task": labels.TASKS[e.task]} for e in examples
                             if e.source == "dolly" and e.split == "test"]
    if limit:
        sets = {k: v[:limit] for k, v in sets.items()}
    return sets


def _mt_bench(folder: Path) -> list[dict]:
    """Router input: the first turn (what is known when the model is chosen); quality: the GPT-4
    judge score of each model averaged over both turns."""
    scores: dict[tuple[int, str], list[float]] = {}
    for r in _jsonl(folder / "judgements.jsonl"):
        scores.setdefault((r["question_id"], r["model"]), []).append(float(r["score"]))
    rows = []
    for q in _jsonl(folder / "question.jsonl"):
        w = scores.get((q["question_id"], "mistralai/Mixtral-8x7B-Instruct-v0.1"))
        s = scores.get((q["question_id"], "gpt-4-1106-preview"))
        if w and s:
            rows.append({"text": q["turns"][0], "weak": float(np.mean(w)), "strong": float(np.mean(s)),
                         "category": q["category"], "jailbreak": 0})
    return rows


async def classify_all(texts: list[str], triton_url: str) -> dict[str, object]:
    """Each distinct text classified once, BATCH texts per call, a few calls in flight."""
    from tqdm import tqdm

    from control.signals import Classifier

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
        from export.calibration import threshold_for

        t = threshold_for(calib, 0.3)
        res["share_at_calibrated_30pct"] = float((np.array(p) >= t).mean())
    return res


def compute(sets: dict[str, list[dict]], sig: dict, meta: dict) -> dict:
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
    read = [sig[t].read for t in {r["text"] for rows in sets.values() for r in rows}]
    out["long_inputs"] = {"texts": len(read), "chunked": int(sum(r.chunks > 1 for r in read)),
                          "max_chunks": int(max(r.chunks for r in read)), "chunk_tokens": read[0].chunk_tokens,
                          "how": "texts over chunk_tokens are read in consecutive chunks; class and strong probabilities "
                                 "are averaged by chunk length, jailbreak takes the worst chunk, PII spans keep offsets"}
    return out


def run_eval(args) -> int:
    from export.report import write_outputs

    root = data.resolve_data_dir(getattr(args, "data_dir", None))
    weights = Path(getattr(args, "weights", None) or DEFAULT_WEIGHTS)
    meta = read_weights_meta(weights) if weights.exists() else {}
    sets = load_sets(root, getattr(args, "limit", None))
    texts = [r["text"] for rows in sets.values() for r in rows]
    started = time.time()
    with _triton(args, weights) as url:
        sig = asyncio.run(classify_all(texts, url))
    results = compute(sets, sig, meta)
    results["meta"] = {"triton_url": url, "weights": str(weights), "weights_version": meta.get("version"),
                       "weights_sha256": data.sha256_file(weights) if weights.exists() else None,
                       "classify_seconds": round(time.time() - started, 1), "texts": len(set(texts)),
                       "limit": getattr(args, "limit", None), "data_dir": str(root)}
    out_dir = Path(getattr(args, "output_dir", None) or "export/model_card")
    write_outputs(results, meta, out_dir)
    print(f"wrote {out_dir}/metrics.json, report.md, routing.svg", file=sys.stderr)
    return 0


class _triton:
    """The given Triton URL, or (--start-triton) a private server on free ports serving a
    repository built from the weights under .cache/."""

    def __init__(self, args, weights: Path):
        self.args, self.weights, self.server = args, weights, None

    def __enter__(self) -> str:
        if not getattr(self.args, "start_triton", False):
            return self.args.triton_url
        import socket

        from control.tritonserver import TritonServer
        from export.repository import build_repository

        repo = Path(".cache/eval_repository")
        build_repository(self.weights, repo)
        socks = [socket.socket() for _ in range(3)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in socks]
        for s in socks:
            s.close()
        self.server = TritonServer(repo, *ports).__enter__()
        return self.server.grpc_url

    def __exit__(self, *exc):
        if self.server is not None:
            self.server.__exit__(*exc)
