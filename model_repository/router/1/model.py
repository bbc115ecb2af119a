"""Triton Python-backend model `router`: the exported ONNX graph run on the CPU by the runtime
cpu_runtime.py picks at start (config parameter `cpu_runtime`; ONNX Runtime fp32 by default).

Committed source; `semroute export` writes model.onnx (and config.pbtxt one folder up) beside it.
Triton hands `execute` every request of one dynamic batch. Requests may have different
sequence lengths (config: allow_ragged_batch). With `trim_padding` (the default) every row is
cut to its real length and the rows are run in the cheapest grouping (row_runs.py); without it
(the decision gate's reference) requests are grouped by width and padded to the longest. Each
request gets its outputs back at the width it sent.

Triton's stub cannot import modelspec (it ignores PYTHONPATH), so everything this model knows
of the contract (tensor names, the window, the length buckets) comes from config.pbtxt,
which `semroute export` writes from modelspec (export/triton_config.py).
"""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from cpu_runtime import cpu_flags, load_runner, select_runtime  # beside this file (the stub's sys.path has it)
from row_runs import plan_runs, real_lengths


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
        self.trim_padding = _flag(params, "trim_padding", default="1")
        runtime = select_runtime(params.get("cpu_runtime", "onnxruntime-fp32"), cpu_flags())
        onnx_path = Path(__file__).parent / "model.onnx"
        self.run_graph, described = load_runner(runtime, onnx_path, self.input_names, self.output_names,
                                                int(params.get("intra_op_threads", 2)), params.get("intra_op_spinning", "1"))
        pb_utils.Logger.log_info(f"router: {onnx_path} on {runtime} ({described}), numpy {np.__version__}, "
                                 f"width groups {list(self.width_groups)}, padding {'trimmed' if self.trim_padding else 'as sent'}")

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
            except Exception as exc:  # noqa: BLE001 — one bad request must not fail the others
                # Said in the log: a bug here would otherwise only show as lost batching.
                pb_utils.Logger.log_warn(f"router: a batch of {len(valid)} requests failed together ({exc!r}); "
                                         f"running each alone")
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
        """Per-request output dicts, in order."""
        return self._run_trimmed(batch) if self.trim_padding else self._run_by_width(batch)

    def _run_trimmed(self, batch):
        """Every row cut to its real length, the rows run in row_runs' cheapest grouping, and
        each request's outputs put back together at the width it sent (per-token outputs past
        a row's last unmasked token are 0: padding, never read)."""
        rows = [(k, r) for k, (ids, _) in enumerate(batch) for r in range(ids.shape[0])]
        lengths = np.concatenate([real_lengths(mask) for _, mask in batch])
        results = [{} for _ in batch]
        for width, members in plan_runs(lengths):
            picked = [rows[m] for m in members]
            for name, value in self.run_graph(*_prefixes(batch, picked, lengths[members], width)).items():
                for row_output, (k, r), length in zip(value, picked, lengths[members]):
                    self._place(results[k], name, r, row_output, length, batch[k][0].shape)
        return results

    def _place(self, result, name, row, row_output, length, sent_shape):
        """One row's output into its request's array, made at the width the request sent."""
        rows_sent, width_sent = sent_shape
        if name in self.per_token:  # row_output: [run width, ...]
            if name not in result:
                result[name] = np.zeros((rows_sent, width_sent, *row_output.shape[1:]), row_output.dtype)
            result[name][row, :length] = row_output[:length]
        else:  # row_output: the row's own [...]
            if name not in result:
                result[name] = np.zeros((rows_sent, *row_output.shape), row_output.dtype)
            result[name][row] = row_output

    def _run_by_width(self, batch):
        """Requests grouped by width (the gateway's length buckets, from the config: its requests
        fall into these groups whole, any other client's widths are rounded up to one of them)
        and each group is one session.run padded to its longest: a short request never pays for
        a long one's padding, and there are at most len(width_groups) runs."""
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
        outputs = self.run_graph(ids, mask)
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


def _prefixes(batch, picked, lengths, width):
    """ids and mask [len(picked), width] of the rows `picked` ((request, row) pairs): zero-filled,
    each row's real prefix copied in. A run may be wider than some of its rows' requests were
    sent (a 17-token row sent at 32 beside a 16-token row sent at 16)."""
    ids = np.zeros((len(picked), width), np.int64)
    mask = np.zeros_like(ids)
    for i, ((k, r), length) in enumerate(zip(picked, lengths)):
        ids[i, :length], mask[i, :length] = batch[k][0][r, :length], batch[k][1][r, :length]
    return ids, mask


def _flag(params, key, default):
    value = params.get(key, default)
    if value not in ("0", "1"):
        raise ValueError(f"config.pbtxt parameter {key!r} must be \"0\" or \"1\", not {value!r}")
    return value == "1"


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
