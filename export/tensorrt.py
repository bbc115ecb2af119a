"""The TensorRT side of the production path: what the ONNX graph must satisfy, how the FP16
engine is built (Python API here, `trtexec` in the container, same settings), and a runner
to check a built engine against ONNX Runtime.

`tensorrt` is imported lazily (optional extra `[tensorrt]`): everything that only reads the
ONNX graph works without it. TensorRT 10.x is required: 11 removed the weakly typed FP16
builder flag this engine relies on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelspec import interface
from modelspec.interface import ATTENTION_MASK, INPUT_NAMES, OUTPUT_NAMES

# Upper sequence lengths of the optimization profiles: one profile per bucket, so short
# prompts get kernels tuned for short shapes (Triton picks the closest profile per batch).
SEQ_BUCKETS = (32, 64, 128, 256)
DEFAULT_WORKSPACE_MIB = 4096
FP16_MAX = 65504.0

# ONNX operators the TensorRT 10 ONNX parser supports ("Y" in onnx-tensorrt's
# docs/operators.md, release 10.1 GA). Our graph must use a subset of these.
TENSORRT_ONNX_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
Flatten Floor GRU Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool
GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization HardSigmoid HardSwish Hardmax
Identity If ImageScaler InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu
Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad
ParametricSoftplus Pow QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign
Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
# Inputs that operators.md says must be build-time constants (initializer or Constant node).
CONSTANT_INPUTS = {"ReduceSum": 1, "ReduceL2": 1, "ReduceMean": 1, "Squeeze": 1, "Unsqueeze": 1, "Slice": 3}
ONNX_OPSET_RANGE = (9, 20)


@dataclass(frozen=True)
class Profile:
    """One optimization profile: batch 1..max_batch, sequence seq_min..seq_max."""
    seq_min: int
    seq_max: int
    max_batch: int
    opt_batch: int

    def shapes(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """(min, opt, max) [batch, seq] of every input; tuned at the bucket's longest sequence."""
        return (1, self.seq_min), (self.opt_batch, self.seq_max), (self.max_batch, self.seq_max)


def optimization_profiles(max_batch_size: int, max_seq_len: int = interface.MAX_SEQ_LEN,
                          buckets: tuple[int, ...] = SEQ_BUCKETS) -> list[Profile]:
    """Contiguous, non-overlapping sequence buckets covering 1..max_seq_len."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
    uppers = sorted({min(b, max_seq_len) for b in buckets} | {max_seq_len})
    lowers = [1] + [u + 1 for u in uppers[:-1]]
    # Tuned for full micro-batches: the gateway batches before Triton does.
    return [Profile(lo, hi, max_batch_size, max_batch_size) for lo, hi in zip(lowers, uppers, strict=True)]


# --- what the ONNX graph must satisfy ---------------------------------------------------------

def _constant_names(graph) -> set[str]:
    names = {init.name for init in graph.initializer}
    names.update(node.output[0] for node in graph.node if node.op_type == "Constant")
    return names


def _constant_arrays(graph):
    """(tensor name, array) of every initializer and Constant node holding a tensor."""
    from onnx import numpy_helper

    for init in graph.initializer:
        yield init.name, numpy_helper.to_array(init)
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value":
                yield node.output[0], numpy_helper.to_array(attr.t)


def tensorrt_problems(model) -> list[str]:
    """Why TensorRT's ONNX parser would reject `model` (empty when it should parse)."""
    graph = model.graph
    problems = [f"operator {op} is not supported by TensorRT's ONNX parser"
                for op in sorted({n.op_type for n in graph.node} - TENSORRT_ONNX_OPS)]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not ONNX_OPSET_RANGE[0] <= opset <= ONNX_OPSET_RANGE[1]:
        problems.append(f"opset {opset} is outside TensorRT 10's range {ONNX_OPSET_RANGE}")
    constants = _constant_names(graph)
    for node in graph.node:
        index = CONSTANT_INPUTS.get(node.op_type)
        if index is not None and len(node.input) > index and node.input[index] and node.input[index] not in constants:
            problems.append(f"{node.op_type} {node.name}: input {index} must be a build-time constant")
        if node.op_type == "LayerNormalization" and any(node.output[1:]):
            problems.append(f"LayerNormalization {node.name}: only its first output is supported")
    return problems


def _float_tensors(model) -> set[str]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    infos = [*graph.value_info, *graph.output, *graph.input]
    return {v.name for v in infos if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}


def fp32_pinned_nodes(model, mask_input: str = ATTENTION_MASK) -> list[str]:
    """Nodes the FP16 engine must compute in FP32.

    - The attention-mask arithmetic: nodes computed only from the mask, tensor shapes and
      constants. It uses float32's lowest value, which is -inf in FP16, and 0 * -inf is NaN.
    - LayerNormalization: its reductions overflow in FP16 (TensorRT's own advice).
    Cast and Constant nodes are left out: their output type is fixed by the graph anyway.
    """
    graph = model.graph
    floats = _float_tensors(model)
    structural, pinned = {mask_input} | _constant_names(graph), []
    for node in graph.node:  # ONNX keeps nodes in topological order
        from_structure = node.op_type == "Shape" or all(i in structural for i in node.input if i)
        if from_structure:
            structural.update(node.output)
        makes_float = any(o in floats for o in node.output)
        if (from_structure and makes_float and node.op_type not in ("Cast", "Constant")) \
                or node.op_type == "LayerNormalization":
            pinned.append(node.name)
    return pinned


def beyond_fp16_constants(model) -> dict[str, float]:
    """Float constants with a finite value beyond FP16's range: {tensor name: largest |value|}."""
    found = {}
    for name, array in _constant_arrays(model.graph):
        if array.dtype.kind == "f" and array.size:
            finite = np.abs(array[np.isfinite(array)])
            if finite.size and float(finite.max()) > FP16_MAX:
                found[name] = float(finite.max())
    return found


# --- build settings, shared by the Python API and trtexec -------------------------------------

def _shape_spec(shapes: tuple[int, int]) -> str:
    return ",".join(f"{name}:{shapes[0]}x{shapes[1]}" for name in INPUT_NAMES)


def trtexec_arguments(profiles: list[Profile], fp32_nodes: list[str],
                      workspace_mib: int = DEFAULT_WORKSPACE_MIB) -> list[str]:
    """trtexec flags for the same engine `build_engine` makes; the caller adds --onnx,
    --saveEngine and --timingCacheFile (paths known only where it runs)."""
    bad = [n for n in fp32_nodes if any(c in n for c in ",:*'")]
    if bad:
        raise ValueError(f"node names trtexec cannot take in --layerPrecisions: {bad}")
    args = ["--fp16", "--precisionConstraints=prefer", f"--memPoolSize=workspace:{workspace_mib}", "--skipInference"]
    if fp32_nodes:
        args.append("--layerPrecisions=" + ",".join(f"{n}:fp32" for n in fp32_nodes))
    for index, profile in enumerate(profiles):
        low, opt, high = profile.shapes()
        args += [f"--profile={index}", f"--minShapes={_shape_spec(low)}",
                 f"--optShapes={_shape_spec(opt)}", f"--maxShapes={_shape_spec(high)}"]
    return args


# --- the TensorRT Python API ------------------------------------------------------------------

def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeError("the TensorRT Python package is not installed: `pip install 'semroute[tensorrt]'` on a "
                           "machine with an NVIDIA GPU (TensorRT 10.x, the version of the Triton image), or let the "
                           "container build the engine at first start (deploy/triton/entrypoint.sh)") from exc
    if not hasattr(trt.BuilderFlag, "FP16"):
        raise RuntimeError(f"TensorRT {trt.__version__} has no weakly typed FP16 mode; use TensorRT 10.x")
    return trt


def _parse_onnx(trt, builder, logger, onnx_path: Path):
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    return network, parser


def _pin_layers(trt, network, node_names: set[str]) -> int:
    pinned = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.name in node_names and layer.get_output(0).dtype == trt.float32:
            layer.precision = trt.float32
            layer.set_output_type(0, trt.float32)
            pinned += 1
    return pinned


def _builder_config(trt, builder, profiles: list[Profile], workspace_mib: int, timing_cache: Path | None):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    for profile in profiles:
        trt_profile = builder.create_optimization_profile()
        for name in INPUT_NAMES:
            trt_profile.set_shape(name, *profile.shapes())
        config.add_optimization_profile(trt_profile)
    cached = timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b""
    config.set_timing_cache(config.create_timing_cache(cached), ignore_mismatch=False)
    return config


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def build_engine(onnx_path, plan_path, *, max_batch_size: int, timing_cache=None,
                 workspace_mib: int = DEFAULT_WORKSPACE_MIB) -> dict:
    """Build the FP16 engine of `onnx_path` into `plan_path` for the GPU of this machine.

    The timing cache (read if present, then rewritten) makes rebuilds on the same GPU model
    and TensorRT version fast. Returns what was built, for logs and tests.
    """
    import onnx

    trt = import_tensorrt()
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    timing_cache = Path(timing_cache) if timing_cache else None
    started = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse_onnx(trt, builder, logger, onnx_path)
    wanted = fp32_pinned_nodes(onnx.load(str(onnx_path), load_external_data=False))
    pinned = _pin_layers(trt, network, set(wanted))
    profiles = optimization_profiles(max_batch_size)
    config = _builder_config(trt, builder, profiles, workspace_mib, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path}; its log above says why")
    _write_atomically(plan_path, bytes(serialized))
    if timing_cache:
        _write_atomically(timing_cache, bytes(config.get_timing_cache().serialize()))
    return {"plan": str(plan_path), "tensorrt": trt.__version__, "profiles": len(profiles),
            "fp32_layers": pinned, "fp32_nodes_wanted": len(wanted), "build_s": round(time.perf_counter() - started, 1)}


def _profile_for(engine, seq_len: int) -> int:
    for index in range(engine.num_optimization_profiles):
        low, _, high = engine.get_tensor_profile_shape(INPUT_NAMES[0], index)
        if low[1] <= seq_len <= high[1]:
            return index
    raise ValueError(f"no optimization profile covers sequence length {seq_len}")


def engine_outputs(plan_path, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Run a built engine once on the GPU (torch allocates the buffers): {output: array}."""
    import torch

    trt = import_tensorrt()
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(plan_path).read_bytes())
    context = engine.create_execution_context()
    stream = torch.cuda.Stream()
    context.set_optimization_profile_async(_profile_for(engine, ids.shape[1]), stream.cuda_stream)
    buffers = {}
    for name, array in zip(INPUT_NAMES, (ids, mask), strict=True):
        buffers[name] = torch.from_numpy(np.ascontiguousarray(array)).cuda()
        context.set_input_shape(name, tuple(array.shape))
    for name in OUTPUT_NAMES:
        buffers[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=torch.float32, device="cuda")
    for name, tensor in buffers.items():
        context.set_tensor_address(name, tensor.data_ptr())
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError("TensorRT execution failed")
    stream.synchronize()
    return {name: buffers[name].cpu().numpy() for name in OUTPUT_NAMES}
