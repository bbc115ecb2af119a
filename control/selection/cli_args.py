"""The `semroute profile build` and `semroute eval-selection` subcommands' flags (kept here so
control/cli.py only names them)."""
from __future__ import annotations

import argparse
from pathlib import Path

TRITON_HELP = "Triton gRPC HOST:PORT serving the router (default: start the bundled Triton on free ports)"


def add_selection_commands(sub) -> None:
    p = sub.add_parser("profile", help="quality profiles for learned model selection")
    actions = p.add_subparsers(dest="profile_command", required=True, metavar="ACTION")
    b = actions.add_parser("build", help="embed an outcome table's prompts and write a quality profile",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Outcome table: CSV (header prompt,model,score) or JSONL "
                                       '({"prompt", "model", "score"}), score in [0, 1]; or a shipped source '
                                       "(mmlu_pro_multimodel.csv, dcrouter_scores.csv, mmlu_train_half.csv).")
    b.add_argument("--outcomes", required=True, type=Path, help="outcome table (a train half: never eval/)")
    b.add_argument("--out", required=True, type=Path, help="profile directory to write")
    b.add_argument("--prices", type=Path, default=None, help="prices, USD per 1M tokens: default_llm.json shape or {model: price}")
    b.add_argument("--name", default=None, help="profile name (default: the --out directory's name)")
    b.add_argument("--method", choices=("auto", "knn"), default="auto",
                   help="auto: k-NN or the ridge head, whichever validates better; knn: always k-NN (default: %(default)s)")
    b.add_argument("--triton-url", default=None, help=TRITON_HELP)

    e = sub.add_parser("eval-selection", help="quality vs cost of a profile's selector on an outcome table (JSON + SVG)")
    e.add_argument("--outcomes", required=True, type=Path, help="outcome table to evaluate on (an eval half)")
    e.add_argument("--prices", type=Path, default=None, help="prices, USD per 1M tokens (default: the table's own)")
    e.add_argument("--profile", type=Path, default=None, help="profile directory (default: the shipped one for the source)")
    e.add_argument("--output-dir", type=Path, default=None, help="where selection.json and selection.svg go (default: .cache/selection/eval/<profile>)")
    e.add_argument("--triton-url", default=None, help=TRITON_HELP)


def dispatch(args) -> int:
    if args.command == "profile":
        from control.selection.build import run_profile_build
        if args.method == "auto":
            args.method = None
        return run_profile_build(args)
    from control.selection.evaluation import run_eval_selection
    return run_eval_selection(args)
