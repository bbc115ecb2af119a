"""Triton Python-backend model `router`: the exported ONNX graph run by ONNX Runtime on CPU.

Committed source; `semroute export` writes model.onnx (and config.pbtxt one folder up) beside it.
Triton hands `execute` every request of one dynamic batch. Requests may have different
sequence lengths (config: allow_ragged_batch), so they are right-padded to the longest,
run as ONE session.run, and split back, each per-token output cut to its own length.

Triton's stub cannot import modelspec (it ignores PYTHONPATH), so everything this model knows
of the contract (tensor names, the window, the length buckets) comes from config.pbtxt,
which `semroute export` writes from modelspec (export/triton_config.py).
"""
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        # The tensors are the config's: the ONNX graph and config.pbtxt come from one export.
        self.input_names = [tensor["name"] for tensor in config["input"]]  # token ids, then the mask
        self.output_names = [tensor["name"] for tensor in config["output"]]
        # Per token: the first per-sequence axis is the row's length (-1).
        self.per_token = [t["name"] for t in config["output"] if len(t["dims"]) > 1 and int(t["dims"][0]) == -1]
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_seq_len = int(_required(params, "max_seq_len"))
        self.width_groups = tuple(json.loads(_required(params, "length_buckets")))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", 2))
        options.inter_op_num_threads = 1
        # Spinning idle threads burn the cores the gateway and Triton's own threads need on a
        # small CPU; "0" makes them sleep (bench/RESULTS.md: Triton tuning).
        options.add_session_config_entry("session.intra_op.allow_spinning", params.get("intra_op_spinning", "1"))
        onnx_path = Path(__file__).parent / "model.onnx"
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        pb_utils.Logger.log_info(f"router: {onnx_path} on ONNX Runtime {ort.__version__} CPU, "
                                 f"{options.intra_op_num_threads} intra-op threads, numpy {np.__version__}, "
                                 f"width groups {list(self.width_groups)}")

    def execute(self, requests):
        responses = [None] * len(requests)
        valid = []  # (position in requests, input_ids, attention_mask)
        for i, request in enumerate(requests):
            try:
                valid.append((i, *self._inputs(request)))
            except ValueError as exc:
                responses[i] = _error(str(exc), pb_utils.TritonError.INVALID_ARG)
        if valid:
            try:
                results = self._run_together([(ids, mask) for _, ids, mask in valid])
            except Exception:  # noqa: BLE001 — one bad request must not fail the others
                results = [self._run_alone(ids, mask) for _, ids, mask in valid]
            for (i, _, _), result in zip(valid, results):
                responses[i] = result if isinstance(result, pb_utils.InferenceResponse) else _response(result, self.output_names)
        return responses

    def _inputs(self, request):
        ids, mask = (pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"{self.input_names[0]} {list(ids.shape)} and {self.input_names[1]} {list(mask.shape)} "
                             "must have the same shape [batch, seq]")
        if not 1 <= ids.shape[1] <= self.max_seq_len:
            raise ValueError(f"sequence length {ids.shape[1]} is outside 1..{self.max_seq_len}; "
                             "split longer texts into chunks")
        if ids.size and ids.min() < 0:
            raise ValueError(f"{self.input_names[0]} must be non-negative token ids")
        return ids, mask

    def _run_together(self, batch):
        """Per-request output dicts, in order. Requests are grouped by width (the gateway's length
        buckets, from the config: its requests fall into these groups whole, any other client's
        widths are rounded up to one of them) and each group is one session.run padded to its
        longest: a short request never pays for a long one's padding (a 256-token chunk in a
        batch of 32-token rows would otherwise multiply the work by 8), and there are at most
        len(width_groups) runs."""
        groups = {}
        for k, (ids, _) in enumerate(batch):
            groups.setdefault(_width_group(ids.shape[1], self.width_groups), []).append(k)
        results = [None] * len(batch)
        for members in groups.values():
            for k, result in zip(members, self._run_padded([batch[k] for k in members])):
                results[k] = result
        return results

    def _run_padded(self, batch):
        """One session.run over requests right-padded to the longest of them."""
        width = max(ids.shape[1] for ids, _ in batch)
        ids = np.concatenate([_pad(ids, width) for ids, _ in batch])
        mask = np.concatenate([_pad(mask, width) for _, mask in batch])
        outputs = dict(zip(self.output_names, self.session.run(self.output_names, dict(zip(self.input_names, (ids, mask))))))
        results, start = [], 0
        for request_ids, _ in batch:
            rows, seq_len = request_ids.shape
            result = {name: value[start:start + rows] for name, value in outputs.items()}
            result.update({name: result[name][:, :seq_len] for name in self.per_token})
            results.append(result)
            start += rows
        return results

    def _run_alone(self, ids, mask):
        try:
            return self._run_together([(ids, mask)])[0]
        except Exception as exc:  # noqa: BLE001 — e.g. a token id beyond the vocabulary
            return _error(f"inference failed: {exc}")


def _required(params, key):
    if key not in params:  # a config not written by `semroute export`: refuse to load, saying why
        raise ValueError(f"config.pbtxt lacks parameter {key!r}: rebuild the repository with `semroute export`")
    return params[key]


def _width_group(width, groups):
    return next((g for g in groups if g >= width), width)


def _pad(array, width):
    return np.pad(array, ((0, 0), (0, width - array.shape[1]))) if array.shape[1] < width else array


def _response(outputs, names):
    return pb_utils.InferenceResponse(output_tensors=[
        pb_utils.Tensor(name, np.ascontiguousarray(outputs[name])) for name in names])


def _error(message, code=None):
    error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)
