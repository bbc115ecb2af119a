"""Quality against cost of a selector over an outcome table (pure numpy: used by
`semroute eval-selection` and by the profile build's validation).

A table's cost is the mean price of the chosen models (USD per 1M tokens, input + output:
the DC-Router goal's unit), its quality the mean realised score of the chosen models.
"""
from __future__ import annotations

import numpy as np

LAMBDAS = tuple(float(x) for x in np.concatenate([[0.0], np.geomspace(1e-3, 2.0, 40)]))
TOLERANCES = tuple(float(x) for x in np.concatenate([[0.0], np.geomspace(1e-3, 0.5, 40)]))


def pick_by_lambda(estimates: np.ndarray, prices: np.ndarray, lam: float) -> np.ndarray:
    """Per row, the model maximising estimate − λ·price (ties: the cheaper)."""
    value = estimates - lam * prices[None, :] - 1e-9 * prices[None, :]
    return value.argmax(axis=1)


def pick_by_tolerance(estimates: np.ndarray, prices: np.ndarray, tolerance: float) -> np.ndarray:
    """Per row, the cheapest model whose estimate is within `tolerance` of the row's best."""
    ok = estimates >= estimates.max(axis=1, keepdims=True) - tolerance
    masked = np.where(ok, prices[None, :], np.inf)
    return masked.argmin(axis=1)


def realised(scores: np.ndarray, prices: np.ndarray, picks: np.ndarray) -> tuple[float, float]:
    rows = np.arange(len(picks))
    return float(scores[rows, picks].mean()), float(prices[picks].mean())


def curve(scores, prices, estimates, kind: str = "lambda") -> list[dict]:
    """[{lambda|tolerance, quality, cost}] over the setting's grid."""
    grid, pick = (LAMBDAS, pick_by_lambda) if kind == "lambda" else (TOLERANCES, pick_by_tolerance)
    points = []
    for setting in grid:
        q, c = realised(scores, prices, pick(estimates, prices, setting))
        points.append({kind: round(setting, 6), "quality": round(q, 4), "cost": round(c, 4)})
    return points


def references(scores: np.ndarray, prices: np.ndarray, models: list[str]) -> dict:
    """Best single model, oracle (per prompt the best score, cheapest on ties) and random."""
    means = scores.mean(axis=0)
    best = int(np.argmax(means))
    top = scores >= scores.max(axis=1, keepdims=True) - 1e-9
    oracle_pick = np.where(top, prices[None, :], np.inf).argmin(axis=1)
    q, c = realised(scores, prices, oracle_pick)
    return {"best_single": {"model": models[best], "quality": round(float(means[best]), 4), "cost": round(float(prices[best]), 4)},
            "oracle": {"quality": round(q, 4), "cost": round(c, 4)},
            "random": {"quality": round(float(means.mean()), 4), "cost": round(float(prices.mean()), 4)},
            "single_models": [{"model": m, "quality": round(float(s), 4), "cost": round(float(p), 4)}
                              for m, s, p in zip(models, means, prices)]}


def quality_at_cost(points: list[dict], budget: float) -> dict | None:
    """The best-quality setting costing at most `budget` (None when every setting costs more)."""
    within = [p for p in points if p["cost"] <= budget + 1e-9]
    return max(within, key=lambda p: (p["quality"], -p["cost"])) if within else None


def cost_at_quality(points: list[dict], quality: float) -> dict | None:
    """The cheapest setting reaching `quality` (None when none does)."""
    reach = [p for p in points if p["quality"] >= quality - 1e-9]
    return min(reach, key=lambda p: (p["cost"], -p["quality"])) if reach else None


def summary(points: list[dict], best: dict) -> dict:
    at_cost, at_quality = quality_at_cost(points, best["cost"]), cost_at_quality(points, best["quality"])
    cheap = quality_at_cost(points, 0.15 * best["cost"])
    return {"quality_at_best_single_cost": at_cost,
            "cost_at_best_single_quality": at_quality,
            "cost_share_at_best_single_quality": round(at_quality["cost"] / best["cost"], 4) if at_quality and best["cost"] else None,
            "quality_at_15pct_of_best_single_cost": cheap,
            "max_quality": max(points, key=lambda p: (p["quality"], -p["cost"]))}


def apgr(gain_estimate, weak_score, strong_score) -> dict:
    """RouteLLM's APGR, CPT(50%) and CPT(80%) (export/evaluate.py reports the strong head's the
    same way; tests/test_selection.py checks the two agree): prompts sent to the strong model in
    order of estimated gain, one at a time; APGR is the area under the performance-gap-recovered
    curve over the strong-call share."""
    w, s = np.asarray(weak_score, dtype=np.float64), np.asarray(strong_score, dtype=np.float64)
    n = len(w)
    order = np.argsort(-np.asarray(gain_estimate, dtype=np.float64), kind="mergesort")
    quality = (w.sum() + np.concatenate([[0.0], np.cumsum((s - w)[order])])) / n
    shares = np.linspace(0, 1, n + 1)
    out = {"n": int(n), "weak_score": float(w.mean()), "strong_score": float(s.mean())}
    gap = s.mean() - w.mean()
    if gap == 0:   # no quality gap to recover: undefined
        return {**out, "apgr": None, "cpt_50": None, "cpt_80": None}
    recovered = (quality - w.mean()) / gap
    out["apgr"] = float(np.sum((recovered[1:] + recovered[:-1]) / 2 * np.diff(shares)))
    for target in (0.5, 0.8):
        hit = np.nonzero(recovered >= target)[0]
        out[f"cpt_{int(target * 100)}"] = float(shares[hit[0]]) if len(hit) else 1.0
    return out


def validation_score(scores, prices, estimates) -> float:
    """One number to choose a profile's parameters by (on a validation split, never eval/):
    the curve's best quality within 15%, 30%, 50% and 100% of the best single model's cost,
    plus its top quality, averaged."""
    points = curve(scores, prices, estimates, "lambda") + curve(scores, prices, estimates, "tolerance")
    best_cost = float(prices[int(np.argmax(scores.mean(axis=0)))])
    floor = float(scores[:, int(np.argmin(prices))].mean())
    parts = [(quality_at_cost(points, share * best_cost) or {"quality": floor})["quality"] for share in (0.15, 0.3, 0.5, 1.0)]
    return float(np.mean(parts + [max(p["quality"] for p in points)]))
