"""Learned model selection's pure parts: profiles (estimates, disk round trip), outcome tables,
quality-vs-cost curves, the quality and budget selectors' logic. No Triton: embeddings here
are synthetic unit vectors (tests/test_selection_cli.py embeds real prompts through Triton)."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from control.selection import curve
from control.selection.build import build_profile, fit_ridge
from control.selection.outcomes import Outcomes, load_outcomes
from control.selection.prices import mmlu_pro_prices
from control.selection.profile import Profile
from control.selection.selectors import BudgetPacer, Scored, by_lambda, by_tolerance


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def two_kinds(n: int = 200, dim: int = 16, seed: int = 0):
    """Prompts of two kinds around two directions; model "a" solves kind 0, "b" kind 1."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:2] * 3
    kind = rng.integers(0, 2, n)
    emb = _unit(centres[kind] + rng.normal(size=(n, dim)))
    scores = np.stack([kind == 0, kind == 1], axis=1).astype(np.float32)
    return emb, scores, kind, centres


def test_knn_estimate_follows_the_neighbours_and_falls_back_to_the_mean():
    emb, scores, _, centres = two_kinds()
    profile = Profile("t", ["a", "b"], emb, scores, k=20, prior=1.0, temperature=0.1)
    near_a = profile.estimate(_unit(centres[:1])[0])
    assert near_a["a"] > 0.8 and near_a["b"] < 0.2
    # few neighbours (k=1) and a strong prior: the estimate stays near each model's mean
    shrunk = Profile("t", ["a", "b"], emb, scores, k=1, prior=1000.0).estimate(_unit(centres[:1])[0])
    assert abs(shrunk["a"] - scores[:, 0].mean()) < 0.01


def test_missing_outcomes_are_not_read_as_zero():
    emb, scores, _, centres = two_kinds()
    scores[:, 1] = np.nan
    scores[:10, 1] = 1.0   # model b: ten known outcomes, all solved
    est = Profile("t", ["a", "b"], emb, scores, k=50, prior=1.0).estimate(_unit(centres[1:2])[0])
    assert est["b"] > 0.9


def test_profile_round_trip_keeps_the_estimates(tmp_path):
    emb, scores, _, centres = two_kinds()
    head = fit_ridge(emb, scores, 1.0)
    for original in (Profile("t", ["a", "b"], emb, scores, {"a": 1.0, "b": 2.0}, k=20),
                     Profile("t", ["a", "b"], emb, scores, k=20, head=head, head_share=0.5)):
        loaded = Profile.load(original.save(tmp_path / original.method))
        queries = _unit(centres + 0.1)
        assert np.abs(loaded.estimate_batch(queries) - original.estimate_batch(queries)).max() < 0.02
        assert loaded.prices == original.prices and loaded.method == original.method


def test_load_refuses_a_directory_without_a_profile(tmp_path):
    with pytest.raises(FileNotFoundError, match="semroute profile build"):
        Profile.load(tmp_path)


def test_long_form_outcomes_csv_and_jsonl(tmp_path):
    csv_file = tmp_path / "o.csv"
    csv_file.write_text("prompt,model,score\nhi,a,1\nhi,b,0.5\nbye,a,0\n")
    out = load_outcomes(csv_file)
    assert out.prompts == ["hi", "bye"] and out.models == ["a", "b"]
    assert out.scores[0].tolist() == [1.0, 0.5] and np.isnan(out.scores[1, 1])
    jsonl = tmp_path / "o.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in [{"prompt": "x", "model": "m", "score": 0.25}]))
    assert load_outcomes(jsonl).scores.tolist() == [[0.25]]


@pytest.mark.parametrize("body, needle", [("prompt,model\nx,a\n", "missing: score"),
                                          ("prompt,model,score\nx,a,good\n", "row 1: score 'good'"),
                                          ("prompt,model,score\nx,a,3\n", "must lie in \\[0, 1\\]")])
def test_bad_outcome_tables_say_why(tmp_path, body, needle):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(ValueError, match=needle):
        load_outcomes(path)


def test_every_mmlu_pro_model_has_a_price_and_says_where_it_came_from():
    models = ["gemini-1.5-pro-002", "Llama-2-7b-hf", "Qwen1.5-110B", "Mixtral-8x7B-Instruct-v0.1", "Phi-3-mini-4k-instruct"]
    prices, sources = mmlu_pro_prices(models)
    assert prices["gemini-1.5-pro-002"] == pytest.approx(6.25) and sources["gemini-1.5-pro-002"].startswith("list price")
    assert sources["Llama-2-7b-hf"].startswith("parameter count") and prices["Llama-2-7b-hf"] < prices["Qwen1.5-110B"]
    with pytest.raises(ValueError, match="no price for model 'mystery'"):
        mmlu_pro_prices(["mystery"])


def test_references_and_curve_on_a_small_table():
    scores = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    prices = np.array([1.0, 4.0], dtype=np.float32)
    refs = curve.references(scores, prices, ["cheap", "dear"])
    assert refs["oracle"] == {"quality": 0.75, "cost": 1.75}   # rows 0 and 2, 3: cheap; row 1: dear
    assert refs["random"]["quality"] == 0.5 and refs["best_single"]["model"] == "cheap"  # a tie: the first
    perfect = scores + 0.01 * (prices[None, :] == 1)   # estimates that know every outcome
    points = curve.curve(scores, prices, perfect, "tolerance")
    assert points[0] == {"tolerance": 0.0, "quality": 0.75, "cost": 1.75}
    assert curve.quality_at_cost(points, 1.0) is None          # row 1 always goes dear
    assert curve.quality_at_cost(points, 2.0)["quality"] == 0.75
    lam = curve.curve(scores, prices, perfect, "lambda")
    at_one = curve.quality_at_cost(lam, 1.0)   # a large λ: always the cheap model
    assert (at_one["quality"], at_one["cost"]) == (0.5, 1.0) and at_one["lambda"] > 0.25
    assert curve.cost_at_quality(points, 0.75)["cost"] == 1.75 and curve.cost_at_quality(points, 0.9) is None


def test_build_chooses_on_validation_and_separates_the_kinds():
    emb, scores, kind, centres = two_kinds(400)
    out = Outcomes([f"p{i}" for i in range(len(emb))], ["a", "b"], scores, {"a": 1.0, "b": 1.0})
    profile, choice = build_profile(out, emb, "t")
    assert choice["validation_prompts"] + choice["train_prompts"] == 400 and choice["validation_prompts"] > 40
    est = profile.estimate_batch(_unit(centres))
    assert est[0, 0] > est[0, 1] and est[1, 1] > est[1, 0]
    assert profile.meta["validation"]["best"]["score"] >= profile.meta["validation"]["best_knn"]["score"]


def test_quality_tolerance_takes_the_cheapest_near_the_best():
    cands = [Scored("dear", 0.80, 10.0), Scored("mid", 0.78, 2.0), Scored("cheap", 0.60, 0.5), Scored("none", None, 0.0)]
    sel = by_tolerance(cands, 0.05)
    assert sel.ranked == ["mid", "dear", "cheap", "none"]
    assert "tolerance 0.05" in sel.reason and sel.explained[0]["estimate"] == 0.78
    assert by_tolerance(cands, 0.0).ranked[0] == "dear" and by_tolerance(cands, 0.5).ranked[0] == "cheap"


def test_quality_lambda_trades_score_for_price():
    cands = [Scored("dear", 0.80, 10.0), Scored("cheap", 0.60, 0.5)]
    assert by_lambda(cands, 0.0).ranked == ["dear", "cheap"]
    sel = by_lambda(cands, 0.05)   # 0.80 − 0.5 < 0.60 − 0.025
    assert sel.ranked == ["cheap", "dear"] and sel.explained[0]["value"] == pytest.approx(0.575)
    assert by_lambda([Scored("x", None, 1.0)], 1.0).ranked == ["x"]


@pytest.mark.parametrize("target", [6.0, 10.0, 20.0])
def test_budget_pacing_tracks_spend_per_hour(target):
    """One request a second, a cheap (0.001 USD) and a dear (0.01 USD) backend, the dear one
    better by a random margin: whatever λ starts at, the last hour's spend lands on the target
    (all-cheap would spend 3.6 USD/h, all-dear 36)."""
    now = [0.0]
    pacer = BudgetPacer(target, initial_lambda=1.0, clock=lambda: now[0])
    rng, spent = random.Random(1), []
    for second in range(3 * 3600):
        now[0] = float(second)
        cands = [Scored("cheap", 0.5, 0.001), Scored("dear", 0.5 + rng.uniform(0, 0.2), 0.01)]
        cost = 0.001 if by_lambda(cands, pacer.lam, "budget").ranked[0] == "cheap" else 0.01
        pacer.record(cost)
        spent.append(cost)
    assert sum(spent[-3600:]) == pytest.approx(target, rel=0.1)
    assert pacer.explain()["usd_per_hour_now"] == pytest.approx(target, rel=0.25)


def test_budget_is_pacing_not_a_cap():
    now = [0.0]
    pacer = BudgetPacer(1.0, initial_lambda=1.0, clock=lambda: now[0])
    before = pacer.lam
    pacer.record(5.0)          # a burst far over the hour's target is recorded, never refused
    now[0] = 60.0
    pacer.record(0.0)
    assert pacer.lam > before  # and makes later picks cheaper
    with pytest.raises(ValueError):
        BudgetPacer(0.0)


# --- the selectors inside the decision core (pure: a stored prompt embedding, no Triton) ------

def _decision_config(with_profiles: bool = True, **routing):
    from control.config import Config

    def backend(name, price, profile, pii="allow"):
        out = {"name": name, "url": f"http://{name}.invalid/v1", "model": name, "price": {"input": price, "output": price}, "pii": pii}
        return {**out, "profile": profile} if with_profiles else out
    return Config.model_validate({"backends": [backend("cheap", 0.05, "gemma-2-9b-it"),
                                               backend("coder", 0.1, "qwen2.5-7b-instruct", pii="block"),
                                               backend("strong", 0.45, "llama-3.1-nemotron-51b-instruct")],
                                  "routing": {"default": "cheap", **routing}})


def _signals_near_a_qwen_prompt(pii):
    """Signals whose embedding is a profiled prompt on which qwen's estimate leads by a margin."""
    from control.signals import ReadInfo, Signals
    from control.selection.runtime import load_profile

    profile = load_profile("multi_model")
    est = profile.estimate_batch(profile.embeddings[:2000])
    qwen = profile.models.index("qwen2.5-7b-instruct")
    margin = est[:, qwen] - np.delete(est, qwen, axis=1).max(axis=1)
    row = int(np.argmax(margin))
    assert margin[row] > 0.05
    return Signals(domain={"math": 1.0}, task={"coding": 1.0}, jailbreak_prob=0.0, strong_prob=0.5, pii=pii,
                   read=ReadInfo(20, 1, 256), embedding=profile.embeddings[row])


def test_quality_ranking_is_still_narrowed_by_pii():
    from control.decision import RequestFeatures, decide
    from control.pii import PiiSpan

    request = RequestFeatures(prompt="x", prompt_tokens=20)
    clean = decide(_signals_near_a_qwen_prompt([]), request, _decision_config(quality={"profile": "multi_model", "tolerance": 0.0}))
    assert clean.rule == "quality" and clean.backend == "coder"
    ranking = [c["backend"] for c in clean.details["quality"]["candidates"]]
    email = PiiSpan("EMAIL_ADDRESS", 0, 7, "a@b.org", "pattern", 1.0)
    with_pii = decide(_signals_near_a_qwen_prompt([email]), request, _decision_config(quality={"profile": "multi_model", "tolerance": 0.0}))
    assert with_pii.rule == "quality" and "coder" in with_pii.dropped
    assert with_pii.backend == ranking[1]   # the next in the quality ranking, not the default


def test_quality_without_any_profiled_backend_leaves_the_decision_to_the_default():
    from control.decision import RequestFeatures, decide

    decision = decide(_signals_near_a_qwen_prompt([]), RequestFeatures(prompt="x", prompt_tokens=20),
                      _decision_config(with_profiles=False, quality={"profile": "multi_model", "lambda": 0.1}))
    assert decision.rule == "default" and decision.backend == "cheap"


def test_apgr_agrees_with_the_strong_heads_evaluation():
    """eval-selection's APGR is computed as export/evaluate.py computes the strong head's."""
    from export.metrics import routing_metrics

    rng = np.random.default_rng(3)
    weak, strong = rng.integers(0, 2, 500).astype(float), rng.integers(0, 2, 500).astype(float)
    strong[:200] = 1.0
    gain = (strong - weak) + rng.normal(0, 1.0, 500)
    ours, theirs = curve.apgr(gain, weak, strong), routing_metrics(gain, weak, strong)
    for key in ("apgr", "cpt_50", "cpt_80", "weak_score", "strong_score"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9)
    assert curve.apgr(gain, weak, weak)["apgr"] is None
