"""OpenAI Responses (`POST /v1/responses`): request types and the translation to and from chat
completions. Errors are OpenAI's shape (`control.protocol.APIError`).

A conversation continued with `previous_response_id` arrives here as `history`: the chat
messages of the earlier turns (the caller keeps them, see `control/response_store.py`).
Built-in tools (web search, file search, computer use ...) and input files have no chat
counterpart and are refused with a 400 naming the field.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from control.protocol import APIError


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class FunctionTool(_Open):
    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = None


class ResponsesRequest(_Open):
    model: str = Field(min_length=1)
    input: str | list[dict] = Field(min_length=1)
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = Field(True, strict=True)
    stream: bool = Field(False, strict=True)
    max_output_tokens: int | None = Field(None, ge=1, strict=True)
    temperature: float | None = Field(None, ge=0, le=2, strict=True)
    top_p: float | None = Field(None, ge=0, le=1, strict=True)
    tools: list[FunctionTool] | None = None
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None
    text: dict | None = None
    reasoning: dict | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None

    def input_messages(self) -> list[dict]:
        """This turn's input as chat messages (no instructions, no history)."""
        if isinstance(self.input, str):
            return [{"role": "user", "content": self.input}]
        return input_items(self.input)


def to_chat(request: ResponsesRequest, history: list[dict] = ()) -> dict[str, Any]:
    """The chat completions body: instructions (never carried over from earlier turns, as
    OpenAI has it), the earlier turns, this turn's input."""
    system = [{"role": "system", "content": request.instructions}] if request.instructions else []
    body: dict[str, Any] = {"model": request.model, "messages": system + list(history) + request.input_messages()}
    for ours, theirs in (("max_output_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                         ("parallel_tool_calls", "parallel_tool_calls"), ("user", "user")):
        if getattr(request, ours) is not None:
            body[theirs] = getattr(request, ours)
    if request.tools:
        body["tools"] = [chat_tool(t, i) for i, t in enumerate(request.tools)]
    if request.tool_choice is not None:
        body["tool_choice"] = chat_tool_choice(request.tool_choice)
    body.update(response_format(request.text))
    if isinstance(request.reasoning, dict) and request.reasoning.get("effort"):
        body["reasoning_effort"] = request.reasoning["effort"]
    if request.stream:
        body["stream"], body["stream_options"] = True, {"include_usage": True}
    return body


def input_items(items: list[dict]) -> list[dict]:
    """Responses input items as chat messages: consecutive function calls become one assistant
    message's tool_calls, their outputs `tool` messages."""
    messages: list[dict] = []
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "message" or (kind is None and "role" in item):
            messages.append(message_item(item, i))
        elif kind == "function_call":
            call = {"id": item.get("call_id") or item.get("id"), "type": "function",
                    "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "")}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output", "")
            text = output if isinstance(output, str) else "\n".join(p.get("text", "") for p in output if isinstance(p, dict))
            messages.append({"role": "tool", "tool_call_id": item.get("call_id", ""), "content": text})
        elif kind != "reasoning":  # a chat backend keeps no reasoning between turns
            raise APIError(400, f"input item of type '{kind}' is not supported here", param=f"input.{i}.type",
                           code="unsupported_input")
    return messages


def message_item(item: dict, index: int) -> dict:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise APIError(400, f"input message role must be user, assistant, system or developer, not {role!r}",
                       param=f"input.{index}.role", code="invalid_request")
    content = item.get("content", "")
    if isinstance(content, str):
        return {"role": role, "content": content}
    parts = [chat_part(part, f"input.{index}.content.{j}") for j, part in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def chat_part(part: dict, param: str) -> dict:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "refusal"):
        return {"type": "text", "text": part.get("text") or part.get("refusal") or ""}
    if kind == "input_image" and part.get("image_url"):
        image = {"url": part["image_url"], **({"detail": part["detail"]} if part.get("detail") else {})}
        return {"type": "image_url", "image_url": image}
    raise APIError(400, f"content part of type '{kind}' is not supported here (text and image URLs are)",
                   param=param, code="unsupported_input")


def chat_tool(tool: FunctionTool, index: int) -> dict:
    if tool.type != "function" or not tool.name:
        raise APIError(400, f"tool type '{tool.type}' is not supported here (function tools are)",
                       param=f"tools.{index}.type", code="unsupported_tool")
    function = {"name": tool.name, "description": tool.description or "", "parameters": tool.parameters or {}}
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def chat_tool_choice(choice: str | dict) -> str | dict:
    if isinstance(choice, str) and choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise APIError(400, "tool_choice must be auto, none, required or {type: function, name}", param="tool_choice",
                   code="invalid_request")


def response_format(text: dict | None) -> dict:
    fmt = (text or {}).get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return {}
    if fmt["type"] == "json_object":
        return {"response_format": {"type": "json_object"}}
    if fmt["type"] == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    raise APIError(400, f"text.format of type '{fmt['type']}' is not supported", param="text.format.type")


# ---- answers ---------------------------------------------------------------------------------

def response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def usage_of(chat_usage: dict | None) -> dict:
    usage = chat_usage or {}
    tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {"input_tokens": tokens_in, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": tokens_out, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(usage.get("total_tokens") or tokens_in + tokens_out)}


def message_output(text: str, status: str = "completed", id: str | None = None) -> dict:
    return {"type": "message", "id": id or item_id("msg"), "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_output(call_id: str, name: str, arguments: str, status: str = "completed", id: str | None = None) -> dict:
    return {"type": "function_call", "id": id or item_id("fc"), "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def response_object(request: ResponsesRequest, id: str, model: str, status: str, output: list[dict],
                    usage: dict | None, finish_reason: str | None = None) -> dict:
    """A Response as OpenAI returns it, echoing the request's settings."""
    incomplete = finish_reason == "length" and status == "completed"
    return {"id": id, "object": "response", "created_at": int(time.time()), "model": model,
            "status": "incomplete" if incomplete else status,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "error": None, "instructions": request.instructions, "output": output,
            "tools": [t.model_dump(exclude_none=True) for t in request.tools or []],
            "tool_choice": request.tool_choice if request.tool_choice is not None else "auto",
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "temperature": request.temperature, "top_p": request.top_p,
            "max_output_tokens": request.max_output_tokens, "previous_response_id": request.previous_response_id,
            "store": request.store, "metadata": request.metadata or {}, "usage": usage_of(usage) if usage else None}


def from_chat(request: ResponsesRequest, answer: dict, id: str) -> dict:
    """A chat completion as a Response: its text as a message item, each tool call a function_call item."""
    choice = (answer.get("choices") or [{}])[0]
    output = output_items(choice.get("message") or {})
    return response_object(request, id, answer.get("model", request.model), "completed", output,
                           answer.get("usage") or {}, choice.get("finish_reason"))


def output_items(message: dict) -> list[dict]:
    output = [message_output(message["content"])] if message.get("content") else []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(call_output(call.get("id") or item_id("call"), function.get("name", ""),
                                  function.get("arguments") or ""))
    return output


def assistant_message(output: list[dict]) -> dict:
    """A Response's output as the chat assistant message the next turn's history holds."""
    text = "".join(p.get("text", "") for item in output if item["type"] == "message" for p in item["content"])
    calls = [{"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}
             for item in output if item["type"] == "function_call"]
    return {"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})}


def chat_to_items(messages: list[dict]) -> list[dict]:
    """Chat messages (a stored conversation) as Responses input items, for a backend that
    speaks Responses itself and so cannot know our previous_response_id."""
    items: list[dict] = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role == "tool":
            items.append({"type": "function_call_output", "call_id": message.get("tool_call_id", ""), "output": content or ""})
            continue
        if content:
            text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content if p.get("type") == "text")
            kind = "output_text" if role == "assistant" else "input_text"
            items.append({"type": "message", "role": role, "content": [{"type": kind, "text": text}]})
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            items.append({"type": "function_call", "call_id": call.get("id", ""), "name": function.get("name", ""),
                          "arguments": function.get("arguments", "")})
    return items
