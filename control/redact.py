"""Secrets never leave: upstream API keys (and client keys read from the environment) are
scrubbed from logs, error messages, span events and relayed upstream bodies, streamed
ones included (`StreamRedactor`), and from the few upstream headers that are relayed.

The gateway never puts a key into a message itself; the risk is an upstream (or a proxy in
front of it) echoing the Authorization header back in an error body, or an exception text
carrying it. `register(config)` is called at start and on every config reload.
"""
from __future__ import annotations

import logging
import os

MASK = "[redacted]"
_secrets: tuple[str, ...] = ()


def register(config) -> None:
    """Remember every secret this config can reach: backend keys and client keys from env."""
    global _secrets
    names = [b.api_key_env for b in config.backends if b.api_key_env]
    names += [k.key_env for k in config.auth.keys if k.key_env]
    # Longest first, so a key containing another is masked whole; short values are not secrets.
    values = {os.environ.get(n, "") for n in names}
    _secrets = tuple(sorted((v for v in values if len(v) >= 8), key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_bytes(data: bytes) -> bytes:
    for secret in _secrets:
        encoded = secret.encode()
        if encoded in data:
            data = data.replace(encoded, MASK.encode())
    return data


class StreamRedactor:
    """Masks secrets in a byte stream (SSE), chunk by chunk. A secret split across two chunks
    is masked too: a tail that could be the start of a secret is held back until the next
    chunk shows whether it is one. Nothing else is delayed."""

    def __init__(self):
        self.secrets = [secret.encode() for secret in _secrets]
        self.held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = redact_bytes(self.held + chunk)
        keep = self._partial_secret(data)
        self.held = data[len(data) - keep:] if keep else b""
        return data[:len(data) - keep]

    def flush(self) -> bytes:
        """What was held back, at the end of a complete stream (a prefix, no whole secret)."""
        data, self.held = self.held, b""
        return data

    def _partial_secret(self, data: bytes) -> int:
        """Length of the longest tail of `data` that begins some secret."""
        longest = 0
        for secret in self.secrets:
            start = data.find(secret[:1], max(0, len(data) - len(secret) + 1))
            while start != -1 and len(data) - start > longest:
                if secret.startswith(data[start:]):
                    longest = len(data) - start
                    break
                start = data.find(secret[:1], start + 1)
        return longest


class RedactingFilter(logging.Filter):
    """On a handler: formats the message and any traceback now, with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for name, value in list(vars(record).items()):  # structured `extra` fields too
            if isinstance(value, str) and name not in ("msg", "exc_text"):
                setattr(record, name, redact(value))
        return True


def install_log_filter() -> None:
    """Attach to every root handler (after telemetry.setup_logging has made them)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
