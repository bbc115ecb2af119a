"""Operating points chosen after training, on training data only (dev split or train split):
recommended safety thresholds, per-type PII decoding thresholds, the languages the heads can
be trusted on, and the traffic-like mix the strong-share calibration is computed on.

They travel in the weights' metadata into the model config, where the gateway reads them.
eval/ never enters here.
"""
from __future__ import annotations

import numpy as np

from export import metrics
from modelspec import labels

PII_GRID = tuple(round(x, 2) for x in np.arange(0.30, 0.96, 0.05))
LANGUAGE_MIN_AUC = 0.9       # a language counts as covered when the harmful head separates it this well on dev
LANGUAGE_MIN_EXAMPLES = 20   # ... with at least this many dev examples of each class
# Sources that look like what users send a router, and how many of each the calibration takes.
TRAFFIC_MIX = {"clinc_small_talk": 400, "clinc_other": 400, "dolly": 1200, "t0": 300, "routellm_mmlu": 600,
               "routellm_gsm8k": 200, "mmlu_pro": 600, "dc_router": 800, "mbpp": 200, "math_competition": 200,
               "medquad": 200, "coconot_benign": 300, "belle_zh": 100, "xquad_en": 200}


def safety_threshold(benign_scores, max_fpr: float) -> float:
    """The lowest threshold (never under 0.5) that flags at most max_fpr of benign prompts."""
    scores = np.asarray(benign_scores, dtype=np.float64)
    return round(float(max(0.5, np.quantile(scores, 1 - max_fpr))) if len(scores) else 0.5, 4)


def best_type(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per token: the index of the entity type with the most mass m_t = p(B-t) + p(I-t), and that
    mass (the serving decode rule, control/pii/decode.py)."""
    mass = probs[:, 1::2] + probs[:, 2::2]
    best = mass.argmax(-1)
    return best, mass[np.arange(len(best)), best]


def token_types(probs: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """Per token: 1 + index of the entity type, or 0: the best type counts when its mass reaches
    its type's threshold."""
    best, top = best_type(probs)
    limit = np.array([thresholds.get(t, 0.5) for t in labels.PII_TYPES])[best]
    return np.where(top >= limit, best + 1, 0)


def _gold_types(tags: np.ndarray) -> np.ndarray:
    return np.where(tags > 0, (tags - 1) // 2 + 1, 0)


def pii_thresholds(gold_tags: list, probs: list[np.ndarray]) -> dict[str, float]:
    """Per type, the grid threshold with the best token-level F1 of that type on dev."""
    pairs = [(np.asarray(g), p) for g, p in zip(gold_tags, probs) if g is not None]
    keep = [np.asarray(g) != -100 for g, _ in pairs]
    gold = np.concatenate([_gold_types(g[k]) for (g, _), k in zip(pairs, keep)])
    prob = np.concatenate([p[k] for (_, p), k in zip(pairs, keep)])
    best, top = best_type(prob)
    out = {}
    for i, name in enumerate(labels.PII_TYPES):
        is_gold = gold == i + 1
        if not is_gold.any():
            continue
        f1 = []
        for t in PII_GRID:
            pred = (best == i) & (top >= t)
            tp = int((pred & is_gold).sum())
            f1.append(2 * tp / max(int(pred.sum()) + int(is_gold.sum()), 1))
        out[name] = PII_GRID[int(np.argmax(f1))]
    return out


def covered_languages(langs: list[str], harmful_target: np.ndarray, harmful_score: np.ndarray) -> tuple[list[str], dict]:
    """Languages whose dev examples hold both classes and which the harmful head separates."""
    langs_arr = np.asarray(langs)
    table, covered = {}, []
    for lang in sorted(set(langs)):
        m = (langs_arr == lang) & (harmful_target >= 0)
        pos, neg = int((harmful_target[m] > 0.5).sum()), int((harmful_target[m] <= 0.5).sum())
        auc = metrics.roc_auc(harmful_target[m] > 0.5, harmful_score[m]) if pos and neg else float("nan")
        table[lang] = {"harmful_pos": pos, "benign": neg, "harmful_auc": None if np.isnan(auc) else round(float(auc), 4)}
        if min(pos, neg) >= LANGUAGE_MIN_EXAMPLES and auc >= LANGUAGE_MIN_AUC:
            covered.append(lang)
    return covered or ["en"], table


def traffic_mix(sources: list[str], rng: np.random.Generator) -> np.ndarray:
    """Indices of a traffic-like sample: TRAFFIC_MIX's sources, each capped."""
    by_source: dict[str, list[int]] = {}
    for i, s in enumerate(sources):
        if s in TRAFFIC_MIX:
            by_source.setdefault(s, []).append(i)
    picks = [rng.choice(idx, size=min(TRAFFIC_MIX[s], len(idx)), replace=False) for s, idx in sorted(by_source.items())]
    return np.concatenate(picks) if picks else np.array([], dtype=int)
