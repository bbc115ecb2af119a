"""Write the GPU variant's model repository: `<out>/router/config.pbtxt` + `1/model.py`.

  python bench/gpu/make_repo.py --out /tmp/repo --kind KIND_GPU [--instances 2] [--delay-us 200]

Stdlib only (modelspec too): it runs on the GPU machine before anything is installed there.
The tensors and the length buckets come from modelspec; model.py reads them from the config.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
from modelspec.buckets import LENGTH_BUCKETS  # noqa: E402
from modelspec.interface import INPUT_NAMES, MODEL_NAME, output_dims  # noqa: E402

OWN_PARAMETERS = ('"intra_op', '"length_buckets"')  # not copied from --labels-from: written here


def config_text(a) -> str:
    inputs = ",\n".join(f'  {{ name: "{n}" data_type: TYPE_INT64 dims: [ -1 ] allow_ragged_batch: true }}'
                        for n in INPUT_NAMES)
    outputs = ",\n".join(f'  {{ name: "{n}" data_type: TYPE_FP32 dims: [ {", ".join(map(str, d))} ] }}'
                          for n, d in output_dims().items())
    sizes = ", ".join(str(b) for b in (256, 512, 1024) if b <= a.max_batch)
    preferred = f"preferred_batch_size: [ {sizes} ] " if sizes else ""
    params = {"repo_root": str(HERE.parents[1]), "cuda_graphs": "1" if a.cuda_graphs else "0",
              "capture_widths": a.capture_widths, "weights": a.weights, "graph_max_tokens": str(a.graph_max_tokens),
              "cpu_dtype": a.cpu_dtype, "threads": str(a.threads), "length_buckets": json.dumps(list(LENGTH_BUCKETS))}
    # JSON's escaping of an ASCII string is valid protobuf text format.
    params_text = "\n".join(f'parameters {{ key: "{k}" value: {{ string_value: {json.dumps(v)} }} }}'
                            for k, v in params.items())
    if a.labels_from:  # the label metadata the gateway reads (domain_labels, ...), copied verbatim
        params_text += "\n" + "\n".join(line for line in a.labels_from.read_text().splitlines()
                                        if line.startswith("parameters {") and not any(p in line for p in OWN_PARAMETERS))
    return (f'name: "{MODEL_NAME}"\nbackend: "python"\nmax_batch_size: {a.max_batch}\n'
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
            f"dynamic_batching {{ {preferred}max_queue_delay_microseconds: {a.delay_us} }}\n"
            f"instance_group [ {{ kind: {a.kind} count: {a.instances} }} ]\n{params_text}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kind", default="KIND_GPU", choices=["KIND_GPU", "KIND_CPU"])
    parser.add_argument("--instances", type=int, default=2, help="two: one runs its graph while the other gathers")
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--delay-us", type=int, default=200)
    parser.add_argument("--capture-widths", default="32", help="widths whose graphs are captured at load")
    parser.add_argument("--graph-max-tokens", type=int, default=65536)
    parser.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false")
    parser.add_argument("--weights", default="auto", choices=["auto", "random"])
    parser.add_argument("--cpu-dtype", default="float32", choices=["float32", "bfloat16"], help="KIND_CPU instances only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per CPU instance")
    parser.add_argument("--labels-from", type=Path, help="an exported router config.pbtxt whose metadata to serve too")
    a = parser.parse_args()
    model = a.out / MODEL_NAME
    (model / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / "model.py", model / "1" / "model.py")
    (model / "config.pbtxt").write_text(config_text(a))
    print(f"wrote {model}")


if __name__ == "__main__":
    main()
