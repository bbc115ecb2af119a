"""Feedback (POST /v1/feedback) through the real gateway and Triton: stored in SQLite, only for
requests this gateway routed for the same key, and folded into the quality profile so that bad
ratings of one backend on one kind of prompt move those prompts elsewhere, others not."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import requests

from control.selection.profile import Profile

from tests.gateway_proc import GatewayProcess
from tests.test_selection_gateway import CODE, TRIVIA, WRITING, learned_config

MORE_CODE = ["Write a Python function that reverses a linked list.",
             "Implement binary search in Python and explain its complexity.",
             "Write a Python function that counts the vowels in a string.",
             "Write a Python function that returns the n-th Fibonacci number.",
             "Write a Python function that removes duplicates from a list, keeping the order."]


def test_a_rating_corrects_its_model_near_its_prompt_only():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(200, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    profile = Profile("toy", ["a", "b"], rows, np.full((200, 2), 0.8, np.float32), k=20)
    near, far = rows[0] + 0.1 * rows[1], -rows[0]
    near /= np.linalg.norm(near)
    before = profile.estimate(near), profile.estimate(far)
    profile.add_feedback(rows[:1], ["a"], [0.0])
    assert profile.estimate(near)["a"] < before[0]["a"] - 0.3      # pulled toward the rating
    assert profile.estimate(near)["b"] == before[0]["b"]           # another model's estimate: untouched
    assert profile.estimate(far) == before[1]                      # far from the rated prompt: untouched


def chat(gateway, content: str, key: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = requests.post(f"{gateway.url}/v1/chat/completions", timeout=30, headers=headers,
                         json={"model": "auto", "messages": [{"role": "user", "content": content}]})
    assert resp.status_code == 200, resp.text
    return resp


def feedback(gateway, body: dict, key: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"{gateway.url}/v1/feedback", json=body, headers=headers, timeout=30)


@pytest.fixture
def quality_gateway(stubs, triton, tmp_path):
    proc = GatewayProcess(learned_config(stubs, quality={"profile": "multi_model", "tolerance": 0.05}),
                          triton.grpc_url, tmp_path).start()
    yield proc
    proc.stop()


def test_bad_ratings_move_that_kind_of_prompt_to_another_backend_and_no_other(quality_gateway):
    before = {p: chat(quality_gateway, p) for p in (CODE, TRIVIA, WRITING)}
    assert {p: r.headers["x-semroute-model"] for p, r in before.items()} == {CODE: "coder", TRIVIA: "cheap",
                                                                             WRITING: "strong"}
    by_coder = [before[CODE]] + [a for a in map(lambda p: chat(quality_gateway, p), MORE_CODE)
                                 if a.headers["x-semroute-model"] == "coder"]
    assert len(by_coder) >= 3
    for answer in by_coder:  # code prompts the coder answered badly
        rated = feedback(quality_gateway, {"request_id": answer.headers["x-request-id"], "thumbs": "down"})
        assert rated.status_code == 200, rated.text
        assert rated.json()["ratings"] == [{"request_id": answer.headers["x-request-id"], "backend": "coder", "score": 0.0}]
        assert rated.json()["learned"] == ["multi_model"]
    after = {p: chat(quality_gateway, p).headers["x-semroute-model"] for p in (CODE, TRIVIA, WRITING)}
    assert after[CODE] != "coder" and {TRIVIA: after[TRIVIA], WRITING: after[WRITING]} == {TRIVIA: "cheap",
                                                                                            WRITING: "strong"}


def test_feedback_is_for_routed_requests_only_and_stores_no_prompt(quality_gateway, tmp_path):
    answer = chat(quality_gateway, TRIVIA)
    rid = answer.headers["x-request-id"]
    unknown = feedback(quality_gateway, {"request_id": "never-routed-here", "score": 0.2})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "request_not_found"
    for bad in ({"request_id": rid}, {"request_id": rid, "score": 1.5}, {"request_id": rid, "score": 1, "thumbs": "up"},
                {"request_id": rid, "other_request_id": rid, "winner": rid}, {"request_id": rid, "thumbs": "sideways"}):
        refused = feedback(quality_gateway, bad)
        assert refused.status_code == 400 and "error" in refused.json(), (bad, refused.text)
    other = chat(quality_gateway, WRITING).headers["x-request-id"]
    pair = feedback(quality_gateway, {"request_id": rid, "other_request_id": other, "winner": other, "comment": "ok"})
    assert pair.status_code == 200, pair.text
    assert {r["request_id"]: r["score"] for r in pair.json()["ratings"]} == {rid: 0.0, other: 1.0}
    store = sqlite3.connect(next(tmp_path.glob("state-*/feedback.sqlite3")))
    assert store.execute("SELECT COUNT(*) FROM routed WHERE prompt IS NOT NULL").fetchone() == (0,)
    assert store.execute("SELECT COUNT(*) FROM ratings").fetchone() == (2,)


def test_a_key_rates_only_its_own_requests(stubs, triton, tmp_path, monkeypatch):
    monkeypatch.setenv("KEY_A", "sk-a")
    monkeypatch.setenv("KEY_B", "sk-b")
    config = learned_config(stubs, quality={"profile": "multi_model", "tolerance": 0.05})
    config["auth"] = {"mode": "on", "keys": [{"name": "a", "key_env": "KEY_A"}, {"name": "b", "key_env": "KEY_B"}]}
    proc = GatewayProcess(config, triton.grpc_url, tmp_path).start()
    try:
        rid = chat(proc, TRIVIA, key="sk-a").headers["x-request-id"]
        assert feedback(proc, {"request_id": rid, "score": 0.1}, key="sk-b").status_code == 404
        assert feedback(proc, {"request_id": rid, "score": 0.1}).status_code == 401
        assert feedback(proc, {"request_id": rid, "score": 0.1}, key="sk-a").status_code == 200
    finally:
        proc.stop()
