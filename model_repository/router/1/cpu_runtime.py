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
- `onnxruntime-bf16-emulated`: not a fast path: fp32 arithmetic with every MatMul/Gemm input and
                      output rounded to bf16 (ONNX Casts), so the decision gate (`semroute eval
                      --compare fp32`) can measure bf16's effect on a CPU without bf16. Slower than
                      fp32; needs the `onnx` package; never picked by `auto`.
- `auto`:             openvino-bf16 where /proc/cpuinfo lists a bf16 flag, else onnxruntime-fp32.

This module must not import the project (the Triton stub's sys.path is the venv's, not a
worktree's): it stands alone, like model.py.
"""
from __future__ import annotations

from pathlib import Path

RUNTIMES = ("onnxruntime-fp32", "openvino-fp32", "openvino-bf16", "onnxruntime-bf16-emulated")
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


def load_runner(runtime: str, onnx_path: Path, input_names, output_names, threads: int, spinning: str):
    """(run, description) for `runtime`: run(ids, mask) -> {name: array} over `output_names`;
    `input_names` are the graph's (token ids, then the mask)."""
    if runtime == "onnxruntime-fp32":
        return _onnxruntime_runner(onnx_path, input_names, output_names, threads, spinning)
    if runtime == "onnxruntime-bf16-emulated":
        run, described = _onnxruntime_runner(bf16_rounded_graph(onnx_path), input_names, output_names, threads, spinning)
        return run, described.replace("fp32", "fp32 with MatMul/Gemm inputs and outputs rounded to bf16 (emulation)")
    return _openvino_runner(onnx_path, input_names, output_names, threads, precision=OPENVINO_PRECISION[runtime])


def bf16_rounded_graph(onnx_path) -> bytes:
    """The graph with bf16 rounding where a bf16 CPU path rounds (oneDNN: bf16 operands, fp32
    accumulation, bf16 results): weights rounded in place, a Cast pair (fp32 → bf16 → fp32) on
    every other MatMul/Gemm operand and on each result; Gemm biases stay fp32."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    weights = {w.name: w for w in graph.initializer}
    constants = {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    nodes = []

    def round_trip(name: str, tag: str) -> tuple[str, list]:
        if name in weights:
            array = numpy_helper.to_array(weights[name])
            if array.dtype == np.float32:
                bits = array.view(np.uint32)
                rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)  # round to nearest even
                weights[name].CopyFrom(numpy_helper.from_array(rounded.view(np.float32), name))
            return name, []
        if name in constants:
            return name, []
        return f"{name}/{tag}/f32", [helper.make_node("Cast", [name], [f"{name}/{tag}/bf16"], to=TensorProto.BFLOAT16),
                                     helper.make_node("Cast", [f"{name}/{tag}/bf16"], [f"{name}/{tag}/f32"], to=TensorProto.FLOAT)]

    for index, node in enumerate(graph.node):
        if node.op_type not in ("MatMul", "Gemm"):
            nodes.append(node)
            continue
        operands = []
        for position, name in enumerate(node.input):
            rounded, casts = (name, []) if node.op_type == "Gemm" and position == 2 else round_trip(name, f"in{index}")
            nodes += casts
            operands.append(rounded)
        del node.input[:]
        node.input.extend(operands)
        result = node.output[0]
        node.output[0] = f"{result}/raw"
        nodes.append(node)
        _, casts = round_trip(f"{result}/raw", "out")
        casts[-1].output[0] = result
        nodes += casts
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString()


def _onnxruntime_runner(onnx_path, input_names, output_names, threads, spinning):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning idle threads burn the cores the gateway and Triton's own threads need on a
    # small CPU; "0" makes them sleep (bench/RESULTS.md: Triton tuning).
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    model = onnx_path if isinstance(onnx_path, bytes) else str(onnx_path)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def run(ids, mask):
        return dict(zip(output_names, session.run(output_names, dict(zip(input_names, (ids, mask))))))

    return run, f"ONNX Runtime {ort.__version__} fp32, {threads} intra-op threads"


def _openvino_runner(onnx_path, input_names, output_names, threads, precision):
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
        result = request.infer(dict(zip(input_names, (ids, mask))))
        # The request's buffers are reused by the next infer: copy before handing them out.
        return {name: np.array(result[port]) for name, port in zip(output_names, outputs)}

    return run, f"OpenVINO {ov.__version__} {precision} requested, runs {effective}, {threads} threads"
