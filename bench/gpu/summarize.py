"""The one results file of a bench/gpu/run.sh run: <out>/results.json, from what the steps left.

    python bench/gpu/summarize.py OUT_DIR [--device gpu]

Reads raw_torch.jsonl, perf_analyzer's pa_c*.csv and pa_half.csv (or the Python generator's
grpc_sweep.jsonl and grpc_half.csv), triton_metrics.txt and the log's step times, and states
each issue-18 GPU goal as met, not met or not measured. Standard library only (the GPU machine
has what its Python has). Missing steps are named, never invented.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

GOALS = {"triton_seq_per_s_at_seq32": (">=", 100_000), "p99_ms_at_half_load": ("<=", 10.0)}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")] if path.exists() else []


def csv_rows(paths) -> list[dict]:
    return [row for path in paths for row in csv.DictReader(path.open())]


def perf_analyzer(out: Path, rows_per_request: int) -> dict | None:
    sweep = csv_rows(sorted(out.glob("pa_c*.csv")))
    if not sweep:
        return None
    best = max(sweep, key=lambda r: float(r["Inferences/Second"]))
    half = csv_rows([out / "pa_half.csv"]) if (out / "pa_half.csv").exists() else []
    return {"tool": "perf_analyzer", "points": len(sweep),
            "peak_seq_per_s": float(best["Inferences/Second"]), "peak_concurrency": best.get("Concurrency"),
            "p99_ms_at_half_load": float(half[0]["p99 latency"]) / 1000 if half else None,
            "rows_per_request": rows_per_request}


def python_generator(out: Path) -> dict | None:
    sweep = jsonl(out / "grpc_sweep.jsonl")
    if not sweep:
        return None
    best = max(sweep, key=lambda r: r["seq_per_s"])
    half = csv_rows([out / "grpc_half.csv"]) if (out / "grpc_half.csv").exists() else []
    return {"tool": "bench/gpu/grpc_load.py (perf_analyzer could not run)", "points": len(sweep),
            "peak_seq_per_s": best["seq_per_s"], "peak_concurrency": best.get("concurrency"),
            "p99_ms_at_half_load": float(half[0]["p99_ms"]) if half else None, "rows_per_request": best.get("rows"),
            "sweep": sweep}


def verdict(name: str, value) -> dict:
    op, goal = GOALS[name]
    if value is None:
        return {"value": None, "goal": f"{op} {goal}", "met": None, "note": "not measured in this run"}
    return {"value": value, "goal": f"{op} {goal}", "met": value >= goal if op == ">=" else value <= goal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="gpu")
    parser.add_argument("--rows", type=int, default=128, help="sequences per request of the sweep")
    a = parser.parse_args()
    raw = jsonl(a.out / "raw_torch.jsonl")
    served = perf_analyzer(a.out, a.rows) or python_generator(a.out)
    log = (a.out / "log").read_text(errors="replace") if (a.out / "log").exists() else ""
    steps = re.findall(r"^\[(\d+) s\] (.+)$", log, flags=re.M)
    metrics = (a.out / "triton_metrics.txt").read_text().splitlines() if (a.out / "triton_metrics.txt").exists() else []
    result = {
        "device": a.device,
        "environment": raw[0] if raw else None,
        "raw_torch": [r for r in raw[1:] if "raw_torch_limit_seq_per_s" not in r],
        "raw_torch_limit_seq_per_s": next((r["raw_torch_limit_seq_per_s"] for r in raw if "raw_torch_limit_seq_per_s" in r), None),
        "triton": served,
        "triton_metrics": metrics,
        "steps": [{"at_s": int(t), "step": s} for t, s in steps],
        "not_measured": ["routed req/s through one gateway process (the GPU machine has none of the gateway's packages, "
                         "and .gpu/ already fills the 64 MiB carry)",
                         "the TensorRT variant (no TensorRT in the image, nor in this workplace's package index)"],
        "goals": {"triton_seq_per_s_at_seq32": verdict("triton_seq_per_s_at_seq32", served and served["peak_seq_per_s"]),
                  "p99_ms_at_half_load": verdict("p99_ms_at_half_load", served and served["p99_ms_at_half_load"])},
    }
    path = a.out / "results.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    goals = ", ".join(f"{k} {v['value']} ({'met' if v['met'] else 'not met' if v['met'] is False else 'not measured'})"
                      for k, v in result["goals"].items())
    print(f"wrote {path}: {goals}")


if __name__ == "__main__":
    main()
