"""`semroute` command line: every subcommand and flag is declared here, so `--help` is the
documentation; the work is done by the module each command names."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Paths from the project (where this package is installed from), not the working directory:
# `semroute route "hi"` works from anywhere.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = str(PROJECT_ROOT / "config" / "example.yaml")
DEFAULT_TRITON_GRPC = "localhost:8101"
DEFAULT_REPOSITORY = str(PROJECT_ROOT / "model_repository")


def _add_triton_ports(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-repository", default=DEFAULT_REPOSITORY, help="Triton model repository (default: %(default)s)")
    p.add_argument("--http-port", type=int, default=8100, help="Triton HTTP port (default: %(default)s)")
    p.add_argument("--grpc-port", type=int, default=8101, help="Triton gRPC port (default: %(default)s)")
    p.add_argument("--metrics-port", type=int, default=8102, help="Triton metrics port (default: %(default)s)")


def _add_envoy_ports(p: argparse.ArgumentParser) -> None:
    p.add_argument("--admin-port", type=int, default=9901, help="Envoy admin on 127.0.0.1, /stats/prometheus among it "
                                                                 "(default: %(default)s)")
    p.add_argument("--envoy-concurrency", type=int, default=None,
                   help="Envoy worker threads (default: Envoy's own, one per core)")
    p.add_argument("--stats-port", type=int, default=None,
                   help="also serve Envoy's /stats/prometheus (only) on --host at this port, for scrapers")
    p.add_argument("--processor-port", type=int, default=50051, help="ext_proc processor gRPC port (default: %(default)s)")
    p.add_argument("--processor-metrics-port", type=int, default=9902,
                   help="the processor's semroute_* metrics (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semroute", description="Semantic LLM router.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="start the local Triton server and the gateway; Ctrl-C stops both")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config (default: %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="gateway port (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="gateway address (default: %(default)s)")
    p.add_argument("--data-plane", choices=("aiohttp", "envoy"), default="aiohttp",
                   help="aiohttp: the Python gateway; envoy: Envoy + semroute's ext_proc processor (default: %(default)s)")
    _add_triton_ports(p)
    _add_envoy_ports(p)

    p = sub.add_parser("envoy", help="Envoy as the data plane: Envoy, the ext_proc processor and (unless --triton-url) "
                                     "the bundled Triton; Ctrl-C stops all")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config (default: %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="Envoy's listener port (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    p.add_argument("--triton-url", default=None, help="Triton gRPC HOST:PORT (default: start the bundled Triton)")
    p.add_argument("--print-config", action="store_true", help="print Envoy's bootstrap (YAML) and exit")
    p.add_argument("--processor-only", action="store_true",
                   help="run the processor alone (Envoy runs beside it with the --print-config bootstrap)")
    p.add_argument("--processor-host", default=None,
                   help="the processor's address: where it listens and where Envoy reaches it (default: 127.0.0.1)")
    _add_triton_ports(p)
    _add_envoy_ports(p)

    p = sub.add_parser("serve", help="run the gateway against a running Triton")
    p.add_argument("--config", required=True, help="YAML config")
    p.add_argument("--port", type=int, default=8080, help="gateway port (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="gateway address (default: %(default)s)")
    p.add_argument("--triton-url", default=DEFAULT_TRITON_GRPC, help="Triton gRPC HOST:PORT (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="gateway worker processes sharing the port (default: %(default)s)")

    p = sub.add_parser("triton", help="run the bundled Triton server (CPU) on our model repository")
    _add_triton_ports(p)

    p = sub.add_parser("export", help="build the Triton model repository (ONNX + config) from the base model and trained heads")
    p.add_argument("--weights", type=Path, default=None, help="trained branch/heads (default: export/weights/router_heads.safetensors)")
    p.add_argument("--model-repository", type=Path, default=Path(DEFAULT_REPOSITORY), help="output repository (default: %(default)s)")
    p.add_argument("--max-batch-size", type=int, default=64, help="Triton max_batch_size (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="export even when the repository is up to date")
    p.add_argument("--target", choices=("python-ort", "onnxruntime", "tensorrt"), default="python-ort",
                   help="python-ort: the bundled CPU repository (--model-repository); onnxruntime / tensorrt: also build/triton/<target> for NVIDIA's Triton image (tensorrt builds the FP16 engine when TensorRT is installed) (default: %(default)s)")

    p = sub.add_parser("route", help="print the routing decision for a prompt as JSON")
    p.add_argument("text", help="the prompt")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config (default: %(default)s)")
    p.add_argument("--triton-url", default=DEFAULT_TRITON_GRPC, help="Triton gRPC HOST:PORT (default: %(default)s)")

    p = sub.add_parser("classify", help="classify a JSONL file: one line of signals per input line, in order")
    p.add_argument("--input", required=True, type=Path, help='JSONL, each line {"text": ...} or {"messages": [...]}')
    p.add_argument("--output", required=True, type=Path, help="JSONL of signals")
    p.add_argument("--triton-url", default=DEFAULT_TRITON_GRPC, help="Triton gRPC HOST:PORT (default: %(default)s)")

    p = sub.add_parser("train", help="train the router heads on the staged data")
    p.add_argument("--data-dir", type=Path, default=None, help="staged data root with train/ and eval/ (default: $SEMROUTE_DATA_DIR or ../shared/data)")
    p.add_argument("--output", type=Path, default=None, help="weights file (default: export/weights/router_heads.safetensors)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--smoke", action="store_true", help="one quick step on a tiny subset (tests)")
    p.add_argument("--branch-layers", type=int, default=None, help="trainable copies of the top encoder layers (default: 2)")
    p.add_argument("--epochs", type=int, default=None, help="epochs over the per-source capped sample (default: 3)")
    p.add_argument("--max-len", type=int, default=None, help="training sequence length, head + tail kept (default: 128)")
    p.add_argument("--synth-pii", type=int, default=None, help="extra PII sentences from presidio templates + Faker (default: 8000)")

    p = sub.add_parser("eval", help="evaluate the served model on the held-out sets")
    p.add_argument("--data-dir", type=Path, default=None, help="staged data root (default: $SEMROUTE_DATA_DIR or ../shared/data)")
    p.add_argument("--triton-url", default=DEFAULT_TRITON_GRPC, help="Triton gRPC HOST:PORT (default: %(default)s)")
    p.add_argument("--output-dir", type=Path, default=Path("export/model_card"), help="metrics.json and report (default: %(default)s)")
    p.add_argument("--weights", type=Path, default=None, help="weights whose metadata (thresholds, calibration) is used; with --start-triton also served (default: export/weights/router_heads.safetensors)")
    p.add_argument("--start-triton", action="store_true", help="serve --weights on a private Triton (free ports) instead of using --triton-url")
    p.add_argument("--limit", type=int, default=None, help="first N rows of every set only (quick check)")
    p.add_argument("--config", type=Path, default=None, help="gateway config whose routing.safety thresholds count as blocks (default: config/example.yaml)")
    p.add_argument("--compare", default=None, help="metrics.json of another model (e.g. v1) shown beside this one in goals.md; "
                   "or `fp32`: the decision gate of the served path (--cpu-runtime, padding trimmed as exported) against the reference, "
                   "ONNX Runtime fp32 with rows as sent, each on its own private Triton")
    p.add_argument("--cpu-runtime", default=None, help="with --compare fp32: the runtime under test (onnxruntime-fp32, "
                   "openvino-fp32, openvino-bf16, onnxruntime-bf16-emulated; default: what `auto` picks on this CPU)")
    from control.selection.cli_args import add_selection_commands  # issue 14: its flags live with it
    add_selection_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(_dispatch(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, ConnectionError) as exc:
        print(f"semroute {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int | None:
    # Imports stay inside: `semroute triton` must not pay for torch, `export` for aiohttp.
    if args.command == "envoy" or getattr(args, "data_plane", None) == "envoy":
        from control.envoy.run import run_envoy
        return run_envoy(args)
    if args.command == "up":
        from control.up import run_up
        return run_up(args)
    if args.command == "serve":
        from control.serving.workers import run_serve
        return run_serve(args)
    if args.command == "triton":
        from control.tritonserver import run_triton
        return run_triton(args)
    if args.command == "export":
        from export.variants import run_export
        return run_export(args)
    if args.command in ("route", "classify"):
        from control import offline
        return offline.run_route(args) if args.command == "route" else offline.run_classify(args)
    if args.command == "train":
        from export.train import run_train
        return run_train(args)
    if args.command == "eval":
        from export.evaluate import run_eval
        return run_eval(args)
    if args.command in ("profile", "eval-selection"):
        from control.selection.cli_args import dispatch
        return dispatch(args)
    raise ValueError(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
