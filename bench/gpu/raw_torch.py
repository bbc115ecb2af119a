"""The raw-PyTorch limit of the router network (same module as the Triton GPU variant), in
the same run: sequences/s at one width over a batch sweep, eager and as a CUDA graph.

  python bench/gpu/raw_torch.py [--seq-len 32] [--batches 256 1024 4096] [--seconds 4]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("SEMROUTE_REPO", str(Path(__file__).resolve().parents[2]))


def router(device, dtype):
    import importlib.util
    import types

    # model.py imports triton_python_backend_utils at the top; outside Triton a stand-in will do.
    sys.modules.setdefault("triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    spec = importlib.util.spec_from_file_location("gpu_router", Path(__file__).with_name("model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, what = module.build_router(os.environ["SEMROUTE_REPO"], 2, os.environ.get("WEIGHTS", "random"))
    return model.to(device, dtype), what


def timed(fn, device, seconds: float) -> float:
    """Seconds per call, averaged over as many calls as fit in `seconds` (after one warm call)."""
    fn()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
        if calls % 8 == 0:
            sync()
    sync()
    return (time.perf_counter() - start) / calls


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 256, 1024, 4096])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--no-graphs", dest="graphs", action="store_false")
    a = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model, what = router(device, dtype)
    print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                      "dtype": str(dtype), "model": what}), flush=True)
    best = 0.0
    for batch in a.batches:
        ids = torch.randint(1000, 20000, (batch, a.seq_len), device=device)
        mask = torch.ones_like(ids)
        eager = timed(lambda: model(ids, mask), device, a.seconds)
        row = {"batch": batch, "seq_len": a.seq_len, "eager_ms": round(eager * 1e3, 3), "eager_seq_per_s": round(batch / eager)}
        if a.graphs and device.type == "cuda":
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model(ids, mask)
            replay = timed(graph.replay, device, a.seconds)
            row.update(graph_ms=round(replay * 1e3, 3), graph_seq_per_s=round(batch / replay))
        best = max(best, row.get("graph_seq_per_s", 0), row["eager_seq_per_s"])
        print(json.dumps(row), flush=True)
    print(json.dumps({"raw_torch_limit_seq_per_s": best, "seq_len": a.seq_len}), flush=True)


if __name__ == "__main__":
    main()
