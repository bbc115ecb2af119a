"""Issue 14's goal table: `semroute eval-selection` on the three eval halves with the shipped
profiles (built from the train halves), as markdown for bench/RESULTS.md. The JSON and SVG of
each run go to bench/selection/<profile>/.

    PYTHONPATH=. python bench/selection_goals.py [--triton-url HOST:PORT]
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = (("multi_model", "eval/multi_model/dcrouter_scores.csv"),
        ("mmlu_pro", "eval/mmlu_pro/mmlu_pro_multimodel.csv"),
        ("routellm", "eval/routellm/mmlu_eval_half.csv"))
STRONG_HEAD_APGR_MMLU = 0.6245   # export/model_card/metrics.json: routing.routellm_mmlu_eval_half.apgr


def run(profile: str, table: str, extra: list[str]) -> dict:
    from bench.common import data_dir

    out = REPO / "bench" / "selection" / profile
    done = subprocess.run([str(Path(sys.executable).with_name("semroute")), "eval-selection",
                           "--outcomes", str(data_dir() / table), "--output-dir", str(out), *extra],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def fmt(point: dict | None, best: dict, key: str) -> str:
    if point is None:
        return "not reached"
    return f"{point['quality']:.3f} at {point['cost']:.3f} ({point['cost'] / best['cost']:.0%}; {key} {point[key]:g})"


def table(results: dict[str, dict]) -> str:
    lines = ["| eval half | prompts | best single (quality @ cost) | oracle | random | selector: best quality ≤ 15% of its cost "
             "| cheapest at its quality | quality at its cost | max quality |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        refs, lam, best = r["references"], r["lambda"], r["references"]["best_single"]
        lines.append(f"| {name} | {r['prompts']} | {best['model']} {best['quality']:.3f} @ {best['cost']:g} "
                     f"| {refs['oracle']['quality']:.3f} @ {refs['oracle']['cost']:.3f} | {refs['random']['quality']:.3f} @ {refs['random']['cost']:.3f} "
                     f"| {fmt(lam['quality_at_15pct_of_best_single_cost'], best, 'lambda')} "
                     f"| {fmt(lam['cost_at_best_single_quality'], best, 'lambda')} "
                     f"| {fmt(lam['quality_at_best_single_cost'], best, 'lambda')} "
                     f"| {fmt(lam['max_quality'], best, 'lambda')} |")
    if "routellm" in results and results["routellm"].get("apgr"):
        a = results["routellm"]["apgr"]
        lines.append(f"\nRouteLLM MMLU eval half: APGR of the quality selector {a['apgr']:.4f} (CPT50 {a['cpt_50']:.3f}, "
                     f"CPT80 {a['cpt_80']:.3f}) against the strong head's {STRONG_HEAD_APGR_MMLU}.")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    results = {name: run(name, path, argv) for name, path in RUNS}
    for name, r in results.items():
        print(name, r["method"], json.dumps(r["lambda"]), json.dumps(r["tolerance"]), file=sys.stderr)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
