"""Static int8 (QDQ) for the router graph: speed and how far it moves the signals (issue 18).

    .venv/bin/python -m bench.int8_static [--calibration 400] [--dev 1200]

ONNX Runtime's static quantization of the MatMuls with a constant weight (per-channel int8
weights, uint8 activations calibrated with MinMax; reduce_range where the CPU has no VNNI, whose
u8·s8 pairs would otherwise saturate), on every such MatMul and on one kind at a time (Q/K/V,
attention output, FFN in, FFN out: which layers are sensitive). Calibration texts come from the
training split, the comparison from the dev split of `export.training_set` (training data:
eval/ is never read here). For each variant: CPU µs per token (one thread, the bench prompts'
32 × 64 and 16 × 128 batches, against fp32 in the same run), the largest change of each output,
and how many dev texts it flips across the served thresholds (jailbreak, harmful, strong at the
example config's 30 % share) or to another top domain / task. Writes bench/results/int8_static.json.
"""
from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np

from bench.common import machine, real_prompts, versions, write_json
from bench.cpu_runtimes import batches as bench_batches
from bench.cpu_runtimes import cpu_seconds
from bench.triton_repo import ensure_exported
from modelspec.interface import INPUT_NAMES, OUTPUT_NAMES, PER_TOKEN_OUTPUT

# The exporter's MatMul node names, per kind of layer (e.g. /encoder/encoder/layer.3/output/dense/MatMul).
KINDS = {"qkv": lambda n: any(k in n for k in ("/query/", "/key/", "/value/")),
         "attention_out": lambda n: "/attention/output/" in n,
         "ffn_in": lambda n: "/intermediate/" in n,
         "ffn_out": lambda n: "/output/dense/" in n and "/attention/" not in n}


def stratified(examples, split: str, n: int, seed: int = 0) -> list[str]:
    """About n texts of `split`, the same number from every source."""
    by_source: dict[str, list[str]] = {}
    for ex in examples:
        if ex.split == split:
            by_source.setdefault(ex.source, []).append(ex.text)
    rng, out = random.Random(seed), []
    for _, texts in sorted(by_source.items()):
        rng.shuffle(texts)
        out += texts[:max(1, n // len(by_source))]
    return out


def encoded(texts: list[str], rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batches of `rows` texts of similar length (sorted), right-padded."""
    from export.onnx_export import encode, load_tokenizer

    tokenizer = load_tokenizer()
    ordered = sorted(texts, key=lambda t: len(tokenizer.encode(t).ids))
    return [encode(tokenizer, ordered[i:i + rows]) for i in range(0, len(ordered), rows)]


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def outputs(sess, data) -> list[dict[str, np.ndarray]]:
    return [dict(zip(OUTPUT_NAMES, sess.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, b))))) for b in data]


def us_per_token(sess, data, rounds: int = 2) -> float:
    for ids, mask in data:  # warm-up
        sess.run(None, dict(zip(INPUT_NAMES, (ids, mask))))
    started, tokens = cpu_seconds(), 0
    for _ in range(rounds):
        for ids, mask in data:
            sess.run(None, dict(zip(INPUT_NAMES, (ids, mask))))
            tokens += ids.size
    return (cpu_seconds() - started) / tokens * 1e6


def changes(got, reference, dev, thresholds: dict[str, float]) -> dict:
    """Largest |change| per output (per-token ones at real tokens) and the texts flipped."""
    largest = {}
    for name in OUTPUT_NAMES:
        per_batch = [np.abs(a[name] - b[name])[mask.astype(bool)] if name == PER_TOKEN_OUTPUT else np.abs(a[name] - b[name])
                     for a, b, (_, mask) in zip(got, reference, dev)]
        largest[name] = round(float(max(d.max() for d in per_batch)), 4)
    flips = {name: int(sum(((a[name] >= t) != (b[name] >= t)).sum() for a, b in zip(got, reference)))
             for name, t in thresholds.items()}
    for name in ("domain_probs", "task_probs"):
        flips[name] = int(sum((a[name].argmax(-1) != b[name].argmax(-1)).sum() for a, b in zip(got, reference)))
    return {"largest_change": largest, "flipped_texts": flips}


def served_thresholds() -> dict[str, float]:
    from export.model import read_weights_meta
    from modelspec.calibration import threshold_for

    meta = read_weights_meta()
    return {"jailbreak_prob": float(meta.get("jailbreak_threshold", 0.5)), "harmful_prob": float(meta.get("harmful_threshold", 0.5)),
            "strong_prob": float(threshold_for(meta.get("calibration"), 0.3) or 0.5)}


def quantized(source: Path, out: Path, calibration, nodes: list[str], reduce_range: bool) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else dict(zip(INPUT_NAMES, batch))

    quantize_static(str(source), str(out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                    nodes_to_quantize=nodes, per_channel=True, reduce_range=reduce_range,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True})
    return out


def weight_matmuls(source: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(source), load_external_data=False).graph
    weights = {w.name for w in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and any(i in weights for i in n.input)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=int, default=400, help="training-split texts to calibrate on")
    parser.add_argument("--dev", type=int, default=1200, help="dev-split texts to compare on")
    a = parser.parse_args()
    from export.runtime_gate import cpu_runtime_module
    from export.training_set import assemble

    model_dir = ensure_exported()
    source = model_dir / "1" / "model.onnx"
    flags = cpu_runtime_module().cpu_flags()
    reduce_range = not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}
    examples, _ = assemble(verbose=False)
    calibration = encoded(stratified(examples, "train", a.calibration), rows=16)
    dev = encoded(stratified(examples, "dev", a.dev), rows=32)
    speed_batches = bench_batches(real_prompts())
    thresholds = served_thresholds()
    reference_session = session(source)
    reference = outputs(reference_session, dev)
    base_us = us_per_token(reference_session, speed_batches)
    matmuls = weight_matmuls(source)
    variants = {"every weight MatMul": matmuls,
                **{f"only {kind}": [n for n in matmuls if belongs(n)] for kind, belongs in KINDS.items()}}
    report = {"machine_before": machine(), "versions": versions("onnxruntime", "onnx"), "reduce_range": reduce_range,
              "calibration_texts": a.calibration, "dev_texts": sum(len(ids) for ids, _ in dev), "thresholds": thresholds,
              "fp32_us_per_token": round(base_us, 1), "rows": []}
    print(f"fp32 {base_us:.1f} µs/token; reduce_range {reduce_range}; {report['dev_texts']} dev texts; thresholds {thresholds}")
    work = Path(tempfile.mkdtemp(prefix="semroute-int8-"))
    for index, (name, nodes) in enumerate(variants.items()):
        sess = session(quantized(source, work / f"variant{index}.onnx", calibration, nodes, reduce_range))
        us = us_per_token(sess, speed_batches)
        row = {"variant": name, "matmuls": len(nodes), "us_per_token": round(us, 1), "vs_fp32": round(us / base_us, 3),
               **changes(outputs(sess, dev), reference, dev, thresholds)}
        report["rows"].append(row)
        print(f"  {name:<22} {len(nodes):>2} MatMuls  {us:6.1f} µs/token ({row['vs_fp32']:.2f}× fp32)  "
              f"flipped {row['flipped_texts']}  largest {row['largest_change']}", flush=True)
    report["machine_after"] = machine()
    print(f"wrote {write_json('int8_static.json', report)}")


if __name__ == "__main__":
    main()
