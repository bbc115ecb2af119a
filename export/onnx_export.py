"""RouterModel → one ONNX graph with every output, checked against PyTorch.

The legacy TorchScript exporter (dynamo=False) is used: it gives plain opset-17 ops that
ONNX Runtime and TensorRT both take, with dynamic batch and sequence axes.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch

from export.model import RouterModel
from modelspec import interface
from modelspec.base_model import tokenizer_file
from modelspec.interface import INPUT_NAMES, OUTPUT_NAMES, PER_TOKEN_OUTPUT

OPSET = 17
PARITY_TOLERANCE = 1e-4

# Real prompts of very different lengths: one batch pads the short ones heavily.
PARITY_TEXTS = (
    "hi",
    "What is the derivative of x^2 * sin(x)?",
    "Write a Python function that merges two sorted lists without using sort(). "
    "Explain its time complexity and give two test cases.",
    "My name is Jane Doe, I live at 42 Elm Street, Springfield, and my card number is "
    "4111 1111 1111 1111. Please summarise the attached contract for my lawyer.",
    " ".join(["The court held that the contract was void for lack of consideration."] * 30),
)


def load_tokenizer(max_len: int = interface.MAX_SEQ_LEN):
    """The base model's fast tokenizer, truncating to the served sequence length."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file()))
    tokenizer.enable_truncation(max_len)
    tokenizer.no_padding()
    return tokenizer


def encode(tokenizer, texts, pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """int64 input_ids and attention_mask [len(texts), L], right-padded with 0 to the longest text."""
    encodings = tokenizer.encode_batch(list(texts))
    width = max(pad_to or 0, max(len(e.ids) for e in encodings))
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, e in enumerate(encodings):
        ids[row, :len(e.ids)] = e.ids
        mask[row, :len(e.ids)] = 1
    return ids, mask


def torch_outputs(model: RouterModel, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        outs = model(torch.from_numpy(ids), torch.from_numpy(mask))
    return {name: t.numpy() for name, t in zip(OUTPUT_NAMES, outs)}


def ort_session(path: Path, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_outputs(session, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    outs = session.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, (ids, mask))))
    return dict(zip(OUTPUT_NAMES, outs))


def max_abs_diffs(a: dict[str, np.ndarray], b: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, float]:
    """Worst |a − b| per output; pii_logits only at real tokens (mask 1): padded positions'
    logits are never read and drift more (seen 2e-4 with trained heads, 1e-5 at real tokens)."""
    diffs = {}
    for name in OUTPUT_NAMES:
        if a[name].shape != b[name].shape:
            raise ValueError(f"{name}: shape {a[name].shape} vs {b[name].shape}")
        difference = np.abs(a[name] - b[name])
        diffs[name] = float(difference[mask.astype(bool)].max() if name == PER_TOKEN_OUTPUT else difference.max())
    return diffs


def check_parity(model: RouterModel, onnx_path: Path, texts=PARITY_TEXTS) -> dict[str, float]:
    """Worst |ONNX − PyTorch| per output over a padded batch and each text alone."""
    tokenizer = load_tokenizer()
    session = ort_session(onnx_path)
    worst = dict.fromkeys(OUTPUT_NAMES, 0.0)
    batches = [encode(tokenizer, texts)] + [encode(tokenizer, [t]) for t in texts]
    for ids, mask in batches:
        diffs = max_abs_diffs(ort_outputs(session, ids, mask), torch_outputs(model, ids, mask), mask)
        worst = {name: max(worst[name], diffs[name]) for name in OUTPUT_NAMES}
    return worst


def _export_graph(model: RouterModel, path: Path) -> None:
    ids, mask = encode(load_tokenizer(), PARITY_TEXTS[1:3])
    batch_and_seq = {0: "batch", 1: "seq"}
    dynamic_axes = {**dict.fromkeys(INPUT_NAMES, batch_and_seq),
                    **{name: {0: "batch"} for name in OUTPUT_NAMES}, PER_TOKEN_OUTPUT: batch_and_seq}
    with torch.inference_mode(), warnings.catch_warnings():
        # Expected with the legacy exporter; parity at many lengths is the real check.
        for category in (DeprecationWarning, torch.jit.TracerWarning, UserWarning):
            warnings.simplefilter("ignore", category)
        torch.onnx.export(model, (torch.from_numpy(ids), torch.from_numpy(mask)), str(path),
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True,
                          dynamo=False)
    example = torch_outputs(model, ids, mask)
    _pin_static_output_dims(path, {name: example[name].shape for name in OUTPUT_NAMES}, dynamic_axes)


def _pin_static_output_dims(path: Path, shapes: dict[str, tuple[int, ...]], dynamic_axes: dict) -> None:
    """Declare every non-dynamic output axis with its size (the exporter leaves e.g. the
    normalised embedding's 384 symbolic), so runtimes and config checks see [batch, 384]."""
    import onnx

    graph_model = onnx.load(str(path))
    for output in graph_model.graph.output:
        for axis, dim in enumerate(output.type.tensor_type.shape.dim):
            if axis not in dynamic_axes[output.name]:
                dim.dim_value = shapes[output.name][axis]
    onnx.save(graph_model, str(path))


def export_onnx(model: RouterModel, path) -> dict:
    """Write `path` (ONNX, opset 17), check it, and return parity numbers and timings.

    Returns {"path", "max_abs_diff": {output: float}, "export_s", "parity_s"}; raises
    ValueError when any output differs from PyTorch by more than PARITY_TOLERANCE.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    started = time.perf_counter()
    _export_graph(model, path)
    onnx.checker.check_model(str(path), full_check=True)
    exported = time.perf_counter()
    diffs = check_parity(model, path)
    result = {"path": str(path), "max_abs_diff": diffs, "export_s": round(exported - started, 2),
              "parity_s": round(time.perf_counter() - exported, 2)}
    print("onnx parity (max |onnx - torch|): " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    bad = {k: v for k, v in diffs.items() if not v <= PARITY_TOLERANCE}
    if bad:
        raise ValueError(f"ONNX export of {path} differs from PyTorch beyond {PARITY_TOLERANCE}: {bad}")
    return result
