"""Outcome tables: prompts × models → score in [0, 1] (NaN where a model has no outcome).

The one documented shape (`semroute profile build --outcomes FILE`) is long form, one outcome
a row, CSV with a header or JSONL:

    prompt,model,score            {"prompt": "...", "model": "m1", "score": 0.8}

Rows of one prompt are gathered by the exact prompt text. Beside it, the three shipped sources
are read as staged under shared/data (recognised by their file names):

- `mmlu_pro_multimodel.csv` — 29 models' correctness (`correct__<model>`, 1/0, empty = none);
  the prompt is the question with its lettered options, as a user would send it.
- `dcrouter_scores.csv` — 9 models' 0–1 scores (`score__<model>`); prices from the
  `default_llm.json` beside it.
- `mmlu_*_half.csv` / `gsm8k_*_half.csv` (RouteLLM) — Mixtral-8x7B (weak) and GPT-4-1106
  (strong) correctness; the GSM8K file of the same half is read with the MMLU one.
"""
from __future__ import annotations

import ast
import csv
import json
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

csv.field_size_limit(1 << 26)  # a few prompts run to megabytes

ROUTELLM_WEAK, ROUTELLM_STRONG = "mixtral-8x7b-instruct-v0.1", "gpt-4-1106-preview"


@dataclass
class Outcomes:
    prompts: list[str]
    models: list[str]
    scores: np.ndarray                     # (prompts, models) float32, NaN = no outcome
    prices: dict[str, float] = field(default_factory=dict)        # USD per 1M tokens (input + output)
    price_source: dict[str, str] = field(default_factory=dict)    # per model: where its price came from
    source: str = ""

    def __post_init__(self) -> None:
        if self.scores.shape != (len(self.prompts), len(self.models)):
            raise ValueError(f"scores shape {self.scores.shape} does not match {len(self.prompts)} prompts × {len(self.models)} models")
        finite = self.scores[np.isfinite(self.scores)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise ValueError(f"scores must lie in [0, 1] (found {finite.min():g} .. {finite.max():g})")

    def complete_rows(self) -> np.ndarray:
        """Indices of prompts every model has an outcome for (evaluation compares like with like)."""
        return np.flatnonzero(np.isfinite(self.scores).all(1))

    def subset(self, rows) -> "Outcomes":
        rows = np.asarray(rows)
        return Outcomes([self.prompts[i] for i in rows], self.models, self.scores[rows], self.prices,
                        self.price_source, self.source)


def load_outcomes(path: Path) -> Outcomes:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"outcomes file not found: {path}")
    name = path.name
    if name.startswith("mmlu_pro_multimodel"):
        return load_mmlu_pro(path)
    if name.startswith("dcrouter_scores"):
        return load_dcrouter(path)
    if name.startswith(("mmlu_train_half", "mmlu_eval_half", "gsm8k_train_half", "gsm8k_eval_half")):
        return load_routellm(path)
    return load_long(path)


def load_long(path: Path) -> Outcomes:
    """The documented long form: prompt, model, score (CSV with header, or JSONL)."""
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no outcome rows")
    missing = {"prompt", "model", "score"} - set(rows[0])
    if missing:
        raise ValueError(f"{path}: each row needs prompt, model and score (missing: {', '.join(sorted(missing))})")
    prompts = list(dict.fromkeys(str(r["prompt"]) for r in rows))
    models = list(dict.fromkeys(str(r["model"]) for r in rows))
    p_index, m_index = {p: i for i, p in enumerate(prompts)}, {m: j for j, m in enumerate(models)}
    scores = np.full((len(prompts), len(models)), np.nan, dtype=np.float32)
    for n, r in enumerate(rows, start=1):
        try:
            scores[p_index[str(r["prompt"])], m_index[str(r["model"])]] = float(r["score"])
        except (TypeError, ValueError):
            raise ValueError(f"{path}: row {n}: score {r['score']!r} is not a number") from None
    return Outcomes(prompts, models, scores, source=str(path))


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _wide(rows: list[dict], prefix: str, prompt_of) -> tuple[list[str], list[str], np.ndarray]:
    columns = [c for c in rows[0] if c.startswith(prefix)]
    scores = np.array([[float(r[c]) if r[c] not in ("", None) else np.nan for c in columns] for r in rows],
                      dtype=np.float32)
    return [prompt_of(r) for r in rows], [c[len(prefix):] for c in columns], scores


def mmlu_pro_prompt(row: dict) -> str:
    options = ast.literal_eval(row["options"]) if row.get("options") else []
    lines = [row["question"].strip(), *(f"{string.ascii_uppercase[i]}. {o}" for i, o in enumerate(options))]
    return "\n".join(lines)


def load_mmlu_pro(path: Path) -> Outcomes:
    from control.selection.prices import mmlu_pro_prices

    prompts, models, scores = _wide(_read_csv(path), "correct__", mmlu_pro_prompt)
    prices, sources = mmlu_pro_prices(models)
    return Outcomes(prompts, models, scores, prices, sources, str(path))


def load_dcrouter(path: Path, prices_file: Path | None = None) -> Outcomes:
    prompts, models, scores = _wide(_read_csv(path), "score__", lambda r: r["prompt"])
    prices_file = prices_file or path.with_name("default_llm.json")
    prices, sources = {}, {}
    if prices_file.exists():
        prices, sources = read_price_file(prices_file, models)
    return Outcomes(prompts, models, scores, prices, sources, str(path))


def read_price_file(path: Path, models: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """default_llm.json shape ({model: {input_price, output_price}}, USD per 1M tokens), or a
    flat {model: price}. The price of a request is input + output per 1M tokens."""
    table = json.loads(Path(path).read_text())
    prices, sources = {}, {}
    for model in models:
        entry = table.get(model)
        if entry is None:
            continue
        prices[model] = (float(entry["input_price"]) + float(entry["output_price"])) if isinstance(entry, dict) else float(entry)
        sources[model] = f"price file {Path(path).name}"
    return prices, sources


def load_routellm(path: Path) -> Outcomes:
    """RouteLLM's MMLU (+ the GSM8K file of the same half) correctness labels."""
    from control.selection.prices import ROUTELLM_PRICES

    half = "train_half" if "train_half" in path.name else "eval_half"
    prompts, scores = [], []
    for part in (path.with_name(f"mmlu_{half}.csv"), path.with_name(f"gsm8k_{half}.csv")):
        if not part.exists():
            continue
        rows = _read_csv(part)
        weak = "mixtral_8x7b_correct" if "mixtral_8x7b_correct" in rows[0] else "mistralai/Mixtral-8x7B-Instruct-v0.1"
        strong = "gpt4_1106_correct" if "gpt4_1106_correct" in rows[0] else "gpt-4-1106-preview"
        prompts += [r["prompt"] for r in rows]
        scores += [[r[weak] == "True", r[strong] == "True"] for r in rows]
    models = [ROUTELLM_WEAK, ROUTELLM_STRONG]
    return Outcomes(prompts, models, np.array(scores, dtype=np.float32),
                    {m: ROUTELLM_PRICES[m][0] for m in models}, {m: ROUTELLM_PRICES[m][1] for m in models}, str(path))


def mmlu_only(outcomes: Outcomes, path: Path) -> Outcomes:
    """The MMLU rows of a RouteLLM table (the APGR goal is on MMLU)."""
    half = "train_half" if "train_half" in Path(path).name else "eval_half"
    n = len(_read_csv(Path(path).with_name(f"mmlu_{half}.csv")))
    return outcomes.subset(np.arange(n))
