"""`semroute eval-selection --outcomes FILE [--prices FILE] [--profile DIR]`: a profile's
selector on an outcome table (an eval half): one JSON object on stdout — best single model,
oracle, random, the selector's curves over λ (score − λ·price) and over tolerance (cheapest
within tolerance of the best estimate), the quality at the best single model's cost and the
cost at its quality — and selection.json + selection.svg in --output-dir.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from control.selection import curve as C
from control.selection.outcomes import Outcomes, load_outcomes, mmlu_only, read_price_file
from control.selection.plot import selection_svg
from control.selection.profile import Profile

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_PROFILES = PROJECT_ROOT / "profiles"


def shipped_profile_for(outcomes_path: Path) -> Path:
    """The shipped profile built from the train half of the same source."""
    name = Path(outcomes_path).name
    for prefix, profile in (("mmlu_pro", "mmlu_pro"), ("dcrouter", "multi_model"), ("mmlu_", "routellm"), ("gsm8k_", "routellm")):
        if name.startswith(prefix):
            return SHIPPED_PROFILES / profile
    raise ValueError(f"no shipped profile for {name}: pass --profile DIR")


def evaluate(out: Outcomes, profile: Profile, embeddings: np.ndarray) -> dict:
    models = [m for m in out.models if m in profile.models]
    if not models:
        raise ValueError(f"the profile's models ({', '.join(profile.models)}) and the table's share none")
    unpriced = [m for m in models if m not in out.prices]
    if unpriced:
        raise ValueError(f"no price for {', '.join(unpriced)}: pass --prices FILE (default_llm.json shape or {{model: price}})")
    cols = [out.models.index(m) for m in models]
    rows = np.flatnonzero(np.isfinite(out.scores[:, cols]).all(axis=1))
    scores = out.scores[np.ix_(rows, cols)]
    prices = np.array([out.prices[m] for m in models], dtype=np.float32)
    est = profile.estimate_batch(embeddings[rows])[:, [profile.models.index(m) for m in models]]
    refs = C.references(scores, prices, models)
    lam, tol = C.curve(scores, prices, est, "lambda"), C.curve(scores, prices, est, "tolerance")
    best = refs["best_single"]
    result = {"outcomes": out.source, "profile": profile.name, "method": profile.method, "prompts": int(len(rows)),
              "models": len(models), "references": refs,
              "curve": lam, "curve_tolerance": tol,
              "lambda": C.summary(lam, best), "tolerance": C.summary(tol, best),
              "prices": {m: {"usd_per_1m_tokens": out.prices[m], "source": out.price_source.get(m, "given")} for m in models}}
    if len(models) == 2:
        result["apgr"] = two_model_apgr(scores, prices, est)
    return result


def two_model_apgr(scores, prices, est) -> dict:
    """RouteLLM's APGR with the dearer model as the strong one, ranked by the estimated gain."""
    strong, weak = (1, 0) if prices[1] >= prices[0] else (0, 1)
    return C.apgr(est[:, strong] - est[:, weak], scores[:, weak], scores[:, strong])


def run_eval_selection(args) -> int:
    from control.selection.embed import embed_texts

    path = Path(args.outcomes)
    out = load_outcomes(path)
    if path.name.startswith("mmlu_") and "half" in path.name and not getattr(args, "with_gsm8k", False):
        out = mmlu_only(out, path)   # the APGR goal is RouteLLM's MMLU
    if getattr(args, "prices", None):
        out.prices, out.price_source = read_price_file(Path(args.prices), out.models)
    profile = Profile.load(Path(getattr(args, "profile", None) or shipped_profile_for(path)))
    emb = embed_texts(out.prompts, getattr(args, "triton_url", None))
    result = evaluate(out, profile, emb)
    result["title"] = f"{profile.name} profile on {path.parent.name}/{path.name} ({result['prompts']} prompts)"
    out_dir = Path(getattr(args, "output_dir", None) or Path(".cache/selection/eval") / profile.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "selection.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "selection.svg").write_text(selection_svg(result))
    print(json.dumps(result))
    print(f"wrote {out_dir}/selection.json and selection.svg", file=sys.stderr)
    return 0
