"""Metrics shared by training-time model selection and `semroute eval`: plain numpy."""
from __future__ import annotations

import numpy as np


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def confusion(y_true, y_pred, n: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        m[int(t), int(p)] += 1
    return m


def macro_f1(y_true, y_pred, n: int) -> float:
    """Mean F1 over the classes that occur in y_true (absent classes would score 0 by fiat)."""
    m = confusion(y_true, y_pred, n)
    f1s = []
    for c in range(n):
        if m[c].sum() == 0:
            continue
        tp = m[c, c]
        prec = tp / max(m[:, c].sum(), 1)
        rec = tp / m[c].sum()
        f1s.append(0.0 if tp == 0 else 2 * prec * rec / (prec + rec))
    return float(np.mean(f1s)) if f1s else float("nan")


def roc_auc(y, score) -> float:
    """Rank-based AUC (Mann-Whitney U)."""
    y, score = np.asarray(y, dtype=bool), np.asarray(score, dtype=np.float64)
    pos, neg = y.sum(), (~y).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    order = score.argsort(kind="mergesort")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    # average ranks of ties
    for v in np.unique(score[np.diff(np.sort(score), prepend=np.nan) == 0]):
        idx = score == v
        ranks[idx] = ranks[idx].mean()
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


# ---------- strong/weak routing (RouteLLM, Ong et al. 2024, section 5) ----------

def routing_curve(strong_prob, weak_score, strong_score, points: int = 101):
    """Sweep the threshold over the router's scores: for each share of calls sent to the
    strong model (most strong-needing first), the mean quality. Returns (shares, quality)."""
    p = np.asarray(strong_prob, dtype=np.float64)
    w, s = np.asarray(weak_score, dtype=np.float64), np.asarray(strong_score, dtype=np.float64)
    order = np.argsort(-p, kind="mergesort")
    n = len(p)
    # quality when the top-k prompts go to the strong model
    gain = np.concatenate([[0.0], np.cumsum((s - w)[order])])
    shares = np.linspace(0, 1, points)
    ks = np.round(shares * n).astype(int)
    quality = (w.sum() + gain[ks]) / n
    return shares, quality


def pgr(quality, weak_mean: float, strong_mean: float):
    return (np.asarray(quality) - weak_mean) / (strong_mean - weak_mean)


def routing_metrics(strong_prob, weak_score, strong_score, points: int = 101) -> dict:
    """APGR (area under PGR vs strong-call share), CPT(50%), CPT(80%): the smallest share of
    strong calls reaching 50% / 80% of the quality gap, as in the RouteLLM paper. Computed at
    every possible cut (one prompt at a time); the returned curve is resampled to `points`."""
    n = len(strong_prob)
    shares, quality = routing_curve(strong_prob, weak_score, strong_score, n + 1)
    w, s = float(np.mean(weak_score)), float(np.mean(strong_score))
    g = pgr(quality, w, s)
    trapz = getattr(np, "trapezoid", None) or np.trapz
    out = {"n": int(n), "weak_score": w, "strong_score": s, "apgr": float(trapz(g, shares))}
    for target in (0.5, 0.8):
        hit = np.nonzero(g >= target)[0]
        out[f"cpt_{int(target * 100)}"] = float(shares[hit[0]]) if len(hit) else 1.0
    idx = np.round(np.linspace(0, n, points)).astype(int)
    out["curve"] = {"strong_share": [round(float(shares[i]), 4) for i in idx],
                    "quality": [round(float(quality[i]), 5) for i in idx]}
    return out


# ---------- PII spans ----------

def span_prf(gold: list[list[tuple[int, int, str]]], pred: list[list[tuple[int, int, str]]], types) -> dict:
    """Exact-match span precision/recall/F1 per entity type and micro over all types.
    Spans are compared after stripping surrounding white space/punctuation offsets by the caller."""
    counts = {t: [0, 0, 0] for t in types}  # tp, n_pred, n_gold
    for g, p in zip(gold, pred):
        gs, ps = set(g), set(p)
        for (_, _, t) in gs:
            counts.setdefault(t, [0, 0, 0])[2] += 1
        for sp in ps:
            counts.setdefault(sp[2], [0, 0, 0])[1] += 1
            if sp in gs:
                counts[sp[2]][0] += 1
    out = {}
    for t, (tp, npred, ngold) in counts.items():
        out[t] = _prf(tp, npred, ngold)
    tot = np.array(list(counts.values())).sum(0) if counts else np.zeros(3)
    out["micro"] = _prf(*tot)
    return out


def _prf(tp, npred, ngold) -> dict:
    p = tp / npred if npred else 0.0
    r = tp / ngold if ngold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4),
            "support": int(ngold), "predicted": int(npred)}
