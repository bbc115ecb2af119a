"""Cost of one quality estimate (per request, in the gateway's event loop): a shipped profile's
k-NN, its ridge head, and the blend, on the profile's own rows as queries. Prints µs per estimate
and the ratio to the head alone; writes bench/results/selection_estimate.json.

    PYTHONPATH=. python bench/selection_estimate.py [profiles/multi_model ...]
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from control.selection.build import fit_ridge
from control.selection.profile import Profile

REPO = Path(__file__).resolve().parents[1]
QUERIES = 300


def per_estimate_us(profile: Profile, queries: np.ndarray, all_blas_threads: bool = False) -> dict:
    # all_blas_threads: the same estimate without the one-BLAS-thread limit Profile.estimate sets
    one = (lambda q: profile.estimate_batch(q[None, :])) if all_blas_threads else profile.estimate
    one(queries[0])  # warm
    samples = []
    for q in queries:
        t = time.perf_counter()
        one(q)
        samples.append((time.perf_counter() - t) * 1e6)
    samples.sort()
    return {"median_us": round(statistics.median(samples), 1), "p99_us": round(samples[int(0.99 * len(samples))], 1)}


def measure(directory: Path) -> dict:
    base = Profile.load(directory)
    rng = np.random.default_rng(0)
    queries = base.embeddings[rng.choice(len(base.embeddings), QUERIES, replace=False)]
    head = base.head or fit_ridge(base.embeddings, base.scores, 10.0)
    variants = {"knn": Profile(base.name, base.models, base.embeddings, base.scores, k=base.k, prior=base.prior,
                               temperature=base.temperature),
                "head": Profile(base.name, base.models, base.embeddings, base.scores, head=head, head_share=1.0),
                "blend": Profile(base.name, base.models, base.embeddings, base.scores, k=base.k, prior=base.prior,
                                 temperature=base.temperature, head=head, head_share=0.5)}
    out = {name: per_estimate_us(p, queries) for name, p in variants.items()}
    out["knn_all_blas_threads"] = per_estimate_us(variants["knn"], queries, all_blas_threads=True)
    for name in out:
        out[name]["x_head"] = round(out[name]["median_us"] / out["head"]["median_us"], 1)
    import os
    return {"profile": str(directory), "load_avg_1m": round(os.getloadavg()[0], 1), "rows": len(base.embeddings), "models": len(base.models), "k": base.k,
            "shipped_method": base.method, **out}


def main(argv: list[str]) -> int:
    dirs = [Path(a) for a in argv] or sorted(p for p in (REPO / "profiles").iterdir() if (p / "profile.json").exists())
    results = [measure(d) for d in dirs]
    for r in results:
        print(json.dumps(r))
    out = REPO / "bench" / "results" / "selection_estimate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
