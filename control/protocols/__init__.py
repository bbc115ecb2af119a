"""The wire formats spoken besides chat completions, apart from serving (as vLLM keeps its
entrypoints' protocol types): Anthropic Messages, OpenAI Responses, completions, embeddings.

Pure code, no aiohttp: request types (pydantic), the translation of a request into the chat
completions body an OpenAI-compatible backend is sent, of its answer back into the client's
format, and stream translators that turn an OpenAI SSE chunk stream into the client's events.
"""
