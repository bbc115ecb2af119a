"""`semroute profile build` and `semroute eval-selection` as users run them: real processes,
real Triton, the router's own embeddings of real prompts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from control.selection.profile import Profile

SEMROUTE = str(Path(sys.executable).with_name("semroute"))

CODE = ["Write a Python function that reverses a linked list.", "Fix this JavaScript: const x = [1,2,3].mapp(x => x*2)",
        "Implement quicksort in C++ with a random pivot.", "How do I read a CSV file with pandas and drop empty rows?",
        "Write a SQL query returning the top 5 customers by revenue.", "Explain this Rust borrow checker error: cannot borrow as mutable",
        "Write a bash script that renames every .txt file to .md.", "Convert this Python loop into a list comprehension.",
        "Write a Go HTTP handler that returns JSON.", "Write unit tests for a function that parses ISO dates in Python.",
        "Implement binary search in Java.", "Refactor this class to use dependency injection in TypeScript.",
        "Write a regex that matches IPv4 addresses.", "Why does my recursive Python function hit the recursion limit?"]
COOKING = ["How long should I boil an egg for a runny yolk?", "What can I cook with leftover rice and eggs?",
           "Give me a recipe for banana bread without butter.", "How do I make a sourdough starter from scratch?",
           "What spices go well in a lentil soup?", "How do I keep guacamole from turning brown?",
           "What is the best way to roast vegetables in the oven?", "How do I make fluffy pancakes?",
           "Suggest a vegetarian dinner for four people.", "How do I caramelise onions properly?",
           "What wine goes with grilled salmon?", "How can I thicken a stew without flour?",
           "Give me a simple tomato pasta sauce recipe.", "How do I stop cookies from spreading in the oven?"]


def semroute(*args, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([SEMROUTE, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def outcome_rows(prompts_code, prompts_cooking) -> str:
    """coder solves code and fails cooking; chef the other way round."""
    rows = ["prompt,model,score"]
    for text in prompts_code:
        rows += [f'"{text}",coder,1', f'"{text}",chef,0']
    for text in prompts_cooking:
        rows += [f'"{text}",coder,0', f'"{text}",chef,1']
    return "\n".join(rows) + "\n"


def test_profile_build_then_eval_selection(triton, tmp_path):
    train, held_out = tmp_path / "train.csv", tmp_path / "eval.csv"
    train.write_text(outcome_rows(CODE[:10], COOKING[:10]))
    held_out.write_text(outcome_rows(CODE[10:], COOKING[10:]))
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"coder": 1.0, "chef": 0.5}))

    built = semroute("profile", "build", "--outcomes", train, "--out", tmp_path / "kinds", "--prices", prices,
                     "--triton-url", triton.grpc_url, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout)
    assert report["models"] == 2 and report["prompts"] == 20
    profile = Profile.load(tmp_path / "kinds")
    assert profile.prices == {"coder": 1.0, "chef": 0.5} and profile.embeddings.shape == (20, 384)

    run = semroute("eval-selection", "--outcomes", held_out, "--profile", tmp_path / "kinds", "--prices", prices,
                   "--output-dir", tmp_path / "eval", "--triton-url", triton.grpc_url, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    refs = result["references"]
    assert refs["best_single"]["quality"] == 0.5 and refs["oracle"] == {"quality": 1.0, "cost": 0.75}
    # held-out prompts of each kind go to the model that solves that kind, at the oracle's cost
    assert result["lambda"]["max_quality"]["quality"] == 1.0 and result["lambda"]["max_quality"]["cost"] == 0.75
    assert {"lambda", "quality", "cost"} <= set(result["curve"][0]) and "tolerance" in result["curve_tolerance"][0]
    assert result["prices"]["chef"] == {"usd_per_1m_tokens": 0.5, "source": "price file prices.json"}
    assert result["apgr"]["apgr"] is None   # equal means: no quality gap for APGR to close
    svg = (tmp_path / "eval" / "selection.svg").read_text()
    assert svg.startswith("<svg") and "oracle" in svg and "coder" in svg


def test_eval_selection_without_prices_says_how_to_give_them(triton, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text(outcome_rows(CODE[:3], COOKING[:3]))
    built = semroute("profile", "build", "--outcomes", table, "--out", tmp_path / "p", "--triton-url", triton.grpc_url, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    run = semroute("eval-selection", "--outcomes", table, "--profile", tmp_path / "p", "--triton-url", triton.grpc_url, cwd=tmp_path)
    assert run.returncode == 2 and "no price for coder, chef: pass --prices FILE" in run.stderr


def test_profile_build_bad_table_is_a_clear_error(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("prompt,score\nhi,1\n")
    run = semroute("profile", "build", "--outcomes", table, "--out", tmp_path / "p", "--triton-url", "127.0.0.1:1", cwd=tmp_path)
    assert run.returncode == 2 and "missing: model" in run.stderr


def test_profile_build_without_triton_is_a_clear_error(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text(outcome_rows(CODE[:1], COOKING[:1]))
    run = semroute("profile", "build", "--outcomes", table, "--out", tmp_path / "p", "--triton-url", "127.0.0.1:1", cwd=tmp_path)
    assert run.returncode == 2 and "no router model at Triton 127.0.0.1:1" in run.stderr and "Traceback" not in run.stderr
