"""`semroute profile build --outcomes FILE --out DIR`: embed an outcome table's prompts with the
router's own embedding (through Triton) and write a quality profile (control/selection/profile.py).

The k-NN parameters (k, prior, temperature), and whether a learned head (per-model ridge
regression on the embedding) replaces the k-NN, are chosen on a validation split carved from
the given table (a fifth of its prompts, by a hash of the text): the table is a train half,
eval/ is never read. The profile then holds every row of the table.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import time
from pathlib import Path

import numpy as np

from control.selection.curve import validation_score
from control.selection.outcomes import Outcomes, load_outcomes, read_price_file
from control.selection.profile import Profile, head_estimate, knn_estimate

K_GRID = (10, 25, 50, 100, 200, 400, 800)
PRIOR_GRID = (1.0, 5.0, 20.0)
TEMPERATURE_GRID = (0.02, 0.05, 0.2, 1.0)
RIDGE_ALPHAS = (1.0, 10.0, 100.0)
HEAD_SHARES = (0.5, 1.0)   # the head alone, or averaged with the best k-NN
VALIDATION_SHARE = 5   # one prompt in five


def validation_mask(prompts: list[str]) -> np.ndarray:
    return np.array([hashlib.sha256(p.encode()).digest()[1] % VALIDATION_SHARE == 0 for p in prompts])


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> dict:
    """Per-model ridge regression of the score on the embedding (missing outcomes: the model's mean)."""
    means = np.nan_to_num(np.nanmean(y, axis=0))
    target = np.where(np.isfinite(y), y, means) - means
    x_mean = x.mean(axis=0)
    xc = x - x_mean
    weights = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ target)
    return {"weights": weights.astype(np.float32), "bias": (means - x_mean @ weights).astype(np.float32)}


def choose_parameters(emb: np.ndarray, out: Outcomes, prices: np.ndarray) -> dict:
    """Every candidate's validation score; the best one."""
    val = validation_mask(out.prompts)
    train = ~val
    complete_val = val & np.isfinite(out.scores).all(axis=1)
    y_train, known = out.scores[train], np.isfinite(out.scores[train])
    filled, means = np.where(known, y_train, 0.0).astype(np.float32), np.nan_to_num(np.nanmean(y_train, axis=0))
    queries, y_val = emb[complete_val], out.scores[complete_val]
    trials, knn_est = [], {}
    for k, prior, temperature in itertools.product(K_GRID, PRIOR_GRID, TEMPERATURE_GRID):
        est = knn_est[k, prior, temperature] = knn_estimate(emb[train], filled, known, means, queries, k, prior, temperature)
        trials.append({"method": "knn", "k": k, "prior": prior, "temperature": temperature,
                       "score": round(validation_score(y_val, prices, est), 4)})
    best_knn = max(trials, key=lambda t: t["score"])
    knn_best_est = knn_est[best_knn["k"], best_knn["prior"], best_knn["temperature"]]
    for alpha, share in itertools.product(RIDGE_ALPHAS, HEAD_SHARES):
        est = share * head_estimate(fit_ridge(emb[train], out.scores[train], alpha), queries) + (1 - share) * knn_best_est
        trials.append({"method": "head", "alpha": alpha, "head_share": share,
                       "score": round(validation_score(y_val, prices, est), 4)})
    best = max(trials, key=lambda t: t["score"])
    return {"best": best, "best_knn": best_knn, "validation_prompts": int(complete_val.sum()),
            "train_prompts": int(train.sum()), "trials": trials}


def build_profile(out: Outcomes, emb: np.ndarray, name: str, force_method: str | None = None) -> tuple[Profile, dict]:
    missing = [m for m in out.models if m not in out.prices]
    # without prices the validation curve is quality only: every model costs the same
    prices = np.array([out.prices.get(m, 1.0) for m in out.models], dtype=np.float32)
    choice = choose_parameters(emb, out, prices)
    best = choice["best"] if force_method != "knn" else choice["best_knn"]
    knn = choice["best_knn"]
    head = fit_ridge(emb, out.scores, best["alpha"]) if best["method"] == "head" else None
    meta = {"source": out.source, "prompts": len(out.prompts), "unpriced_models": missing,
            "price_source": out.price_source, "validation": {k: v for k, v in choice.items() if k != "trials"},
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    profile = Profile(name, out.models, emb, out.scores, dict(out.prices), knn["k"], knn["prior"],
                      knn["temperature"], head, best.get("head_share", 1.0), meta)
    return profile, choice


def run_profile_build(args) -> int:
    from control.selection.embed import embed_texts

    out = load_outcomes(Path(args.outcomes))
    if getattr(args, "prices", None):
        out.prices, out.price_source = read_price_file(Path(args.prices), out.models)
    name = getattr(args, "name", None) or Path(args.out).name
    started = time.perf_counter()
    emb = embed_texts(out.prompts, getattr(args, "triton_url", None))
    embed_s = time.perf_counter() - started
    profile, choice = build_profile(out, emb, name, getattr(args, "method", None))
    profile.meta["embed_seconds"] = round(embed_s, 1)
    profile.save(Path(args.out))
    size = sum(f.stat().st_size for f in Path(args.out).iterdir())
    print(json.dumps({"profile": str(args.out), "method": profile.method, "models": len(profile.models),
                      "prompts": len(out.prompts), "bytes": size, "embed_seconds": round(embed_s, 1),
                      "validation": profile.meta["validation"]}, indent=1))
    return 0
