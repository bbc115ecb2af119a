"""Triton model repositories for the production targets, written under build/triton/:

    onnxruntime/  router (platform onnxruntime_onnx, 1/model.onnx) + tokenizer + router_text
    tensorrt/     router (platform tensorrt_plan, 1/model.plan: built here when TensorRT is
                  installed, else by the container at first start) + tokenizer + router_text
    engine/       trtexec.args and build.json: how the container builds the engine

Every variant serves the model and tensor names of the bundled python-ort repository, so the
gateway never knows which one runs. `router_text` (tokenizer → router) lets clients without a
tokenizer (perf_analyzer, curl, other languages) send text. Every config is parsed with
Triton's protobuf and checked against the ONNX graph before it is written.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import onnx

from export.files import place_file, write_text
from export.repository import build_repository
from export.repository import run_export as run_bundled_export
from export.tensorrt import build_engine as build_tensorrt_engine
from export.tensorrt import fp32_pinned_nodes, optimization_profiles, trtexec_arguments
from export.text_models import add_text_models
from export.triton_config import (CONFIG_FILE, DEFAULT_INTRA_OP_THREADS, GENERATED, ONNX_FILE, VERSION, config_text,
                                  parse_config, served_parameters)
from modelspec import interface

TARGETS = ("python-ort", "onnxruntime", "tensorrt")
REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_ROOT = REPO_ROOT / "build" / "triton"
PLAN_FILE = "model.plan"
# ONNX tensor type → Triton data type, for the types a router graph can have.
TRITON_TYPES = {"FLOAT": "TYPE_FP32", "FLOAT16": "TYPE_FP16", "INT64": "TYPE_INT64", "INT32": "TYPE_INT32",
                "BOOL": "TYPE_BOOL"}


# --- configs against the ONNX graph -----------------------------------------------------------

def graph_signature(model) -> dict[str, tuple[str, list[int]]]:
    """{tensor name: (Triton type, full shape with -1 for every symbolic axis)} of the graph's I/O."""
    signature = {}
    for value in [*model.graph.input, *model.graph.output]:
        tensor = value.type.tensor_type
        onnx_type = onnx.TensorProto.DataType.Name(tensor.elem_type)
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        signature[value.name] = (TRITON_TYPES.get(onnx_type, f"ONNX {onnx_type}"), dims)
    return signature


def config_signature(config) -> dict[str, tuple[str, list[int]]]:
    """The same view of a Triton ModelConfig: the batch axis is implicit when max_batch_size > 0."""
    from tritonclient.grpc import model_config_pb2

    batch = [-1] if config.max_batch_size > 0 else []
    return {t.name: (model_config_pb2.DataType.Name(t.data_type), batch + list(t.dims))
            for t in [*config.input, *config.output]}


def signature_problems(config, model) -> list[str]:
    """How a config's inputs and outputs differ from the ONNX graph's (empty when they match)."""
    served, graph = config_signature(config), graph_signature(model)
    problems = [f"{name}: in the ONNX graph, not in the config" for name in sorted(graph.keys() - served.keys())]
    problems += [f"{name}: in the config, not in the ONNX graph" for name in sorted(served.keys() - graph.keys())]
    problems += [f"{name}: config {served[name]} vs ONNX {graph[name]}"
                 for name in sorted(served.keys() & graph.keys()) if served[name] != graph[name]]
    return problems


def _checked(text: str, model=None) -> str:
    config = parse_config(text)
    problems = signature_problems(config, model) if model is not None else []
    if problems:
        raise ValueError(f"config of '{config.name}' does not match the ONNX graph: {'; '.join(problems)}")
    return text


# --- config texts -----------------------------------------------------------------------------

def onnxruntime_config_text(max_batch_size: int = 64, parameters: dict[str, str] | None = None) -> str:
    """ONNX Runtime backend, on the GPU where there is one (KIND_AUTO), else on the CPU."""
    return config_text(model_line='platform: "onnxruntime_onnx"', max_batch_size=max_batch_size,
                       ragged_inputs=False, instance_kind="KIND_AUTO", instance_count=1, parameters=parameters)


def tensorrt_config_text(max_batch_size: int, profile_count: int, instance_count: int = 2,
                         parameters: dict[str, str] | None = None) -> str:
    """TensorRT plan, two instances on the GPU, each free to use every optimization profile."""
    from google.protobuf import text_format

    base = config_text(model_line='platform: "tensorrt_plan"', max_batch_size=max_batch_size, ragged_inputs=False,
                       instance_kind="KIND_GPU", instance_count=instance_count, parameters=parameters)
    config = parse_config(base)
    for group in config.instance_group:
        # Without a profile list Triton uses profile 0 only; with it, the closest profile per batch.
        group.profile.extend(str(i) for i in range(profile_count))
    return GENERATED + text_format.MessageToString(config)


# --- writing repositories ---------------------------------------------------------------------

def write_onnxruntime_variant(onnx_path, out_root=BUILD_ROOT, max_batch_size: int = 64, model=None,
                              parameters: dict[str, str] | None = None) -> Path:
    """<out_root>/onnxruntime: the ONNX Runtime backend serving `onnx_path`."""
    model = model if model is not None else onnx.load(str(onnx_path), load_external_data=False)
    repo = Path(out_root) / "onnxruntime"
    text = onnxruntime_config_text(max_batch_size, parameters)
    write_text(repo / interface.MODEL_NAME / CONFIG_FILE, _checked(text, model))
    place_file(Path(onnx_path), repo / interface.MODEL_NAME / VERSION / ONNX_FILE, link=True)
    add_text_models(repo, max_batch_size, tokenizer_instances=2, parameters=parameters)
    return repo


def engine_build_settings(onnx_path, max_batch_size: int, model=None) -> dict:
    """Profiles, FP32-pinned nodes and trtexec flags of the engine (the Python builder uses the same)."""
    model = model if model is not None else onnx.load(str(onnx_path), load_external_data=False)
    profiles = optimization_profiles(max_batch_size)
    pinned = fp32_pinned_nodes(model)
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()
    return {"onnx_sha256": digest, "max_batch_size": max_batch_size, "precision": "fp16",
            "profiles": [p.shapes() for p in profiles], "fp32_nodes": pinned,
            "trtexec_args": trtexec_arguments(profiles, pinned)}


def write_tensorrt_variant(onnx_path, out_root=BUILD_ROOT, max_batch_size: int = 64, model=None,
                           parameters: dict[str, str] | None = None) -> Path:
    """<out_root>/tensorrt (configs; the plan comes later) and <out_root>/engine (build settings)."""
    model = model if model is not None else onnx.load(str(onnx_path), load_external_data=False)
    settings = engine_build_settings(onnx_path, max_batch_size, model)
    repo = Path(out_root) / "tensorrt"
    text = tensorrt_config_text(max_batch_size, len(settings["profiles"]), parameters=parameters)
    write_text(repo / interface.MODEL_NAME / CONFIG_FILE, _checked(text, model))
    (repo / interface.MODEL_NAME / VERSION).mkdir(parents=True, exist_ok=True)
    add_text_models(repo, max_batch_size, tokenizer_instances=2, parameters=parameters)
    engine_dir = Path(out_root) / "engine"
    write_text(engine_dir / "trtexec.args", "".join(a + "\n" for a in settings["trtexec_args"]))
    write_text(engine_dir / "build.json", json.dumps(settings, indent=2) + "\n")
    return repo


# --- `semroute export --target ...` -----------------------------------------------------------

def export_target(target: str, *, weights=None, model_repository=Path("model_repository"), max_batch_size: int = 64,
                  out_root=BUILD_ROOT, force: bool = False, build_engine: bool | None = None) -> Path:
    """Build one target; returns its repository. onnxruntime and tensorrt start from the bundled
    repository's ONNX (exported and parity-checked by build_repository when out of date)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    model_dir = build_repository(weights, Path(model_repository), max_batch_size, force=force,
                                 intra_op_threads=DEFAULT_INTRA_OP_THREADS)
    if target == "python-ort":
        return model_dir.parent
    onnx_path = model_dir / VERSION / ONNX_FILE
    model = onnx.load(str(onnx_path), load_external_data=False)
    parameters = served_parameters(model_dir)  # the gateway reads the same metadata from every target
    repo = write_onnxruntime_variant(onnx_path, out_root, max_batch_size, model, parameters)
    print(f"wrote {repo} (ONNX Runtime backend)")
    if target == "tensorrt":
        repo = write_tensorrt_variant(onnx_path, out_root, max_batch_size, model, parameters)
        print(f"wrote {repo} and {Path(out_root) / 'engine'} (TensorRT FP16 configs and engine build settings)")
        _maybe_build_engine(onnx_path, repo, Path(out_root), max_batch_size, build_engine)
    return repo


def _maybe_build_engine(onnx_path: Path, repo: Path, out_root: Path, max_batch_size: int, wanted: bool | None) -> None:
    if wanted is None:
        wanted = importlib.util.find_spec("tensorrt") is not None
    if not wanted:
        print("TensorRT is not installed here: the container builds the engine for its GPU at first start "
              "(deploy/triton/entrypoint.sh); `pip install 'semroute[tensorrt]'` builds it here instead")
        return
    result = build_tensorrt_engine(onnx_path, repo / interface.MODEL_NAME / VERSION / PLAN_FILE,
                                   max_batch_size=max_batch_size, timing_cache=out_root / "engine" / "timing.cache")
    print(f"built {result['plan']} with TensorRT {result['tensorrt']} in {result['build_s']} s "
          f"({result['profiles']} profiles, {result['fp32_layers']} layers pinned to FP32)")


def run_export(args) -> int:
    """`semroute export [--target python-ort|onnxruntime|tensorrt]`."""
    target = getattr(args, "target", "python-ort") or "python-ort"
    if target == "python-ort":
        return run_bundled_export(args)
    export_target(target, weights=args.weights, model_repository=args.model_repository,
                  max_batch_size=args.max_batch_size, force=bool(getattr(args, "force", False)))
    return 0
