"""What the stub LLM speaks besides plain chat: tool calls in chat completions, legacy
completions, embeddings, and Anthropic Messages and OpenAI Responses natively (the
`protocol: anthropic | responses` pass-through path). Written by hand from the APIs' docs,
independent of the gateway's translation layer, so tests of that layer compare two sources.

Tool calls: a request with tools whose last turn is the user's (and tool_choice is not
"none") gets a call of its named or first tool with `{"query": <the user's text>}`; a request
whose last turn is a tool result gets the text `tool said: <result>`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import struct
import time

from aiohttp import web

EMBEDDING_DIM = 8


def sse(data: dict | str, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


async def start_stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    return resp


def usage_of(prompt_tokens: int = 5, completion_tokens: int = 4) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


# ---- chat completions: tool calls --------------------------------------------------------------

def chat_tool_call(body: dict) -> dict | None:
    """The tool call this chat request gets, or None for a text answer."""
    tools, choice, messages = body.get("tools") or [], body.get("tool_choice"), body.get("messages") or []
    if not tools or choice == "none" or not messages or messages[-1].get("role") != "user":
        return None
    name = choice["function"]["name"] if isinstance(choice, dict) and "function" in choice else tools[0]["function"]["name"]
    content = messages[-1].get("content")
    text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content or [])
    return {"id": "call_stub_1", "type": "function", "function": {"name": name, "arguments": json.dumps({"query": text})}}


def tool_result_answer(body: dict) -> str | None:
    messages = body.get("messages") or []
    if messages and messages[-1].get("role") == "tool":
        return f"tool said: {messages[-1].get('content')}"
    return None


def chat_tool_completion(model: str, call: dict) -> dict:
    return {"id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
            "usage": usage_of()}


async def stream_chat_tool_call(request: web.Request, body: dict, call: dict) -> web.StreamResponse:
    resp = await start_stream(request)
    base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()), "model": body["model"]}
    arguments = call["function"]["arguments"]
    deltas = [{"role": "assistant", "tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                    "function": {"name": call["function"]["name"], "arguments": ""}}]},
              {"tool_calls": [{"index": 0, "function": {"arguments": arguments[:5]}}]},
              {"tool_calls": [{"index": 0, "function": {"arguments": arguments[5:]}}]}]
    for delta in deltas:
        await resp.write(sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
    await resp.write(sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}))
    if (body.get("stream_options") or {}).get("include_usage"):
        await resp.write(sse({**base, "choices": [], "usage": usage_of()}))
    await resp.write(sse("[DONE]"))
    await resp.write_eof()
    return resp


# ---- completions and embeddings ------------------------------------------------------------

async def completions(request: web.Request, name: str, body: dict) -> web.StreamResponse:
    base = {"id": "cmpl-stub", "object": "text_completion", "created": int(time.time()), "model": body["model"]}
    if not body.get("stream"):
        return web.json_response({**base, "choices": [{"index": 0, "text": f"completion from {name}", "logprobs": None,
                                                       "finish_reason": "stop"}], "usage": usage_of()})
    resp = await start_stream(request)
    for piece in ("completion", " from", f" {name}"):
        await resp.write(sse({**base, "choices": [{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}]}))
    if (body.get("stream_options") or {}).get("include_usage"):
        await resp.write(sse({**base, "choices": [], "usage": usage_of()}))
    await resp.write(sse("[DONE]"))
    await resp.write_eof()
    return resp


def embedding_of(text: str) -> list[float]:
    """A deterministic vector per text (the same text, the same vector)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255.0 for b in digest[:EMBEDDING_DIM]]


async def embeddings(request: web.Request, name: str, body: dict) -> web.Response:
    inputs = body["input"] if isinstance(body["input"], list) and not isinstance(body["input"][0], int) else [body["input"]]
    data = []
    for i, item in enumerate(inputs):
        vector = embedding_of(item if isinstance(item, str) else json.dumps(item))
        encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() \
            if body.get("encoding_format") == "base64" else vector
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    return web.json_response({"object": "list", "data": data, "model": body["model"],
                              "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)}})


# ---- Anthropic Messages, natively ----------------------------------------------------------

def anthropic_tool_use(body: dict) -> dict | None:
    tools, messages = body.get("tools") or [], body["messages"]
    last = messages[-1]
    blocks = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
    if not tools or (body.get("tool_choice") or {}).get("type") == "none" \
            or any(b.get("type") == "tool_result" for b in blocks):
        return None
    text = " ".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    return {"type": "tool_use", "id": "toolu_stub_1", "name": tools[0]["name"], "input": {"query": text}}


def anthropic_text(name: str, body: dict) -> str:
    last = body["messages"][-1]["content"]
    results = [b for b in last if b.get("type") == "tool_result"] if isinstance(last, list) else []
    return f"tool said: {results[0]['content']}" if results else f"native answer from {name}"


async def messages(request: web.Request, name: str, body: dict) -> web.StreamResponse:
    tool = anthropic_tool_use(body)
    content = [tool] if tool else [{"type": "text", "text": anthropic_text(name, body)}]
    message = {"id": "msg_stub", "type": "message", "role": "assistant", "model": body["model"], "content": content,
               "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None,
               "usage": {"input_tokens": 6, "output_tokens": 3}}
    if not body.get("stream"):
        return web.json_response(message)
    resp = await start_stream(request)
    start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 6, "output_tokens": 0}}
    await resp.write(sse({"type": "message_start", "message": start}, "message_start"))
    block = {**tool, "input": {}} if tool else {"type": "text", "text": ""}
    delta = {"type": "input_json_delta", "partial_json": json.dumps(tool["input"])} if tool \
        else {"type": "text_delta", "text": content[0]["text"]}
    for event in ({"type": "content_block_start", "index": 0, "content_block": block},
                  {"type": "content_block_delta", "index": 0, "delta": delta},
                  {"type": "content_block_stop", "index": 0},
                  {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                   "usage": {"output_tokens": 3}},
                  {"type": "message_stop"}):
        await resp.write(sse(event, event["type"]))
    await resp.write_eof()
    return resp


# ---- OpenAI Responses, natively ------------------------------------------------------------

def response_of(name: str, body: dict, status: str = "completed") -> dict:
    text = f"native response from {name}"
    return {"id": f"resp_stub_{int(time.time() * 1e6)}", "object": "response", "created_at": int(time.time()),
            "model": body["model"], "status": status, "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "tools": [], "tool_choice": "auto", "parallel_tool_calls": True,
            "output": [] if status == "in_progress" else [
                {"type": "message", "id": "msg_stub", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}],
            "usage": None if status == "in_progress" else {
                "input_tokens": 6, "output_tokens": 3, "total_tokens": 9,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0}}}


async def responses(request: web.Request, name: str, body: dict) -> web.StreamResponse:
    final = response_of(name, body)
    if not body.get("stream"):
        return web.json_response(final)
    resp = await start_stream(request)
    item, text = final["output"][0], final["output"][0]["content"][0]["text"]
    where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    events = [("response.created", {"response": {**response_of(name, body, "in_progress"), "id": final["id"]}}),
              ("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}}),
              ("response.content_part.added", {**where, "part": {"type": "output_text", "text": "", "annotations": []}}),
              ("response.output_text.delta", {**where, "delta": text, "logprobs": []}),
              ("response.output_text.done", {**where, "text": text, "logprobs": []}),
              ("response.content_part.done", {**where, "part": item["content"][0]}),
              ("response.output_item.done", {"output_index": 0, "item": item}),
              ("response.completed", {"response": final})]
    for number, (kind, fields) in enumerate(events):
        await resp.write(sse({"type": kind, "sequence_number": number, **fields}, kind))
    await resp.write_eof()
    return resp
