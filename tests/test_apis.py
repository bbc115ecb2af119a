"""Every API a client speaks, through the real gateway with the official SDKs: Anthropic
Messages (`anthropic`), OpenAI Responses, completions and embeddings (`openai`), plain and
streamed, with `model: "auto"` and with a named backend, translated for chat backends and
passed through to backends speaking the API natively (the stub speaks them all)."""
from __future__ import annotations

import json

import anthropic
import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway_proc import GatewayProcess
from tests.stub_upstream import STREAM_PIECES, Fault, stub_fleet

WEATHER = {"name": "get_weather", "description": "the weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
FUNCTION = {"type": "function", "name": "get_weather", "description": "the weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture(scope="module")
def stubs():
    with stub_fleet(["cheap", "claude", "resp", "emb"]) as servers:
        yield servers


@pytest.fixture(scope="module")
def gateway(stubs, triton, tmp_path_factory):
    backends = [{"name": "cheap", "url": stubs["cheap"].url, "model": "cheap-id", "price": {"input": 1, "output": 2}},
                {"name": "claude", "url": stubs["claude"].url, "model": "claude-id", "protocol": "anthropic"},
                {"name": "resp", "url": stubs["resp"].url, "model": "resp-id", "protocol": "responses"},
                {"name": "emb", "url": stubs["emb"].url, "model": "emb-id", "serves": ["embeddings"]}]
    state = tmp_path_factory.mktemp("state")
    proc = GatewayProcess({"backends": backends, "routing": {"default": "cheap"}}, triton.grpc_url,
                          tmp_path_factory.mktemp("gw-apis"), env={"SEMROUTE_STATE_DIR": str(state)}).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def claude(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def oai(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def last(stub) -> tuple[str, dict]:
    path, _, body = stub.requests[-1]
    return path, body


def counter(gateway, name: str, **labels) -> float:
    text = requests.get(f"{gateway.url}/metrics", timeout=5).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


# ---- Anthropic Messages ----------------------------------------------------------------------

def test_messages_auto_is_translated_for_a_chat_backend(claude, stubs):
    raw = claude.messages.with_raw_response.create(model="auto", max_tokens=32, system="Be brief.",
                                                   messages=[{"role": "user", "content": "Say hello."}])
    message = raw.parse()
    assert raw.headers["x-semroute-model"] == "cheap"
    assert message.content[0].text == "answer from cheap" and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 4)
    path, sent = last(stubs["cheap"])
    assert path == "/v1/chat/completions" and sent["model"] == "cheap-id" and sent["max_tokens"] == 32
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]


def test_messages_stream_is_anthropic_events_with_usage_counted(claude, gateway):
    before = counter(gateway, "semroute_tokens_total", backend="cheap", direction="output")
    with claude.messages.stream(model="auto", max_tokens=32, messages=[{"role": "user", "content": "Say hello."}]) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert text == "".join(STREAM_PIECES) and message.usage.output_tokens == 4
    assert counter(gateway, "semroute_tokens_total", backend="cheap", direction="output") == before + 4


@pytest.mark.parametrize("stream", [False, True])
def test_messages_tool_round_trip_through_the_translation(claude, stubs, stream):
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with claude.messages.stream(model="auto", max_tokens=64, tools=[WEATHER], messages=ask) as s:
            first = s.get_final_message()
    else:
        first = claude.messages.create(model="auto", max_tokens=64, tools=[WEATHER], messages=ask)
    call = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and call.name == "get_weather" and call.input == {"query": "Weather in Paris?"}
    follow = ask + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}]}]
    second = claude.messages.create(model="auto", max_tokens=64, tools=[WEATHER], messages=follow)
    assert second.content[0].text == "tool said: 18C"
    sent = last(stubs["cheap"])[1]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call.id and sent[-1] == {"role": "tool", "tool_call_id": call.id,
                                                                        "content": "18C"}


@pytest.mark.parametrize("stream", [False, True])
def test_messages_to_an_anthropic_backend_pass_through(claude, stubs, stream):
    request = {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        with claude.messages.stream(**request) as s:
            message = s.get_final_message()
    else:
        message = claude.messages.create(**request)
    assert message.content[0].text == "native answer from claude"
    path, sent = last(stubs["claude"])
    assert path == "/v1/messages" and sent == {**request, "model": "claude-id", **({"stream": True} if stream else {})}


def test_messages_errors_are_anthropic_shaped(claude, gateway):
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="auto", max_tokens=0, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    resp = requests.post(f"{gateway.url}/v1/messages", data=b"{", timeout=5, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["type"] == "error"
    with pytest.raises(anthropic.BadRequestError, match="does not serve"):  # embeddings only
        claude.messages.create(model="emb", max_tokens=5, messages=[{"role": "user", "content": "hi"}])


# ---- OpenAI Responses ------------------------------------------------------------------------

def test_responses_auto_plain_and_a_two_turn_chain(oai, stubs):
    first = oai.responses.create(model="auto", instructions="Be brief.", input="My name is Ada.")
    assert first.output_text == "answer from cheap" and first.usage.total_tokens == 9
    second = oai.responses.create(model="auto", input="What is my name?", previous_response_id=first.id)
    assert second.output_text == "answer from cheap" and second.previous_response_id == first.id
    assert last(stubs["cheap"])[1]["messages"] == [  # instructions are not carried over, the turns are
        {"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "answer from cheap"},
        {"role": "user", "content": "What is my name?"}]


def test_responses_stream_has_typed_events(oai, gateway):
    before = counter(gateway, "semroute_tokens_total", backend="cheap", direction="input")
    events = list(oai.responses.create(model="auto", input="Say hello.", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "".join(STREAM_PIECES)
    assert events[-1].response.usage.output_tokens == 4
    assert counter(gateway, "semroute_tokens_total", backend="cheap", direction="input") == before + 5
    chained = oai.responses.create(model="auto", input="Again?", previous_response_id=events[-1].response.id)
    assert chained.output_text == "answer from cheap"


def test_responses_sdk_stream_helper_and_tool_round_trip(oai, stubs):
    with oai.responses.stream(model="auto", input="Weather in Paris?", tools=[FUNCTION]) as stream:
        first = stream.get_final_response()
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and call.arguments == '{"query": "Weather in Paris?"}'
    second = oai.responses.create(model="auto", previous_response_id=first.id, tools=[FUNCTION],
                                  input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C"}])
    assert second.output_text == "tool said: 18C"


def test_responses_store_false_and_unknown_ids(oai):
    unstored = oai.responses.create(model="auto", input="hi", store=False)
    with pytest.raises(openai.NotFoundError) as caught:
        oai.responses.create(model="auto", input="again", previous_response_id=unstored.id)
    assert caught.value.body["code"] == "previous_response_not_found"


@pytest.mark.parametrize("stream", [False, True])
def test_responses_to_a_responses_backend_pass_through_with_our_chain(oai, stubs, stream):
    first = oai.responses.create(model="auto", input="My name is Ada.")
    if stream:
        events = list(oai.responses.create(model="resp", input="Name?", previous_response_id=first.id, stream=True))
        answer = events[-1].response
    else:
        answer = oai.responses.create(model="resp", input="Name?", previous_response_id=first.id)
    assert answer.output_text == "native response from resp"
    path, sent = last(stubs["resp"])
    assert path == "/v1/responses" and sent["model"] == "resp-id" and "previous_response_id" not in sent
    assert [i["content"][0]["text"] for i in sent["input"]] == ["My name is Ada.", "answer from cheap", "Name?"]
    follow = oai.responses.create(model="auto", input="And?", previous_response_id=answer.id)  # its id is ours to chain
    assert last(stubs["cheap"])[1]["messages"][-2] == {"role": "assistant", "content": "native response from resp"}
    assert follow.output_text == "answer from cheap"


# ---- completions, embeddings, models ----------------------------------------------------------

def test_completions_plain_and_streamed(oai, stubs, gateway):
    assert oai.completions.create(model="auto", prompt="Once upon").choices[0].text == "completion from cheap"
    assert last(stubs["cheap"]) [0] == "/v1/completions"
    before = counter(gateway, "semroute_tokens_total", backend="cheap", direction="output")
    chunks = list(oai.completions.create(model="auto", prompt="Once upon", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "completion from cheap"
    assert all(c.usage is None for c in chunks)  # not asked for: asked upstream, stripped here, counted
    assert counter(gateway, "semroute_tokens_total", backend="cheap", direction="output") == before + 4


def test_embeddings_auto_picks_among_the_backends_serving_them(oai, stubs):
    raw = oai.embeddings.with_raw_response.create(model="auto", input=["a", "b"])
    assert raw.headers["x-semroute-model"] == "emb" and len(raw.parse().data) == 2
    assert last(stubs["emb"]) == ("/v1/embeddings", {"model": "emb-id", "input": ["a", "b"], "encoding_format": "base64"})
    with pytest.raises(openai.BadRequestError, match="does not serve embeddings"):
        oai.embeddings.create(model="cheap", input="a")


def test_models_by_id(oai):
    assert oai.models.retrieve("auto").id == "auto"
    assert oai.models.retrieve("claude").id == "claude"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("nope")


def test_chat_stream_usage_is_counted_without_the_client_asking(oai, gateway, stubs):
    before = counter(gateway, "semroute_tokens_total", backend="cheap", direction="output")
    chunks = list(oai.chat.completions.create(model="auto", stream=True, messages=[{"role": "user", "content": "hi"}]))
    assert all(c.usage is None for c in chunks) and last(stubs["cheap"])[1]["stream_options"] == {"include_usage": True}
    assert counter(gateway, "semroute_tokens_total", backend="cheap", direction="output") == before + 4
    asked = list(oai.chat.completions.create(model="auto", stream=True, stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "hi"}]))
    assert asked[-1].usage.completion_tokens == 4  # asked for: kept


def test_requests_are_counted_per_api(oai, claude, gateway):
    before = {api: counter(gateway, "semroute_requests_total", api=api) for api in ("messages", "embeddings")}
    claude.messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    oai.embeddings.create(model="auto", input="a")
    assert {api: counter(gateway, "semroute_requests_total", api=api) - before[api] for api in before} == \
        {"messages": 1, "embeddings": 1}


# ---- the same auth and cache for every API ---------------------------------------------------

KEYS = {"team-a": "sk-apis-team-a-0123", "team-b": "sk-apis-team-b-4567"}
UPSTREAM_KEY = "sk-ant-upstream-secret-0123456789"


@pytest.fixture(scope="module")
def secured(stubs, triton, tmp_path_factory):
    import hashlib
    backends = [{"name": "cheap", "url": stubs["cheap"].url, "model": "cheap-id"},
                {"name": "claude", "url": stubs["claude"].url, "model": "claude-id", "protocol": "anthropic",
                 "api_key_env": "SEMROUTE_TEST_ANTHROPIC_KEY"},
                {"name": "emb", "url": stubs["emb"].url, "model": "emb-id", "serves": ["embeddings"]}]
    keys = [{"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest()} for name, key in KEYS.items()]
    config = {"backends": backends, "routing": {"default": "cheap"}, "auth": {"mode": "on", "keys": keys},
              "cache": {"enabled": True}}
    env = {"SEMROUTE_STATE_DIR": str(tmp_path_factory.mktemp("state-secured")), "SEMROUTE_TEST_ANTHROPIC_KEY": UPSTREAM_KEY}
    proc = GatewayProcess(config, triton.grpc_url, tmp_path_factory.mktemp("gw-apis-secured"), env=env).start()
    yield proc
    proc.stop()


def test_anthropic_sdk_authenticates_with_x_api_key(secured, stubs):
    good = anthropic.Anthropic(base_url=secured.url, api_key=KEYS["team-a"], max_retries=0)
    message = good.messages.create(model="claude", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "native answer from claude"
    headers = stubs["claude"].requests[-1][1]  # the backend gets its own key, as Anthropic's API wants it
    assert headers["x-api-key"] == UPSTREAM_KEY and headers["anthropic-version"] and "Authorization" not in headers
    bad = anthropic.Anthropic(base_url=secured.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_a_stored_response_belongs_to_its_key(secured):
    team_a = openai.OpenAI(base_url=f"{secured.url}/v1", api_key=KEYS["team-a"], max_retries=0)
    team_b = openai.OpenAI(base_url=f"{secured.url}/v1", api_key=KEYS["team-b"], max_retries=0)
    first = team_a.responses.create(model="auto", input="My name is Ada.")
    assert team_a.responses.create(model="auto", input="Name?", previous_response_id=first.id).output_text
    with pytest.raises(openai.NotFoundError):
        team_b.responses.create(model="auto", input="Name?", previous_response_id=first.id)


def test_messages_are_cached_and_embeddings_never(secured, stubs):
    client = anthropic.Anthropic(base_url=secured.url, api_key=KEYS["team-a"], max_retries=0)
    ask = {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": "Name a prime number."}]}
    results = [client.messages.with_raw_response.create(**ask).headers["x-semroute-cache"] for _ in range(2)]
    assert results == ["miss", "exact"]
    again = client.messages.create(**ask)
    assert again.content[0].text == "answer from cheap" and again.type == "message"  # the client's format, replayed
    oai = openai.OpenAI(base_url=f"{secured.url}/v1", api_key=KEYS["team-a"], max_retries=0)
    before = len(stubs["emb"].requests)
    for _ in range(2):
        assert "x-semroute-cache" not in oai.embeddings.with_raw_response.create(model="auto", input="Ada").headers
    assert len(stubs["emb"].requests) == before + 2


@pytest.mark.parametrize("path, body", [("/v1/messages", {"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}),
                                        ("/v1/responses", {"input": "hi"})])
def test_a_stream_failing_midway_ends_with_the_apis_own_error_event(gateway, stubs, path, body):
    stubs["cheap"].inject(Fault("reset", after=2))
    with requests.post(f"{gateway.url}{path}", json={"model": "cheap", "stream": True, **body}, stream=True,
                       timeout=30) as resp:
        events = [line for line in resp.iter_lines() if line]
    assert resp.status_code == 200 and events[-2] == b"event: error"  # never a silent cut
    error = json.loads(events[-1][len(b"data: "):])
    if path == "/v1/messages":
        assert error["type"] == "error" and error["error"]["type"] == "api_error"
    else:
        assert error["type"] == "error" and error["code"] == "upstream_reset"
