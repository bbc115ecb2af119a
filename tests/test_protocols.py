"""The translation layer (control/protocols/) on constructed payloads: each translated request
is what a chat backend expects, each translated answer and event validates against the
official SDKs' own types (anthropic, openai), and the SDKs' accumulators rebuild the answer."""
from __future__ import annotations

import json

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as AnthropicMessage, RawMessageStreamEvent
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter, ValidationError

from control.protocol import APIError
from control.protocols import anthropic, responses
from control.protocols.anthropic_stream import AnthropicStream
from control.protocols.chat_stream import UsageStripper, with_stream_usage
from control.protocols.completions import CompletionRequest, EmbeddingRequest
from control.protocols.responses_stream import ResponsesStream
from control.protocols.sse import SSEParser
from control.response_store import ResponseStore
from tests.chat_chunks import USAGE, pieces, text_stream, tool_stream

ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)
RESPONSES_EVENT = TypeAdapter(ResponseStreamEvent)


def translate(stream, data: bytes) -> list:
    out = b"".join(stream.feed(piece) for piece in pieces(data)) + stream.flush()
    return SSEParser().feed(out)


# ---- Anthropic Messages --------------------------------------------------------------------

TOOL_TURNS = {
    "model": "auto", "max_tokens": 64, "system": [{"type": "text", "text": "Be brief."}],
    "tools": [{"name": "get_weather", "description": "weather", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                          {"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                                     {"type": "text", "text": "And tomorrow?"}]},
    ]}


def test_anthropic_request_becomes_chat_with_tool_round_trip():
    body = anthropic.to_chat(anthropic.MessagesRequest.model_validate(TOOL_TURNS))
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "user", "content": "And tomorrow?"}]
    assert body["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                                               "parameters": {"type": "object"}}}]
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["max_tokens"] == 64 and "stream" not in body


@pytest.mark.parametrize("bad, param", [({"max_tokens": None}, "max_tokens"), ({"max_tokens": 0}, "max_tokens"),
                                        ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
                                        ({"temperature": 1.5}, "temperature"),
                                        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools")])
def test_anthropic_request_refuses_what_anthropic_refuses(bad, param):
    request = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], **bad}
    request = {k: v for k, v in request.items() if v is not None}
    with pytest.raises(ValidationError) as caught:
        anthropic.MessagesRequest.model_validate(request)
    assert caught.value.errors()[0]["loc"][0] == param


def test_chat_answer_with_tool_call_becomes_an_anthropic_message():
    answer = {"model": "up-model", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Checking.",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}}],
        "usage": USAGE}
    message = AnthropicMessage.model_validate(anthropic.from_chat(answer))
    assert message.stop_reason == "tool_use" and message.model == "up-model"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[1].input == {"city": "Paris"} and message.content[1].id == "call_1"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)


def accumulate_anthropic(events) -> AnthropicMessage:
    snapshot, buffers = None, {}
    for event in events:
        typed = ANTHROPIC_EVENT.validate_python(json.loads(event.data))  # the SDK's own types, strictly
        assert typed.type == event.name
        snapshot = accumulate_event(event=typed, current_snapshot=snapshot, json_bufs=buffers)
    return snapshot


def test_anthropic_stream_of_text_has_the_event_sequence_and_usage():
    stream = AnthropicStream()
    events = translate(stream, text_stream())
    assert [e.name for e in events] == ["message_start", "content_block_start", "content_block_delta",
                                        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    message = accumulate_anthropic(events)
    assert message.content[0].text == "Hello" and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)
    assert stream.done and stream.usage == USAGE


def test_anthropic_stream_of_tool_calls_rebuilds_their_inputs():
    message = accumulate_anthropic(translate(AnthropicStream(), tool_stream()))
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"city": "Paris"} and message.content[1].name == "get_weather"
    assert message.content[2].input == {"tz": "CET"} and message.content[2].id == "call_b"
    assert message.stop_reason == "tool_use"


def test_anthropic_stream_turns_a_mid_stream_error_into_an_error_event():
    data = text_stream().split(b"data: [DONE]")[0].rsplit(b"data:", 2)[0]
    data += b'data: {"error": {"message": "backend broke", "type": "upstream_error", "code": "upstream_reset"}}\n\n'
    events = translate(AnthropicStream(), data)
    assert events[-1].name == "error"
    assert json.loads(events[-1].data) == {"type": "error", "error": {"type": "api_error", "message": "backend broke"}}


@pytest.mark.parametrize("status, kind", [(400, "invalid_request_error"), (401, "authentication_error"),
                                          (403, "permission_error"), (404, "not_found_error"), (429, "rate_limit_error"),
                                          (502, "api_error"), (503, "overloaded_error")])
def test_anthropic_error_shape(status, kind):
    body = anthropic.error_from_openai(status, APIError(status, "why").body())
    assert body == {"type": "error", "error": {"type": kind, "message": "why"}}


# ---- OpenAI Responses ----------------------------------------------------------------------

def test_responses_request_becomes_chat_after_its_history():
    request = responses.ResponsesRequest.model_validate({
        "model": "auto", "instructions": "Be brief.", "max_output_tokens": 50,
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        "input": [{"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
                  {"role": "user", "content": [{"type": "input_text", "text": "And "}, {"type": "input_text", "text": "now?"}]}]})
    history = [{"role": "user", "content": "Weather?"}]
    body = responses.to_chat(request, history)
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"}, {"role": "user", "content": "And now?"}]
    assert body["max_tokens"] == 50 and body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}


@pytest.mark.parametrize("bad, param", [({"tools": [{"type": "web_search"}]}, "tools.0.type"),
                                        ({"input": [{"type": "item_reference", "id": "x"}]}, "input.0.type"),
                                        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
                                         "input.0.content.0")])
def test_responses_request_refuses_what_has_no_chat_counterpart(bad, param):
    request = responses.ResponsesRequest.model_validate({"model": "auto", "input": "hi", **bad})
    with pytest.raises(APIError) as caught:
        responses.to_chat(request)
    assert caught.value.status == 400 and caught.value.param == param


def test_responses_request_needs_input():
    with pytest.raises(ValidationError):
        responses.ResponsesRequest.model_validate({"model": "auto", "input": ""})


def test_chat_answer_becomes_a_response_and_the_next_turns_history():
    request = responses.ResponsesRequest.model_validate({"model": "auto", "input": "Weather?"})
    answer = {"model": "up-model", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Checking.",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}}],
        "usage": USAGE}
    response = Response.model_validate(responses.from_chat(request, answer, "resp_1"))
    assert response.output_text == "Checking." and response.output[1].call_id == "call_1"
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (11, 7, 18)
    assert responses.assistant_message(responses.from_chat(request, answer, "resp_1")["output"]) == {
        "role": "assistant", "content": "Checking.",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}


def responses_events(data: bytes, request: dict | None = None) -> tuple[list, ResponsesStream]:
    stream = ResponsesStream(responses.ResponsesRequest.model_validate(request or {"model": "auto", "input": "hi"}))
    events = translate(stream, data)
    for i, event in enumerate(events):
        typed = RESPONSES_EVENT.validate_python(json.loads(event.data))  # the SDK's own types, strictly
        assert typed.type == event.name and typed.sequence_number == i
    return events, stream


def test_responses_stream_of_text_has_typed_events_and_usage():
    events, stream = responses_events(text_stream())
    assert [e.name for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    final = Response.model_validate(json.loads(events[-1].data)["response"])
    assert final.output_text == "Hello" and final.usage.total_tokens == 18 and final.id == stream.id
    assert stream.done and stream.usage == USAGE and stream.final["output"][0]["content"][0]["text"] == "Hello"


def test_responses_stream_of_tool_calls():
    events, stream = responses_events(tool_stream())
    final = Response.model_validate(json.loads(events[-1].data)["response"])
    assert [item.type for item in final.output] == ["message", "function_call", "function_call"]
    assert final.output[1].arguments == '{"city": "Paris"}' and final.output[2].call_id == "call_b"
    deltas = [json.loads(e.data)["delta"] for e in events if e.name == "response.function_call_arguments.delta"]
    assert deltas == ['{"city": ', '"Paris"}', '{"tz": "CET"}']
    assert responses.assistant_message(stream.final["output"])["tool_calls"][0]["function"]["name"] == "get_weather"


def test_responses_stream_cut_at_max_output_tokens_is_incomplete():
    data = text_stream().replace(b'"finish_reason": "stop"', b'"finish_reason": "length"')
    events, _ = responses_events(data)
    assert events[-1].name == "response.incomplete"
    assert json.loads(events[-1].data)["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


# ---- usage on every stream -----------------------------------------------------------------

def test_usage_is_asked_for_and_stripped_when_the_client_did_not_ask():
    body, asked = with_stream_usage({"model": "m", "stream": True, "stream_options": {"x": 1}})
    assert body["stream_options"] == {"x": 1, "include_usage": True} and not asked
    assert with_stream_usage({"model": "m", "stream": True, "stream_options": {"include_usage": True}})[1]
    stripper = UsageStripper()
    out = b"".join(stripper.feed(p) for p in pieces(text_stream(), 5)) + stripper.flush()
    assert [e.data if e.data == "[DONE]" else json.loads(e.data) for e in SSEParser().feed(out)] == \
        [e.data if e.data == "[DONE]" else json.loads(e.data) for e in SSEParser().feed(text_stream(usage=False))]
    assert b'"usage"' not in out and out.endswith(b"data: [DONE]\n\n") and stripper.usage == USAGE


# ---- completions and embeddings ------------------------------------------------------------

def test_completion_and_embedding_requests_route_on_their_text():
    assert CompletionRequest.model_validate({"model": "auto", "prompt": ["a", "b"]}).routing_chat().routing_text() == "a\nb"
    assert EmbeddingRequest.model_validate({"model": "auto", "input": [1, 2, 3]}).text() == ""
    for bad in ({"input": ""}, {"input": []}, {"input": "x", "dimensions": 0}, {"input": "x", "encoding_format": "int8"}):
        with pytest.raises(ValidationError):
            EmbeddingRequest.model_validate({"model": "auto", **bad})
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "auto", "prompt": "x", "stream": "yes"})


# ---- previous_response_id store ------------------------------------------------------------

def test_response_store_keeps_a_conversation_per_key_until_its_ttl(tmp_path):
    store = ResponseStore(tmp_path / "r.sqlite3", ttl_s=60)
    turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    store.put("resp_1", "team-a", turn)
    assert store.get("resp_1", "team-a") == turn
    assert store.get("resp_1", "team-b") is None and store.get("resp_2", "team-a") is None
    assert ResponseStore(tmp_path / "r.sqlite3").get("resp_1", "team-a") == turn  # another worker sees it
    store.ttl_s = 0.0
    assert store.get("resp_1", "team-a") is None


# ---- which backend serves which API --------------------------------------------------------

def backends_config(*backends: dict):
    from control.config import Config
    return Config.model_validate({"backends": [{"url": "http://127.0.0.1:1/v1", "model": "m", **b} for b in backends],
                                  "routing": {"default": backends[0]["name"]}})


def test_protocol_and_serves_decide_which_api_a_backend_answers():
    from control.protocols.endpoints import upstream_path, why_not_served
    config = backends_config({"name": "chat"}, {"name": "emb", "serves": ["embeddings"]},
                             {"name": "claude", "protocol": "anthropic"}, {"name": "resp", "protocol": "responses"})
    served = {api: [b.name for b in config.backends if why_not_served(b, api) is None]
              for api in ("chat", "messages", "responses", "completions", "embeddings")}
    assert served == {"chat": ["chat"], "messages": ["chat", "claude"], "responses": ["chat", "resp"],
                      "completions": ["chat"], "embeddings": ["emb"]}
    assert [upstream_path(b, "messages") for b in config.backends[:3]] == ["chat/completions", "chat/completions",
                                                                            "messages"]
    assert config.backends[2].serves == ["chat"]


def test_a_native_backend_cannot_list_openai_endpoints():
    with pytest.raises(ValidationError, match="protocol anthropic serves chat only"):
        backends_config({"name": "claude", "protocol": "anthropic", "serves": ["chat", "embeddings"]})


# ---- dialects: what each backend is sent, what the client gets back -----------------------

def test_messages_dialect_translates_for_chat_backends_and_passes_through_to_anthropic_ones():
    from control.protocols.dialects import PARSERS, dialect_for
    config = backends_config({"name": "chat"}, {"name": "claude", "protocol": "anthropic"})
    body = {"model": "auto", "max_tokens": 9, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    dialect = dialect_for("messages", body, PARSERS["messages"].model_validate(body))
    chat, claude = config.backends
    assert dialect.request_for(claude) == ("messages", body)
    path, sent = dialect.request_for(chat)
    assert path == "chat/completions" and sent["stream_options"] == {"include_usage": True}
    assert dialect.routing.routing_text() == "hi"
    translator = dialect.transcoder(chat)
    translated = b"".join(translator.feed(p) for p in pieces(text_stream()))
    reader = dialect.transcoder(claude)  # what an Anthropic backend's stream is read for: usage, the end
    assert reader.feed(translated) == translated
    assert reader.done and reader.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def test_responses_dialect_gives_a_native_backend_the_conversation_and_stores_the_turn():
    from control.protocols.dialects import PARSERS, dialect_for
    config = backends_config({"name": "chat"}, {"name": "resp", "protocol": "responses"})
    history = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "18C"}, {"role": "assistant", "content": "18C."}]
    body = {"model": "auto", "input": "And now?", "previous_response_id": "resp_1"}
    dialect = dialect_for("responses", body, PARSERS["responses"].model_validate(body), history)
    _, native = dialect.request_for(config.backends[1])
    assert "previous_response_id" not in native and [i["type"] for i in native["input"]] == [
        "message", "function_call", "function_call_output", "message", "message"]
    assert responses.input_items(native["input"]) == history + [{"role": "user", "content": "And now?"}]
    answer = json.dumps({"model": "m", "choices": [{"index": 0, "message": {"content": "Sunny."}}], "usage": USAGE})
    response = json.loads(dialect.answer(config.backends[0], answer.encode()))
    assert response["id"] == dialect.id and response["output"][0]["content"][0]["text"] == "Sunny."
    assert dialect.turn(response) == (dialect.id, history + [{"role": "user", "content": "And now?"},
                                                             {"role": "assistant", "content": "Sunny."}])
    unstored = {**body, "store": False}
    assert dialect_for("responses", unstored, PARSERS["responses"].model_validate(unstored)).turn(response) is None
