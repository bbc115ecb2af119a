"""The held-out sets of `semroute eval`: every set under <data>/eval as rows {"text", labels},
plus the held-out Dolly split of the training data. Measured only: nothing here is trained or
tuned on.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from export import data, training_set
from modelspec import labels
from export.domain_map import domain_of_subject

SHAREGPT_ROWS = 3307     # all of them
ALPACA_ROWS = 2000       # the first rows of 31k: the rate is what matters
CODEALPACA_ROWS = 1000
# Arena-Hard v2 coding prompts and MMLU questions hold no personal data: any PII span there is a false positive.
NO_PII_SETS = ("mmlu_eval_half", "arena_hard_v2_coding")


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
    sets.update(new_sets(ev))
    examples, _ = training_set.assemble(root, verbose=False)
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


def new_sets(ev: Path) -> dict[str, list[dict]]:
    """Sets added for v2: real benign prompts, harmful requests, injections, other languages,
    MMLU-Pro eval half, task types on real prompts."""
    harmful = lambda rows: [{"text": t, "harmful": 1} for t in rows]  # noqa: E731
    benign = lambda rows: [{"text": t, "harmful": 0} for t in rows]   # noqa: E731
    ok = _csv(ev / "oktest/OKTest.csv") + _csv(ev / "oktest/OKTest_heldout.csv")
    mmlu_pro = _csv(ev / "mmlu_pro/mmlu_pro_multimodel.csv")
    arena = _jsonl(ev / "arena_hard/v2.0_question.jsonl")
    return {
        "sharegpt": benign(r["prompt"] for r in _jsonl(ev / "sharegpt_first_turns/sharegpt_first_turns_en.jsonl")[:SHAREGPT_ROWS]),
        "alpaca_noinput": benign(r["prompt"] for r in _jsonl(ev / "alpaca_noinput/alpaca_noinput.jsonl")[:ALPACA_ROWS]),
        "oktest": benign(r["prompt"] for r in ok),
        "sorry_bench": harmful(r["prompt"] for r in _jsonl(ev / "sorry_bench/sorry_bench_base.jsonl")),
        "do_not_answer": harmful(r["question"] for r in _csv(ev / "do_not_answer/do_not_answer_en.csv")),
        "malicious_instruct": harmful(t.strip() for t in (ev / "malicious_instruct/MaliciousInstruct.txt").read_text().split("\n") if t.strip()),
        "tensor_trust": [{"text": r["prompt"], "jailbreak": 1, "kind": r.get("injection_type")}
                         for r in _jsonl(ev / "tensor_trust/tensor_trust_attacks.jsonl")],
        "belle_eval_zh": [{"text": r["prompt"], "harmful": 0, "belle_task": r["task_type"]}
                          for r in _jsonl(ev / "belle_eval_zh/belle_eval_set_zh_eval_half.jsonl")],
        "instructionwild_zh": benign(r["prompt"] for r in _jsonl(ev / "instructionwild/seed_prompts_zh.jsonl")),
        "mmlu_pro_eval_half": [{"text": r["question"].strip(), "domain": r["category"]} for r in mmlu_pro],
        "mmlu_pro_routing": _mmlu_pro_routing(mmlu_pro),
        "arena_hard_v2_coding": [{"text": r["prompt"]} for r in arena if r["subcategory"] == "coding"],
        "codealpaca": [{"text": r.get("prompt") or r.get("instruction"), "task": "coding"}
                       for r in _jsonl(ev / "codealpaca/codealpaca.jsonl")[:CODEALPACA_ROWS]],
        "liveqa_med": [{"text": r.get("prompt") or r.get("question"), "domain": "health"}
                       for r in _jsonl(ev / "liveqa_med/liveqa_med_consumer_questions.jsonl")],
    }


def _mmlu_pro_routing(rows) -> list[dict]:
    """Difficulty: the share of the 29 models that answer each eval question right."""
    cols = [c for c in rows[0] if c.startswith("correct__")]
    out = []
    for r in rows:
        vals = [int(r[c]) for c in cols if r[c].strip() != ""]
        if vals:
            out.append({"text": r["question"].strip(), "solved_share": float(np.mean(vals))})
    return out
