"""Training sources added in v2 for task, domain, difficulty and language coverage.

- Task types on prompts written like real requests: T0 templates, BELLE (Chinese), DC-Router tasks.
- Domains beyond exam questions: MMLU-Pro (train half), MedQuAD / PubMedQA (health), LegalBench (law).
- Difficulty from many models: the share of MMLU-Pro's 29 models that fail a question, and
  1 - the mean score of DC-Router's 9 models, as soft targets of the `strong` head (RouteLLM's
  one weak/strong pair stays a target too, in data.load_routellm).
- Benign prompts in 12 languages (XQuAD questions, alone and with their passage) and Chinese
  (BELLE): negatives of the safety heads, so that a language is never a harm signal in itself.
"""
from __future__ import annotations

import ast
import csv
import random

from modelspec import labels
from export.data import Example, Files, mmlu_text

MEDQUAD_SAMPLE = 3000   # MedQuAD is templated ("What is (are) X ?"): a sample is enough
# T0 template task types -> our tasks (question generation has no counterpart: no task label).
T0_TASKS = {
    "question_answering": "closed_qa", "open_qa": "open_qa", "sentiment_classification": "classification",
    "topic_classification": "classification", "paraphrase_identification": "classification",
    "summarization": "summarization", "information_extraction": "information_extraction",
    "constrained_generation": "creative_writing",
}
BELLE_TASKS = {
    "open qa": "open_qa", "closed qa": "closed_qa", "brainstorming": "brainstorming", "classification": "classification",
    "math": "math", "summarization": "summarization", "code": "coding", "extract": "information_extraction",
    "generation": "creative_writing",
}
# DC-Router task -> (task, domain); None where the benchmark implies neither.
DC_ROUTER = {
    "gsm8k": ("math", "math"), "math": ("math", "math"), "agentverse-mgsm": ("math", "math"),
    "mbpp": ("coding", "computer science"), "human_eval": ("coding", "computer science"),
    "natural_qa": ("open_qa", None), "trivia_qa": ("open_qa", None), "commongen": ("creative_writing", None),
}


def _task(name: str | None) -> int:
    return labels.TASKS.index(name) if name else -1


def _dom(name: str | None) -> int:
    return labels.DOMAINS.index(name) if name else -1


def load_t0(fs: Files) -> list[Example]:
    return [Example(r["prompt"], "t0", r["prompt"][:200], task=_task(T0_TASKS.get(r["task_type"])))
            for r in fs.jsonl("train/t0_task_types/t0_templates_sample25.jsonl")]


def load_medical(fs: Files, seed: int = 0) -> list[Example]:
    rows = fs.jsonl("train/medical_questions/medquad_questions.jsonl")
    rows = random.Random(seed).sample(rows, min(MEDQUAD_SAMPLE, len(rows)))
    health, qa = _dom("health"), _task("open_qa")
    out = [Example(r["prompt"], "medquad", r["focus"], domain=health, task=qa) for r in rows]
    out += [Example(r["prompt"], "pubmedqa", r["prompt"], domain=health, task=qa)
            for r in fs.jsonl("train/medical_questions/pubmedqa_pqal_questions.jsonl")]
    return out


def load_legalbench(fs: Files) -> list[Example]:
    return [Example(r["text"], "legalbench", r["text"], domain=_dom("law"))
            for r in fs.jsonl("train/legalbench/legalbench_train_rows.jsonl")]


def load_belle(fs: Files) -> list[Example]:
    return [Example(r["prompt"], "belle_zh", r["prompt"], task=_task(BELLE_TASKS.get(r["task_type"])), lang="zh")
            for r in fs.jsonl("train/belle_zh/belle_eval_set_zh_train_half.jsonl")]


def load_xquad(fs: Files) -> list[Example]:
    """Every question alone (open QA) and, for one question per paragraph, with its passage
    (closed QA). Grouped by question id: no translation of a dev question is trained on."""
    out = []
    for path in sorted((fs.root / "train/xquad").glob("xquad.*.json")):
        lang = path.stem.split(".")[1]
        for article in fs.json(f"train/xquad/{path.name}")["data"]:
            for para in article["paragraphs"]:
                for k, qa in enumerate(para["qas"]):
                    group = f"xquad {qa['id']}"
                    out.append(Example(qa["question"], f"xquad_{lang}", group, task=_task("open_qa"), lang=lang))
                    if k == 0:
                        out.append(Example(f"{para['context']}\n\n{qa['question']}", f"xquad_{lang}_passage", group,
                                           task=_task("closed_qa"), lang=lang))
    return out


def _fail_share(row: dict, columns: list[str]) -> float | None:
    values = [int(row[c]) for c in columns if row[c].strip() != ""]
    return 1.0 - sum(values) / len(values) if values else None


def load_mmlu_pro(fs: Files) -> list[Example]:
    """Bare question (how users ask) for half of the rows, question + options for the rest."""
    rows = fs.csv("train/mmlu_pro/mmlu_pro_multimodel.csv")
    columns = [c for c in rows[0] if c.startswith("correct__")]
    out = []
    for i, r in enumerate(rows):
        share = _fail_share(r, columns)
        question = r["question"].strip()
        text = question if i % 2 == 0 else mmlu_text(question, ast.literal_eval(r["options"])[:4])
        out.append(Example(text, "mmlu_pro", question, domain=_dom(r["category"]),
                           strong=-1.0 if share is None else share, keys=(question,)))
    return out


def load_dc_router(fs: Files) -> list[Example]:
    with open(fs.path("train/multi_model/dcrouter_scores.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c.startswith("score__")]
    out = []
    for r in rows:
        scores = [float(r[c]) for c in columns if r[c].strip() != ""]
        task, domain = DC_ROUTER.get(r["task_name"], (None, None))
        out.append(Example(r["prompt"], "dc_router", r["prompt"], task=_task(task), domain=_dom(domain),
                           strong=1.0 - sum(scores) / len(scores) if scores else -1.0))
    return out


TASK_SOURCES = (load_t0, load_medical, load_legalbench, load_belle, load_xquad, load_mmlu_pro, load_dc_router)
