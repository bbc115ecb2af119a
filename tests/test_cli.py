"""The `semroute` command line as users and outside checks run it: real processes, real Triton."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stub_upstream import free_port

SEMROUTE = str(Path(sys.executable).with_name("semroute"))
COMMANDS = ("up", "serve", "triton", "export", "route", "classify", "train", "eval")


def semroute(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([SEMROUTE, *args], capture_output=True, text=True, timeout=timeout)


def test_help_documents_every_command_and_flag():
    top = semroute("--help")
    assert top.returncode == 0
    for command in COMMANDS:
        assert command in top.stdout
    assert "--triton-url" in semroute("classify", "--help").stdout
    serve = semroute("serve", "--help").stdout
    assert all(flag in serve for flag in ("--config", "--port", "--triton-url", "--workers"))
    triton = semroute("triton", "--help").stdout
    assert all(flag in triton for flag in ("--model-repository", "--http-port", "--grpc-port", "--metrics-port"))


def test_classify_writes_one_line_per_input_in_order(triton, tmp_path):
    inputs = [{"text": "Write a Python function that reverses a linked list."},
              {"messages": [{"role": "system", "content": "be brief"},
                            {"role": "user", "content": "What is the derivative of x^2?"}]},
              {"text": "hello " * 400}]  # longer than one 256-token window
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(i) + "\n" for i in inputs))
    run = semroute("classify", "--input", str(src), "--output", str(out), "--triton-url", triton.grpc_url)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert set(row) >= {"domain", "task", "jailbreak_prob", "strong_prob", "pii"}
        assert set(row) >= {"harmful_prob", "language", "reliable", "reliable_reason"}  # model v2 signals
        assert abs(sum(row["domain"].values()) - 1) < 1e-3 and abs(sum(row["task"].values()) - 1) < 1e-3
        # v1's fields stay; v2 adds where a span came from and how sure it is (issue 11.1)
        assert all(set(span) == {"type", "start", "end", "text", "source", "score"} for span in row["pii"])
        assert all(span["source"] in ("pattern", "model") and 0 <= span["score"] <= 1 for span in row["pii"])
    assert max(rows[0]["task"], key=rows[0]["task"].get) == "coding"
    assert rows[2]["read"]["chunks"] == 2 and rows[2]["read"]["tokens"] == 400


def test_classify_bad_line_says_where(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "fine"}\n{"txt": "typo"}\n')
    run = semroute("classify", "--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--triton-url", "127.0.0.1:1")
    assert run.returncode == 2 and f"{src}:2" in run.stderr


def test_route_prints_decision_json(triton, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("backends: [{name: coder, url: 'http://127.0.0.1:9/v1', model: c},"
                      " {name: cheap, url: 'http://127.0.0.1:9/v1', model: m}]\n"
                      "routing: {default: cheap, tasks: {coding: coder}}\n")
    run = semroute("route", "Write a Python function that merges two sorted lists.", "--config", str(config),
                   "--triton-url", triton.grpc_url)
    assert run.returncode == 0, run.stderr
    decision = json.loads(run.stdout)
    assert decision["backend"] == "coder" and decision["rule"] == "task:coding"
    assert decision["signals"]["read"]["chunks"] == 1 and decision["timings_ms"]["classify"] > 0


def test_route_without_triton_is_a_clear_error(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("backends: [{name: a, url: 'http://127.0.0.1:9/v1', model: m}]\nrouting: {default: a}\n")
    run = semroute("route", "hi", "--config", str(config), "--triton-url", f"127.0.0.1:{free_port()}")
    assert run.returncode == 2 and "cannot reach the router model on Triton" in run.stderr


@pytest.mark.parametrize("args,needle", [
    (("serve", "--config", "nope.yaml"), "config file not found: nope.yaml"),
    (("triton", "--model-repository", "/nonexistent/repo"), "/nonexistent/repo"),
])
def test_startup_errors_are_clear(args, needle):
    run = semroute(*args, timeout=60)
    assert run.returncode == 2 and needle in run.stderr
