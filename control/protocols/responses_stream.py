"""An OpenAI chat completion stream as the Responses API's typed events:

response.created → response.in_progress → for the text: output_item.added, content_part.added,
output_text.delta …, output_text.done, content_part.done, output_item.done; for each tool call:
output_item.added, function_call_arguments.delta …, function_call_arguments.done,
output_item.done → response.completed (or response.incomplete at max_output_tokens) with usage.

Every event is `event: <type>` + `data: {...}` with a rising `sequence_number`. The finished
Response (`final`) is kept so the caller can store the turn.
"""
from __future__ import annotations

from control.protocols.chat_stream import (ChatStreamReader, Delta, StreamEnd, StreamError, TextDelta, ToolArgsDelta,
                                           ToolCallStart)
from control.protocols.responses import (ResponsesRequest, call_output, item_id, message_output, response_id,
                                         response_object)
from control.protocols.sse import encode


class ResponsesStream:
    def __init__(self, request: ResponsesRequest, id: str | None = None):
        self.request = request
        self.reader = ChatStreamReader()
        self.id = id or response_id()
        self.sequence = 0
        self.started = False
        self.final: dict | None = None   # the completed Response
        self.output: list[dict] = []     # items, in output_index order, as they are when done
        self.open: dict | None = None    # the item being streamed
        self.calls: dict[int, int] = {}  # OpenAI tool call index → output index

    @property
    def usage(self) -> dict | None:
        return self.reader.usage

    @property
    def done(self) -> bool:
        return self.final is not None

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._on(delta) for delta in self.reader.feed(data))

    def flush(self) -> bytes:
        return b""

    def error(self, status: int, message: str, code: str | None = None) -> bytes:
        """The event that ends a stream that failed midway."""
        return self._event("error", {"code": code or "upstream_error", "message": message, "param": None})

    def _event(self, kind: str, fields: dict) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return encode(kind, payload)

    def _response(self, status: str, usage: dict | None = None) -> dict:
        return response_object(self.request, self.id, self.reader.model or self.request.model, status,
                               self.output if status != "in_progress" else [], usage, self.reader.finish_reason)

    def _on(self, delta: Delta) -> bytes:
        if self.final is not None:
            return b""
        out = b""
        if not self.started:
            self.started = True
            out += self._event("response.created", {"response": self._response("in_progress")})
            out += self._event("response.in_progress", {"response": self._response("in_progress")})
        if isinstance(delta, TextDelta):
            out += self._text(delta.text)
        elif isinstance(delta, ToolCallStart):
            out += self._close() + self._add(call_output(delta.id, delta.name, "", "in_progress"))
            self.calls[delta.index] = len(self.output) - 1
        elif isinstance(delta, ToolArgsDelta) and delta.index in self.calls:
            index = self.calls[delta.index]
            self.output[index]["arguments"] += delta.arguments
            out += self._event("response.function_call_arguments.delta",
                               {"item_id": self.output[index]["id"], "output_index": index, "delta": delta.arguments})
        elif isinstance(delta, StreamError):
            self.final = self._response("failed")
            out += self.error(502, str(delta.error.get("message") or "upstream error"), delta.error.get("code"))
        elif isinstance(delta, StreamEnd):
            out += self._close()
            self.final = self._response("completed", self.reader.usage or {})
            kind = "response.incomplete" if self.final["status"] == "incomplete" else "response.completed"
            out += self._event(kind, {"response": self.final})
        return out

    def _add(self, item: dict) -> bytes:
        self.output.append(item)
        self.open = item
        snapshot = {**item, "content": []} if item["type"] == "message" else dict(item)
        return self._event("response.output_item.added", {"output_index": len(self.output) - 1, "item": snapshot})

    def _text(self, text: str) -> bytes:
        out = b""
        if self.open is None or self.open["type"] != "message":
            out += self._close() + self._add(message_output("", "in_progress", item_id("msg")))
            out += self._event("response.content_part.added", {**self._where(), "part": self._part("")})
        self.open["content"][0]["text"] += text
        return out + self._event("response.output_text.delta", {**self._where(), "delta": text, "logprobs": []})

    def _where(self) -> dict:
        return {"item_id": self.open["id"], "output_index": len(self.output) - 1, "content_index": 0}

    @staticmethod
    def _part(text: str) -> dict:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def _close(self) -> bytes:
        item, self.open = self.open, None
        if item is None:
            return b""
        index = self.output.index(item)
        item["status"] = "completed"
        if item["type"] == "message":
            text = item["content"][0]["text"]
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out = self._event("response.output_text.done", {**where, "text": text, "logprobs": []})
            out += self._event("response.content_part.done", {**where, "part": self._part(text)})
        else:
            out = self._event("response.function_call_arguments.done",
                              {"item_id": item["id"], "output_index": index, "name": item["name"],
                               "arguments": item["arguments"]})
        return out + self._event("response.output_item.done", {"output_index": index, "item": item})
