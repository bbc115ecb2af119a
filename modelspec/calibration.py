"""strong_prob calibration: which threshold sends about a given share of prompts to the strong
model. The training writes the table (export/train.py), the gateway reads it from the served
config to turn `routing.strong.target_share` into a threshold. Computed on a traffic-like mix of training prompts (export/thresholds.TRAFFIC_MIX:
small talk, instructions, exam and math questions, code), never on eval data.

Shipped twice, same content: in the weights metadata ("calibration") and as
export/weights/calibration.json next to the weights:
    {"source": ..., "n": N, "table": [{"strong_share": 0.3, "threshold": 0.41}, ...]}
A threshold t sends the prompts with strong_prob >= t to the strong model.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SHARES = tuple(round(x, 2) for x in np.arange(0.05, 1.0, 0.05))
SOURCE = "strong_prob on a traffic-like mix of training prompts (export/thresholds.TRAFFIC_MIX), training split"


def table(strong_probs, shares=SHARES) -> dict:
    """Threshold per share: the (1 - share) quantile of strong_prob on the training prompts."""
    p = np.sort(np.asarray(strong_probs, dtype=np.float64))
    rows = [{"strong_share": float(s), "threshold": round(float(np.quantile(p, 1.0 - s)), 6)} for s in shares]
    return {"source": SOURCE, "n": int(len(p)), "table": rows}


def threshold_for(calib: dict, share: float) -> float:
    """Threshold for a wanted strong-call share, interpolated between table rows."""
    rows = calib["table"]
    xs = np.array([r["strong_share"] for r in rows])
    ys = np.array([r["threshold"] for r in rows])
    return float(np.interp(share, xs, ys))


def write(calib: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(calib, indent=1) + "\n", encoding="utf-8")
    return path


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
