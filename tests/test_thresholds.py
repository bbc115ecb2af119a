"""Operating points chosen on training data (export/thresholds.py): pure functions, hand-made inputs."""
from __future__ import annotations

import numpy as np

from export import thresholds
from modelspec import labels


def _probs(rows: list[dict[str, float]]) -> np.ndarray:
    """Softmax-like rows over PII_TAGS from {tag: probability}; the rest of the mass on O."""
    out = np.zeros((len(rows), len(labels.PII_TAGS)))
    for i, row in enumerate(rows):
        for tag, p in row.items():
            out[i, labels.PII_TAGS.index(tag)] = p
        out[i, 0] = 1 - sum(row.values())
    return out


def test_token_types_sum_b_and_i_and_apply_the_types_threshold():
    probs = _probs([{"B-PERSON": 0.3, "I-PERSON": 0.3}, {"B-PERSON": 0.3, "I-PERSON": 0.3}, {"B-ZIP_CODE": 0.45}])
    # PERSON mass 0.6: over a 0.5 threshold, under a 0.7 one; ZIP 0.45 loses to O (0.55) only by its threshold
    assert thresholds.token_types(probs, {"PERSON": 0.5}).tolist()[:2] == [1, 1]
    assert thresholds.token_types(probs, {"PERSON": 0.7}).tolist()[:2] == [0, 0]
    zip_index = labels.PII_TYPES.index("ZIP_CODE") + 1
    assert thresholds.token_types(probs, {"ZIP_CODE": 0.4}).tolist()[2] == zip_index
    assert thresholds.token_types(probs, {}).tolist()[2] == 0


def test_pii_thresholds_pick_the_best_f1_per_type():
    # gold: two PERSON tokens the model is unsure of (0.55) and one O token it wrongly likes (0.5)
    gold = [[-100, 1, 2, 0, -100]]
    probs = [_probs([{}, {"B-PERSON": 0.55}, {"I-PERSON": 0.55}, {"B-PERSON": 0.5}, {}])]
    chosen = thresholds.pii_thresholds(gold, probs)
    assert set(chosen) == {"PERSON"} and 0.5 < chosen["PERSON"] <= 0.55


def test_safety_threshold_keeps_the_false_positive_budget_and_never_goes_under_half():
    benign = np.linspace(0, 1, 1001)
    assert abs(thresholds.safety_threshold(benign, 0.01) - 0.99) < 1e-3
    assert thresholds.safety_threshold(np.zeros(100), 0.01) == 0.5


def test_covered_languages_need_both_classes_and_separation():
    langs = ["en"] * 60 + ["zh"] * 60 + ["es"] * 30
    target = np.array([1.0] * 30 + [0.0] * 30 + [1.0] * 30 + [0.0] * 30 + [0.0] * 30)
    score = np.array([0.9] * 30 + [0.1] * 30 + [0.5] * 60 + [0.1] * 30)   # zh: no separation; es: benign only
    covered, table = thresholds.covered_languages(langs, target, score)
    assert covered == ["en"] and table["zh"]["harmful_auc"] == 0.5 and table["es"]["harmful_pos"] == 0
