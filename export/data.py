"""Training data assembly: every set under <data>/train into one labelled table.

Each example carries only the labels its source gives (-1 / None = missing; the loss masks
them). Training texts whose normalised form equals any text anywhere under <data>/eval are
dropped (and counted), so no eval item is ever learnt. A deterministic split by the hash of
each example's group (the question stem) gives a dev set for model selection and a held-out
Dolly test split for task accuracy; eval/ is never used for either.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from modelspec import labels
from export.domain_map import domain_of_subject

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEV_PERCENT = 10       # dev split: model selection and calibration sanity checks
DOLLY_TEST_PERCENT = 5  # + Dolly's own global_test.json: held-out task accuracy
CHITCHAT_DOMAIN = "small_talk"

# Dolly's 8 categories -> our task labels (general_qa is open-ended, ungrounded Q&A).
DOLLY_TASKS = {
    "open_qa": "open_qa", "general_qa": "open_qa", "closed_qa": "closed_qa",
    "classification": "classification", "brainstorming": "brainstorming",
    "information_extraction": "information_extraction", "summarization": "summarization",
    "creative_writing": "creative_writing",
}
# Presidio's older training names -> our PII types (PREFIX "Mr."/"Dr." is TITLE in the v2 set).
PII_TRAIN_ALIASES = {**labels.PII_ALIASES, "PREFIX": "TITLE"}


@dataclass
class Example:
    text: str
    source: str
    group: str                      # split key: the stem shared by variants of one question
    domain: int = -1
    task: int = -1
    jailbreak: int = -1
    harmful: float = -1.0           # soft target in [0, 1] (weak labels sit below 1)
    strong: float = -1.0            # soft target: share of models failing (or weak-fails-strong-wins)
    pii: list[tuple[int, int, str]] | None = None   # (start, end, type) char spans
    split: str = "train"
    lang: str = "en"
    keys: tuple[str, ...] = field(default=(), repr=False)  # extra texts checked against eval


def resolve_data_dir(path: Path | str | None = None) -> Path:
    """Flag, then $SEMROUTE_DATA_DIR, then ../shared/data next to the repository."""
    p = Path(path or os.environ.get("SEMROUTE_DATA_DIR") or DEFAULT_DATA_DIR)
    if not (p / "train").is_dir():
        raise FileNotFoundError(f"no train/ under data dir {p} (set --data-dir or SEMROUTE_DATA_DIR)")
    return p


def normalize(text: str) -> str:
    """Lower case; punctuation, underscores and white space folded to single spaces."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Files:
    """Opens data files and remembers the sha256 of each one used."""

    def __init__(self, root: Path):
        self.root, self.hashes = root, {}

    def path(self, rel: str) -> Path:
        p = self.root / rel
        self.hashes[rel] = sha256_file(p)
        return p

    def csv(self, rel: str, header: bool = True) -> list:
        with open(self.path(rel), newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f) if header else csv.reader(f))

    def json(self, rel: str):
        return json.loads(self.path(rel).read_text(encoding="utf-8"))

    def jsonl(self, rel: str) -> list[dict]:
        p = self.path(rel)
        opener = gzip.open if rel.endswith(".gz") else open
        with opener(p, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def mmlu_text(question: str, choices: list[str]) -> str:
    return question + "".join(f"\n{k}. {c}" for k, c in zip("ABCD", choices))


def _dom(name: str) -> int:
    return labels.DOMAINS.index(name)


def _task(name: str) -> int:
    return labels.TASKS.index(name)


# ---------- loaders: one per source, each returns Examples with the labels it has ----------

def load_mmlu(fs: Files) -> list[Example]:
    out = []
    for split in ("dev", "val"):   # few-shot and validation files: question + choices, domain only
        for p in sorted((fs.root / "train/mmlu" / split).glob("*.csv")):
            subject = p.stem.rsplit("_", 1)[0]
            for row in fs.csv(f"train/mmlu/{split}/{p.name}", header=False):
                out.append(Example(mmlu_text(row[0], row[1:5]), f"mmlu_{split}", row[0],
                                   domain=_dom(domain_of_subject(subject))))
    # test train half: the bare question (how users ask); the RouteLLM rows carry the choices.
    for row in fs.csv("train/mmlu/test_train_half.csv"):
        out.append(Example(row["question"], "mmlu_test_train_half", row["question"],
                           domain=_dom(domain_of_subject(row["subject"]))))
    return out


def _truthy(v: str) -> bool:
    return str(v).strip().lower() in ("true", "1", "1.0")


def load_routellm(fs: Files) -> list[Example]:
    """Strong-needed = the weak model (Mixtral) failed where the strong one (GPT-4) succeeded."""
    out = []
    for row in fs.csv("train/routellm/mmlu_train_half.csv"):
        stem = row["prompt"].split("\nA. ")[0]
        strong = int(not _truthy(row["mixtral_8x7b_correct"]) and _truthy(row["gpt4_1106_correct"]))
        out.append(Example(row["prompt"], "routellm_mmlu", stem, strong=strong,
                           domain=_dom(domain_of_subject(row["subject"]))))
    for row in fs.csv("train/routellm/gsm8k_train_half.csv"):
        strong = int(not _truthy(row["mistralai/Mixtral-8x7B-Instruct-v0.1"]) and _truthy(row["gpt-4-1106-preview"]))
        out.append(Example(row["prompt"], "routellm_gsm8k", row["prompt"], strong=strong,
                           task=_task("math"), domain=_dom("math")))
    return out


def load_math_and_code(fs: Files) -> list[Example]:
    # Word problems are in the math domain and coding prompts in computer science: a domain
    # label that follows from the task, so the domain head sees more than exam questions.
    m, cs = _dom("math"), _dom("computer science")
    out = [Example(r["question"], "gsm8k", r["question"], task=_task("math"), domain=m)
           for r in fs.jsonl("train/gsm8k/train.jsonl")]
    out += [Example(r["problem"], "math_competition", r["problem"], task=_task("math"), domain=m)
            for r in fs.jsonl("train/math_competition/test.jsonl")]
    out += [Example(r["prompt"], "humaneval", r["prompt"], task=_task("coding"), domain=cs)
            for r in fs.jsonl("train/humaneval/HumanEval.jsonl.gz")]
    out += [Example(r["text"], "mbpp", r["text"], task=_task("coding"), domain=cs)
            for r in fs.jsonl("train/mbpp/mbpp.jsonl")]
    return out


def load_dolly(fs: Files) -> list[Example]:
    out, seen = [], set()
    files = ["global_test.json", "public_training.json"] + [f"local_training_{i}.json" for i in range(4)]
    for name in files:
        for r in fs.json(f"train/dolly15k/{name}"):
            ctx = (r.get("context") or "").strip()
            text = r["instruction"].strip() + (f"\n\n{ctx}" if ctx else "")
            if (text, r["category"]) in seen:   # the federated split repeats 15 rows
                continue
            seen.add((text, r["category"]))
            ex = Example(text, "dolly", r["instruction"], task=_task(DOLLY_TASKS[r["category"]]),
                         keys=(r["instruction"],))
            if name == "global_test.json":
                ex.split = "test"
            out.append(ex)
    return out


def load_clinc(fs: Files, other_per_intent: int = 25) -> list[Example]:
    """Small talk intents -> chitchat; a sample of the other intents as benign assistant requests."""
    small = set(fs.json("train/clinc150/domains.json")[CHITCHAT_DOMAIN])
    data = fs.json("train/clinc150/data_full.json")
    out, per_intent = [], {}
    for part in ("train", "val", "test"):
        for text, intent in data[part]:
            if intent in small:
                # small talk and simple assistant requests never need the strong model
                out.append(Example(text, "clinc_small_talk", text, task=_task("chitchat"), strong=0.0))
            elif per_intent.get(intent, 0) < other_per_intent:
                per_intent[intent] = per_intent.get(intent, 0) + 1
                out.append(Example(text, "clinc_other", text, strong=0.0))
    return out


def load_pii(fs: Files) -> list[Example]:
    out = []
    for r in fs.json("train/presidio_pii/generated_large.json"):
        spans = [(s["start_position"], s["end_position"], PII_TRAIN_ALIASES.get(s["entity_type"], s["entity_type"]))
                 for s in r["spans"]]
        out.append(Example(r["full_text"], "presidio_generated_large", r["full_text"],
                           pii=[s for s in spans if s[2] in labels.PII_TYPES]))
    return out


# ---------- eval texts, dedupe, split ----------

def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def eval_texts(data_dir: Path) -> set[str]:
    """Normalised form of every string in every eval file (prompts, questions, goals, turns):
    broader than needed on purpose; MMLU rows also contribute question + choices."""
    out: set[str] = set()
    for p in sorted((data_dir / "eval").rglob("*")):
        if p.suffix == ".csv":
            with open(p, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
            items = [c for row in rows for c in row]
            items += [mmlu_text(r[1], r[2:6]) for r in rows if len(r) == 7]
        elif p.suffix == ".jsonl":
            items = list(_strings([json.loads(x) for x in p.read_text(encoding="utf-8").split("\n") if x.strip()]))
        elif p.suffix == ".json":
            items = list(_strings(json.loads(p.read_text(encoding="utf-8"))))
        else:
            continue
        out.update(n for n in map(normalize, items) if n)
    return out


def dedupe_against_eval(examples: list[Example], data_dir: Path) -> tuple[list[Example], dict[str, int]]:
    banned = eval_texts(data_dir)
    kept, dropped = [], {}
    for ex in examples:
        if any(normalize(t) in banned for t in (ex.text, ex.group, *ex.keys)):
            dropped[ex.source] = dropped.get(ex.source, 0) + 1
        else:
            kept.append(ex)
    return kept, dropped


def assign_splits(examples: list[Example]) -> None:
    for ex in examples:
        bucket = int(hashlib.sha256(normalize(ex.group).encode()).hexdigest()[:8], 16) % 100
        if ex.split == "test":
            continue
        if ex.source == "dolly" and bucket >= 100 - DOLLY_TEST_PERCENT:
            ex.split = "test"
        elif bucket < DEV_PERCENT:
            ex.split = "dev"


# Sources whose texts may name people incidentally (exam questions, word problems, code):
# none of them is personal data, so they teach the PII head what is *not* PII.
PII_NEGATIVE_SOURCES = ("mmlu_dev", "mmlu_val", "mmlu_test_train_half", "mmlu_pro", "gsm8k", "math_competition",
                        "humaneval", "mbpp", "clinc_small_talk", "clinc_other", "dc_router", "medquad", "pubmedqa")


def fill_negatives(examples: list[Example]) -> None:
    """Examples of benign sources are negatives of both safety heads; listed sources are PII-free."""
    for ex in examples:
        if ex.jailbreak == -1:
            ex.jailbreak = 0
        if ex.harmful < 0:
            ex.harmful = 0.0
        if ex.pii is None and ex.source in PII_NEGATIVE_SOURCES:
            ex.pii = []
