"""The running config as the console shows it: every secret masked.

The config holds no key in clear (keys are SHA-256 digests or names of environment
variables), but a digest still lets anyone test guesses offline, and a backend URL may carry
`user:pass@` or a `?key=` query: those are masked. Values of the secrets the config can
reach (backend keys, client keys from the environment) are masked wherever they appear.
"""
from __future__ import annotations

import json

from control import redact, scrub

MASK = "[redacted]"
SECRET_FIELDS = {"sha256"}


def masked_config(config) -> dict:
    dumped = config.model_dump(mode="json")
    return json.loads(redact.redact(json.dumps(mask(dumped))))


def mask(value, key: str = ""):
    if isinstance(value, dict):
        return {k: mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, key) for v in value]
    if isinstance(value, str):
        if key in SECRET_FIELDS:
            return MASK
        if key == "url" or value.startswith(("http://", "https://")):
            return scrub.scrub_url(value)
    return value
