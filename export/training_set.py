"""The training set: every source under <data>/train in one labelled table, deduplicated
against eval/ and split (the loaders live in data, task_data, safety_data and pii_synth)."""
from __future__ import annotations

import sys
from pathlib import Path

from export import pii_synth, safety_data, task_data
from export.data import (Example, Files, assign_splits, dedupe_against_eval, fill_negatives, load_clinc, load_dolly,
                         load_math_and_code, load_mmlu, load_pii, load_routellm, resolve_data_dir)


def assemble(data_dir: Path | str | None = None, *, synth_pii: int = 0, seed: int = 0,
             verbose: bool = True) -> tuple[list[Example], dict]:
    """Load, dedupe against eval/ and split. Returns (examples, info with hashes and counts)."""
    root = resolve_data_dir(data_dir)
    fs = Files(root)
    benign: list[Example] = []
    for loader in (load_mmlu, load_routellm, load_math_and_code, load_dolly, load_clinc, load_pii,
                   *task_data.TASK_SOURCES, pii_synth.load_wnut):
        benign += loader(fs)
    if synth_pii:
        benign += pii_synth.synthesize(fs, synth_pii, seed=seed)
    fill_negatives(benign)
    examples = benign + safety_data.load_jailbreak_templates(fs) + safety_data.load_harmful_requests(fs) \
        + safety_data.load_coconot(fs) + safety_data.load_bipia(fs, seed)
    examples, dropped = dedupe_against_eval(examples, root)
    assign_splits(examples)
    info = {"data_dir": str(root), "sha256": dict(sorted(fs.hashes.items())),
            "dropped_eval_overlap": dropped, "dropped_total": sum(dropped.values()),
            "counts": _counts(examples)}
    if verbose:
        print(f"data: dropped {info['dropped_total']} training texts equal (normalised) to an eval text: "
              f"{dropped}", file=sys.stderr)
    return examples, info


def _counts(examples: list[Example]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for ex in examples:
        d = out.setdefault(ex.source, {})
        d[ex.split] = d.get(ex.split, 0) + 1
    return out
