"""The learned selectors through the real gateway and Triton: prompts of different kinds go to
different backends by estimated quality and price (the shipped multi_model profile), /v1/route
explains the estimates, the budget selector paces λ, and bad selector configs are refused."""
from __future__ import annotations

import time

import pytest
import requests
import yaml

from control.config import ConfigError, load_config
from control.selection.runtime import check_profiles
from tests.gateway_proc import GatewayProcess

CODE = "Write a Python function that checks whether a string is a palindrome."
TRIVIA = "who wrote the novel the old man and the sea"
WRITING = "Write a sentence using these words: dog, frisbee, park, catch"


def learned_config(stubs: dict, **routing) -> dict:
    """Three stub backends standing for three DC-Router models (prices: input + output per 1M)."""
    return {
        "backends": [
            {"name": "cheap", "url": stubs["cheap"].url, "model": "gemma", "price": {"input": 0.05, "output": 0.05},
             "profile": "gemma-2-9b-it"},
            {"name": "coder", "url": stubs["coder"].url, "model": "qwen", "price": {"input": 0.1, "output": 0.1},
             "profile": "qwen2.5-7b-instruct"},
            {"name": "strong", "url": stubs["strong"].url, "model": "nemotron", "price": {"input": 0.45, "output": 0.45},
             "profile": "llama-3.1-nemotron-51b-instruct"},
        ],
        "routing": {"default": "cheap", **routing},
        # patient: a fresh gateway's first classification on a busy shared machine can take seconds
        "resilience": {"classifier": {"timeout_s": 30}},
    }


def route(gateway, content: str) -> dict:
    resp = requests.post(f"{gateway.url}/v1/route", json={"messages": [{"role": "user", "content": content}]}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def chat(gateway, content: str):
    return requests.post(f"{gateway.url}/v1/chat/completions", timeout=30,
                         json={"model": "auto", "messages": [{"role": "user", "content": content}]})


@pytest.fixture(scope="module")
def quality_gateway(stubs, triton, tmp_path_factory):
    proc = GatewayProcess(learned_config(stubs, quality={"profile": "multi_model", "tolerance": 0.05}),
                          triton.grpc_url, tmp_path_factory.mktemp("quality")).start()
    yield proc
    proc.stop()


def test_prompt_kinds_go_to_different_backends_by_estimated_quality_and_price(quality_gateway, stubs):
    before = {name: len(s.requests) for name, s in stubs.items()}
    answered = {prompt: chat(quality_gateway, prompt) for prompt in (CODE, TRIVIA, WRITING)}
    assert all(r.status_code == 200 for r in answered.values())
    # code: qwen's estimate is best by a margin; trivia: gemma is within tolerance of the best and
    # cheapest; writing: only nemotron is within tolerance of its own best estimate
    assert {p: r.headers["x-semroute-model"] for p, r in answered.items()} == {CODE: "coder", TRIVIA: "cheap", WRITING: "strong"}
    assert {name: len(s.requests) - before[name] for name, s in stubs.items()} == {"cheap": 1, "coder": 1, "strong": 1}


def test_route_explains_the_estimates(quality_gateway):
    out = route(quality_gateway, TRIVIA)
    assert out["rule"] == "quality" and out["backend"] == "cheap"
    assert "cheapest within tolerance 0.05" in out["reason"]
    quality = out["details"]["quality"]
    assert quality["profile"] == "multi_model" and quality["tolerance"] == 0.05 and quality["method"].startswith("blend")
    by_backend = {c["backend"]: c for c in quality["candidates"]}
    assert set(by_backend) == {"cheap", "coder", "strong"}
    assert by_backend["cheap"]["price"] == pytest.approx(0.1) and 0 <= by_backend["cheap"]["estimate"] <= 1
    best = max(c["estimate"] for c in quality["candidates"])
    assert by_backend["cheap"]["estimate"] >= best - 0.05
    assert out["candidates"][0] == "cheap" and set(out["candidates"]) == {"cheap", "coder", "strong"}


def test_rules_keep_priority_over_quality(stubs, triton, tmp_path):
    config = learned_config(stubs, quality={"profile": "multi_model", "lambda": 0.2},
                            rules=[{"name": "trivia-to-strong", "when": {"keywords": ["novel"]}, "backends": ["strong"]}])
    proc = GatewayProcess(config, triton.grpc_url, tmp_path).start()
    try:
        assert route(proc, TRIVIA)["rule"] == "rule:trivia-to-strong"
        coded = route(proc, CODE)   # no rule: λ form, value = estimate − 0.2 × price
        assert coded["rule"] == "quality" and coded["backend"] == "coder" and "λ=0.2" in coded["reason"]
        values = {c["backend"]: c["value"] for c in coded["details"]["quality"]["candidates"]}
        assert max(values, key=values.get) == "coder"
    finally:
        proc.stop()


@pytest.mark.parametrize("usd_per_hour, later", [(1e6, "strong"), (1e-6, "cheap")])
def test_budget_paces_lambda_toward_the_spend_target(stubs, triton, tmp_path, usd_per_hour, later):
    """A 1 s spend window so the pacing shows within seconds: a budget far above the spend lets
    λ fall until the best estimate wins; one far below keeps λ up and the cheap backend."""
    config = learned_config(stubs, budget={"profile": "multi_model", "usd_per_hour": usd_per_hour, "window_s": 1.0})
    proc = GatewayProcess(config, triton.grpc_url, tmp_path).start()
    try:
        first = route(proc, WRITING)
        assert first["rule"] == "budget" and first["backend"] == "cheap"   # λ starts at 0.1 per mean candidate cost
        lambdas = [first["details"]["budget"]["lambda"]]
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            time.sleep(0.2)
            out = route(proc, WRITING)
            lambdas.append(out["details"]["budget"]["lambda"])
        assert out["backend"] == later
        assert (lambdas[-1] < lambdas[0] / 100) if later == "strong" else (lambdas[-1] > lambdas[0])
        assert out["details"]["budget"]["usd_per_hour_target"] == usd_per_hour
    finally:
        proc.stop()


def _write(tmp_path, config: dict):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_backend_profile_must_be_a_model_of_the_selectors_profile(stubs, tmp_path):
    config = learned_config(stubs, quality={"profile": "multi_model", "tolerance": 0.1})
    config["backends"][0]["profile"] = "gpt-99"
    with pytest.raises(ValueError, match="backends.cheap.profile: 'gpt-99' is not a model of profile 'multi_model'"):
        check_profiles(load_config(_write(tmp_path, config)))
    config = learned_config(stubs, quality={"profile": "no-such-profile", "tolerance": 0.1})
    with pytest.raises(ValueError, match="routing.quality.profile: no quality profile in"):
        check_profiles(load_config(_write(tmp_path, config)))


def test_quality_needs_exactly_one_of_tolerance_or_lambda(stubs, tmp_path):
    config = learned_config(stubs, quality={"profile": "multi_model", "tolerance": 0.1, "lambda": 0.2})
    with pytest.raises(ConfigError, match="exactly one of tolerance or lambda"):
        load_config(_write(tmp_path, config))


def test_readme_learned_selection_config_loads_and_names_real_profile_models(tmp_path):
    """The README's quality/budget example is a config that loads, and its backends' profile
    models are models of the shipped profile (each commented alternative too)."""
    from tests.conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Learned selection"):]
    block = section[section.index("```yaml\n") + 8:section.index("```", section.index("```yaml\n") + 8)]
    variants = [block]
    for key in ("lambda", "budget"):
        commented = next(line for line in block.splitlines() if line.strip().startswith(f"# {key}:")
                         or line.strip().startswith("# quality:") and f"{key}:" in line)
        chosen = commented.replace("# ", "", 1).split("  #")[0]   # uncommented, its own comment dropped
        variants.append("\n".join(chosen if line.strip().startswith("quality:") else line for line in block.splitlines()))
    for text in variants:
        path = tmp_path / "readme.yaml"
        path.write_text(text)
        check_profiles(load_config(path))
