"""The shipped config/example.yaml, end to end: its backends pointed at stub LLMs, a real gateway
and Triton. Everyday prompts go to the cheap backend; the README's examples say what happens."""
from __future__ import annotations

import json

import pytest
import requests
import yaml

from tests.conftest import REPO_ROOT
from tests.gateway_proc import GatewayProcess
from tests.stub_upstream import StubUpstream

EXAMPLE = REPO_ROOT / "config" / "example.yaml"
CHEAP = "ollama"

SMALL_TALK = ["hey, how's it going?", "good afternoon!", "how are you today?", "how's your day been?",
              "thanks so much for your help!", "thank you, that was really helpful", "many thanks!",
              "see you tomorrow", "have a lovely weekend", "good night!", "goodbye for now"]
# Known v2 defect (export/model_card): DC-Router's F1-scored trivia rows taught the strong head that
# trivia-like questions are hard (trivia_qa averages 0.18 over its nine models), so this one scores
# strong_prob 0.84 and goes to the strong tier. Strict: it fails loudly once a retrained head fixes it.
TRIVIA_DEFECT = pytest.mark.xfail(strict=True, reason="v2 strong head: trivia-like questions read as hard")
SIMPLE_FACTS = [pytest.param("What is the capital of France?", marks=TRIVIA_DEFECT), "How many days are in a week?",
                "Who wrote Romeo and Juliet?", "What is the boiling point of water?", "How many legs does a spider have?"]


@pytest.fixture(scope="module")
def example_gateway(triton, tmp_path_factory):
    config = yaml.safe_load(EXAMPLE.read_text())
    stubs = {b["name"]: StubUpstream(b["name"]).start() for b in config["backends"]}
    for backend in config["backends"]:
        backend["url"] = stubs[backend["name"]].url
    gateway = GatewayProcess(config, triton.grpc_url, tmp_path_factory.mktemp("example"),
                             env={"OPENAI_API_KEY": "sk-test-not-a-real-key"}).start()
    yield gateway
    gateway.stop()
    for stub in stubs.values():
        stub.stop()


def ask(gateway, prompt: str, headers: dict | None = None) -> requests.Response:
    resp = requests.post(f"{gateway.url}/v1/chat/completions", headers=headers or {}, timeout=30,
                         json={"model": "auto", "messages": [{"role": "user", "content": prompt}]})
    assert resp.status_code == 200, resp.text
    return resp


def routes_matched(resp: requests.Response) -> dict:
    return json.loads(resp.headers["x-semroute-debug"])["signals"]["routes"]


@pytest.mark.parametrize("prompt", SMALL_TALK)
def test_small_talk_takes_the_smalltalk_route_to_the_cheap_backend(example_gateway, prompt):
    # The route itself must hold (whatever strong_prob the model gives chit-chat); a PII rule
    # placed before it (v1's false positives) may answer first, to the same cheap backend.
    resp = ask(example_gateway, prompt, {"x-semroute-debug": "1"})
    assert "smalltalk" in routes_matched(resp)
    assert resp.headers["x-semroute-model"] == CHEAP


@pytest.mark.parametrize("prompt", SIMPLE_FACTS)
def test_simple_facts_go_to_the_cheap_backend(example_gateway, prompt):
    assert ask(example_gateway, prompt).headers["x-semroute-model"] == CHEAP


def test_a_greeting_before_real_work_is_not_small_talk(example_gateway):
    resp = ask(example_gateway, "thanks, now write a sorting algorithm in C++", {"x-semroute-debug": "1"})
    assert "smalltalk" not in routes_matched(resp)
