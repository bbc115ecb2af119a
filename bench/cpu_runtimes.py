"""CPU time per token of each CPU runtime the Python backend can run (cpu_runtime.py), in one run,
as ratios against ONNX Runtime fp32 (the shipped path), with each one's largest output change.

    .venv/bin/python -m bench.cpu_runtimes [--rounds 5]

One thread per runtime, real bench prompts (batch 32 × 64 tokens and 16 × 128), the runtimes
measured in turns (A B C A B C ...) so that the other tenants' load falls on all of them alike.
CPU time of this process, not wall time: what a core spends per token. Also measured, not
servable: ONNX Runtime dynamic int8 (every MatMul), for its error. Writes
bench/results/cpu_runtimes.json.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import numpy as np

from bench.common import machine, real_prompts, versions, write_json
from bench.triton_repo import ensure_exported
from export.runtime_gate import cpu_runtime_module
from modelspec.interface import INPUT_NAMES, OUTPUT_NAMES

SHAPES = ((32, 64), (16, 128))
PROBABILITIES = [n for n in OUTPUT_NAMES if n not in ("pii_logits", "embedding")]


def batches(prompts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One batch per SHAPES entry: the first prompts of at least that many tokens, cut to it."""
    from export.onnx_export import load_tokenizer

    encodings = load_tokenizer().encode_batch(prompts)
    out = []
    for rows, width in SHAPES:
        chosen = [e.ids[:width] for e in encodings if len(e.ids) >= width][:rows]
        ids = np.array(chosen, dtype=np.int64)
        out.append((ids, np.ones_like(ids)))
    return out


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def int8_runner(onnx_path: Path, work: Path, cpu_runtime):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = work / "int8.onnx"
    quantize_dynamic(str(onnx_path), str(quantized), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    run, _ = cpu_runtime.load_runner("onnxruntime-fp32", quantized, list(INPUT_NAMES), list(OUTPUT_NAMES), 1, "0")
    return run, "ONNX Runtime dynamic int8 (MatMul), not servable: see its error"


def largest_changes(outputs: dict, reference: dict) -> dict[str, float]:
    return {"probabilities": max(float(np.abs(outputs[n] - reference[n]).max()) for n in PROBABILITIES),
            "embedding": float(np.abs(outputs["embedding"] - reference["embedding"]).max()),
            "pii_logits": float(np.abs(outputs["pii_logits"] - reference["pii_logits"]).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="turns per runtime and shape")
    parser.add_argument("--no-int8", action="store_true", help="skip the dynamic int8 reference")
    a = parser.parse_args()
    model_dir = ensure_exported()
    cpu_runtime = cpu_runtime_module()
    onnx_path = model_dir / "1" / "model.onnx"
    flags = cpu_runtime.cpu_flags()
    report = {"machine_before": machine(), "cpu_bf16_flags": sorted(flags & cpu_runtime.BF16_FLAGS),
              "auto_picks": cpu_runtime.select_runtime("auto", flags),
              "versions": versions("onnxruntime", "openvino", "numpy"), "shapes": SHAPES, "rounds": a.rounds}
    runners = {name: cpu_runtime.load_runner(name, onnx_path, list(INPUT_NAMES), list(OUTPUT_NAMES), 1, "0")
               for name in cpu_runtime.RUNTIMES}
    work = Path(tempfile.mkdtemp(prefix="semroute-cpu-runtimes-"))
    if not a.no_int8:
        runners["onnxruntime-int8-dynamic"] = int8_runner(onnx_path, work, cpu_runtime)
    inputs = batches(real_prompts())
    reference = [runners["onnxruntime-fp32"][0](ids, mask) for ids, mask in inputs]
    spent = {name: 0.0 for name in runners}
    for name, (run, _) in runners.items():  # warm-up: first runs compile kernels for each shape
        for ids, mask in inputs:
            run(ids, mask)
    for _ in range(a.rounds):
        for name, (run, _) in runners.items():
            for ids, mask in inputs:
                started = cpu_seconds()
                run(ids, mask)
                spent[name] += cpu_seconds() - started
    tokens = a.rounds * sum(ids.size for ids, _ in inputs)
    base = spent["onnxruntime-fp32"] / tokens
    rows = []
    for name, (run, described) in runners.items():
        changes = [largest_changes(run(ids, mask), ref) for (ids, mask), ref in zip(inputs, reference)]
        rows.append({"runtime": name, "described": described, "us_per_token": round(spent[name] / tokens * 1e6, 1),
                     "vs_fp32": round(spent[name] / tokens / base, 3),
                     "max_change": {k: max(c[k] for c in changes) for k in changes[0]}})
    report["rows"] = rows
    report["machine_after"] = machine()
    path = write_json("cpu_runtimes.json", report)
    print(f"CPU {report['machine_before'].get('cpu', '')}: bf16 flags {report['cpu_bf16_flags'] or 'none'}; "
          f"auto picks {report['auto_picks']}; load {report['machine_before']['loadavg']} → {report['machine_after']['loadavg']}")
    for r in rows:
        c = r["max_change"]
        print(f"  {r['runtime']:<26} {r['us_per_token']:7.1f} µs/token  {r['vs_fp32']:5.2f}× fp32's CPU  "
              f"max change: probs {c['probabilities']:.2e}, embedding {c['embedding']:.2e}, pii logits {c['pii_logits']:.2e}"
              f"   ({r['described']})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
