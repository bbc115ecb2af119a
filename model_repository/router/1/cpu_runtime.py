"""The CPU runtime that runs the router graph inside the Python backend, chosen at start.

Committed source beside model.py (the export copies both). One function picks the runtime from
the config parameter `cpu_runtime` and the CPU's flags; each runtime is a callable
`run(input_ids, attention_mask) -> {output name: array}` over the same ONNX file, so the model
name, tensors and batching in model.py do not change with it.

- `onnxruntime-fp32`: ONNX Runtime, fp32 (the shipped path).
- `openvino-fp32`:    OpenVINO, fp32.
- `openvino-bf16`:    OpenVINO with INFERENCE_PRECISION_HINT=bf16: about half the CPU per token
                      where the CPU has bf16 arithmetic (AVX512-BF16 or AMX; issue 18). Elsewhere
                      OpenVINO silently runs fp32, so `auto` never asks for it there.
- `auto`:             openvino-bf16 where /proc/cpuinfo lists a bf16 flag, else onnxruntime-fp32.

This module must not import the project (the Triton stub's sys.path is the venv's, not a
worktree's): it stands alone, like model.py.
"""
from __future__ import annotations

from pathlib import Path

RUNTIMES = ("onnxruntime-fp32", "openvino-fp32", "openvino-bf16")
AUTO = "auto"
# Either gives the CPU native bf16 dot products (oneDNN's bf16 kernels need one of them).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
OPENVINO_PRECISION = {"openvino-fp32": "f32", "openvino-bf16": "bf16"}  # INFERENCE_PRECISION_HINT values


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first processor's feature flags (empty where /proc/cpuinfo is unreadable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def select_runtime(requested: str, flags: frozenset[str]) -> str:
    """The runtime to run: `requested` itself, or for `auto` the one the CPU's flags favour."""
    if requested == AUTO:
        return "openvino-bf16" if flags & BF16_FLAGS else "onnxruntime-fp32"
    if requested not in RUNTIMES:
        raise ValueError(f"cpu_runtime {requested!r} is not one of {AUTO}, {', '.join(RUNTIMES)}")
    return requested


def load_runner(runtime: str, onnx_path: Path, output_names: list[str], threads: int, spinning: str):
    """(run, description) for `runtime`: run(ids, mask) -> {name: array} over `output_names`."""
    if runtime == "onnxruntime-fp32":
        return _onnxruntime_runner(onnx_path, output_names, threads, spinning)
    return _openvino_runner(onnx_path, output_names, threads, precision=OPENVINO_PRECISION[runtime])


def _onnxruntime_runner(onnx_path, output_names, threads, spinning):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning idle threads burn the cores the gateway and Triton's own threads need on a
    # small CPU; "0" makes them sleep (bench/RESULTS.md: Triton tuning).
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def run(ids, mask):
        return dict(zip(output_names, session.run(output_names, {"input_ids": ids, "attention_mask": mask})))

    return run, f"ONNX Runtime {ort.__version__} fp32, {threads} intra-op threads"


def _openvino_runner(onnx_path, output_names, threads, precision):
    import numpy as np
    import openvino as ov

    # No pinning: two Triton instances of one thread each would otherwise be pinned to the same
    # core. One stream, one infer request: Triton runs one execute per instance at a time.
    compiled = ov.Core().compile_model(str(onnx_path), "CPU", {
        "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False})
    request = compiled.create_infer_request()
    outputs = [compiled.output(name) for name in output_names]
    effective = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # f32 where the CPU lacks bf16

    def run(ids, mask):
        result = request.infer({"input_ids": ids, "attention_mask": mask})
        # The request's buffers are reused by the next infer: copy before handing them out.
        return {name: np.array(result[port]) for name, port in zip(output_names, outputs)}

    return run, f"OpenVINO {ov.__version__} {precision} requested, runs {effective}, {threads} threads"
