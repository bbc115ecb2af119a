"""The README says what the gateway and the CLI really do: its examples and status codes are
checked against real processes (gateway, Triton, the `semroute` command from another directory)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import requests

from control.sessions import session_draw
from tests.conftest import REPO_ROOT
from tests.gateway_proc import GatewayProcess
from tests.stub_upstream import StubUpstream, free_port
from tests.test_example_config import ask, example_gateway  # noqa: F401 (fixture)

README = (REPO_ROOT / "README.md").read_text()
SEMROUTE = str(Path(sys.executable).with_name("semroute"))


def readme_curl_example() -> tuple[str, dict[str, str]]:
    """The README's first curl example: its prompt and the x-semroute-* headers it shows."""
    block = re.search(r"```bash\n(curl .*?)```", README, re.S).group(1)
    body = json.loads(re.search(r"-d '(\{.*?\})'", block, re.S).group(1))
    return body["messages"][-1]["content"], dict(re.findall(r"^# (x-semroute-[a-z-]+): (.+)$", block, re.M))


def test_readme_curl_example_shows_the_real_headers(example_gateway):  # noqa: F811
    prompt, shown = readme_curl_example()
    assert {"x-semroute-model", "x-semroute-rule"} <= set(shown)
    # The example's code rule splits 90/10, sticky per session: a session well inside the 90%.
    session = next(f"s{i}" for i in range(100) if 0.2 < session_draw(f"s{i}", "split") < 0.8)
    resp = ask(example_gateway, prompt, {"x-session-id": session})
    assert {name: resp.headers[name] for name in shown} == shown


def documented_status(pattern: str) -> int:
    found = re.search(pattern, README, re.S)
    assert found, f"README does not document: {pattern}"
    return int(found.group(1))


def test_readyz_answers_what_the_readme_says_when_degraded(tmp_path):
    code = documented_status(r"`GET /readyz` \|[^\n]*?(\d{3}) `degraded`")
    config = {"backends": [{"name": "a", "url": "http://127.0.0.1:9/v1", "model": "m"}], "routing": {"default": "a"}}
    gateway = GatewayProcess(config, f"127.0.0.1:{free_port()}", tmp_path).start(timeout_s=90)  # no Triton there
    try:
        ready = requests.get(f"{gateway.url}/readyz", timeout=20)
    finally:
        gateway.stop()
    assert (ready.status_code, ready.json()["status"]) == (code, "degraded")


def test_cooldown_answers_what_the_readme_says(tmp_path):
    code = documented_status(r"cooling\s+down[^.]*?→ (\d{3})\s+`backend_unavailable`")
    stub = StubUpstream("flaky").start()
    stub.fail_status = 500
    config = {"backends": [{"name": "flaky", "url": stub.url, "model": "m"}], "routing": {"default": "flaky"},
              "resilience": {"retries": 0, "circuit": {"failures": 1, "cooldown_s": 60}}}
    gateway = GatewayProcess(config, f"127.0.0.1:{free_port()}", tmp_path).start(timeout_s=90)
    body = {"model": "flaky", "messages": [{"role": "user", "content": "hi"}]}
    try:
        first = requests.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=20)
        cooling = requests.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=20)
    finally:
        gateway.stop()
        stub.stop()
    assert first.status_code == 502
    assert (cooling.status_code, cooling.json()["error"]["code"]) == (code, "backend_unavailable")


def semroute_elsewhere(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI run from a directory that is not the repository (the README's promise)."""
    return subprocess.run([SEMROUTE, *args], capture_output=True, text=True, timeout=180, cwd=tmp_path)


def test_route_works_from_any_directory(triton, tmp_path):
    run = semroute_elsewhere(tmp_path, "route", "hello there", "--triton-url", triton.grpc_url)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["backend"] == "ollama"  # config/example.yaml, found from the package


def test_classify_shows_progress(triton, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"text": f"question number {i}"}) + "\n" for i in range(70)))
    run = semroute_elsewhere(tmp_path, "classify", "--input", str(src), "--output", str(out), "--triton-url", triton.grpc_url)
    assert run.returncode == 0, run.stderr
    assert "classify" in run.stderr and "70/70" in run.stderr
    assert len(out.read_text().splitlines()) == 70


def test_export_shows_progress(model_repository, tmp_path):
    copy = tmp_path / "repository"
    shutil.copytree(model_repository, copy, symlinks=True)  # up to date: the steps run, the ONNX export is skipped
    run = semroute_elsewhere(tmp_path, "export", "--model-repository", str(copy))
    assert run.returncode == 0, run.stderr
    assert "export" in run.stderr and "4/4" in run.stderr
