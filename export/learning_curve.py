"""Evidence for the strong/weak goal: how APGR grows with labelled prompts, on training data
only (the dev split of the RouteLLM MMLU train half). A logistic regression on the frozen
all-MiniLM-L6-v2 embedding (the issue's baseline probe), on the MMLU subject alone (a
per-subject prior) and on both, each trained on 10%..100% of the training split.

    python -m export.learning_curve [--out export/model_card/strong_learning_curve.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from export import data, features, metrics
from export.model import load_encoder, mean_pool

FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def embed(texts: list[str]) -> np.ndarray:
    enc, tok = load_encoder(), features.load_tokenizer()
    ids, _ = features.encode(tok, texts, None, 256)
    out = np.zeros((len(texts), 384), np.float32)
    order = np.argsort([len(i) for i in ids])
    with torch.no_grad():
        for b in range(0, len(order), 64):
            idx = order[b:b + 64]
            x = features.pad([ids[i] for i in idx])
            m = (x != 0).long()
            out[idx] = torch.nn.functional.normalize(mean_pool(features.lower_layers(enc, x, m, 6), m), dim=-1).numpy()
    return out


def curve(seed: int = 0) -> dict:
    from sklearn.linear_model import LogisticRegression

    rows = data.Files(data.resolve_data_dir()).csv("train/routellm/mmlu_train_half.csv")
    exs = [data.Example(r["prompt"], "routellm_mmlu", r["prompt"].split("\nA. ")[0]) for r in rows]
    data.assign_splits(exs)
    dev = np.array([e.split == "dev" for e in exs])
    w = np.array([data._truthy(r["mixtral_8x7b_correct"]) for r in rows], float)
    s = np.array([data._truthy(r["gpt4_1106_correct"]) for r in rows], float)
    y = ((w == 0) & (s == 1)).astype(int)
    subjects = sorted({r["subject"] for r in rows})
    onehot = np.eye(len(subjects))[[subjects.index(r["subject"]) for r in rows]]
    emb = embed([r["prompt"] for r in rows])
    rng = np.random.default_rng(seed)
    out: dict = {"set": "RouteLLM MMLU train half, dev split", "n_dev": int(dev.sum())}
    for name, X in (("embedding", emb), ("subject_prior", onehot), ("embedding+subject", np.hstack([emb, onehot]))):
        for frac in FRACTIONS:
            pool = np.nonzero(~dev)[0]
            take = rng.choice(pool, int(frac * len(pool)), replace=False)
            p = LogisticRegression(max_iter=2000).fit(X[take], y[take]).predict_proba(X[dev])[:, 1]
            r = metrics.routing_metrics(p, w[dev], s[dev])
            out[f"{name}@{frac}"] = {"n_train": int(len(take)), "dev_auc": round(metrics.roc_auc(y[dev], p), 4),
                                     "dev_apgr": round(r["apgr"], 4), "dev_cpt50": round(r["cpt_50"], 4)}
    oracle = metrics.routing_metrics(y[dev].astype(float), w[dev], s[dev])
    out["oracle_label"] = {"dev_apgr": round(oracle["apgr"], 4), "dev_cpt50": round(oracle["cpt_50"], 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "model_card" / "strong_learning_curve.json")
    args = ap.parse_args()
    res = curve()
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
