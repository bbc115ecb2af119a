"""The `auth:` and `metrics:` sections: client API keys and who may read /metrics.

The config never holds a key in clear: either its SHA-256 (hex) or the name of an environment
variable that holds it (`key_env`). `auth.mode: auto` (the default) turns auth on when the
gateway listens beyond loopback. The checks themselves live in control/auth.py.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from control.config.base import BackendName, Strict


class ApiKey(Strict):
    name: str = Field(min_length=1, description="who holds the key (logs, metrics, errors)")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key")
    key_env: str | None = Field(None, min_length=1, description="environment variable holding the key itself")
    backends: list[BackendName] | None = Field(None, description="backends this key may reach (default: all)")
    requests_per_minute: int | None = Field(None, gt=0)
    tokens_per_minute: int | None = Field(None, gt=0, description="prompt + completion tokens")
    admin: bool = Field(False, description="may read the console's data (/ui/api: decisions, health, config)")
    _digest: str = PrivateAttr("")

    @model_validator(mode="after")
    def _resolve(self) -> "ApiKey":
        if (self.sha256 is None) == (self.key_env is None):
            raise ValueError("give exactly one of 'sha256' or 'key_env'")
        if self.key_env is not None:
            value = os.environ.get(self.key_env)
            if not value:
                raise ValueError(f"key_env: ${self.key_env} is not set")
            self._digest = digest(value)
        else:
            self._digest = self.sha256
        return self

    def allows(self, backend: str) -> bool:
        return self.backends is None or backend in self.backends


class Auth(Strict):
    """The `auth:` section."""
    mode: Literal["auto", "on", "off"] = Field("auto", description="auto: on when listening beyond loopback")
    keys: list[ApiKey] = Field(default_factory=list)
    _by_digest: dict[str, ApiKey] = PrivateAttr(default_factory=dict)

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_boolean(cls, value):
        # YAML 1.1 reads unquoted on/off as booleans: `mode: off`, as the docs write it, means "off".
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _index(self) -> "Auth":
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ValueError("key names must be unique")
        self._by_digest = {k._digest: k for k in self.keys}
        if len(self._by_digest) != len(self.keys):
            raise ValueError("two keys have the same value")
        return self

    def enabled(self, host: str) -> bool:
        return self.mode == "on" or (self.mode == "auto" and not is_loopback(host))

    def lookup(self, presented: str) -> ApiKey | None:
        # Hash first: the dict lookup then compares digests, never the secret itself.
        try:
            return self._by_digest.get(digest(presented))
        except UnicodeEncodeError:  # bytes that are not UTF-8 (kept as surrogates by aiohttp): no key has them
            return None

    def problem(self, host: str) -> str | None:
        """Why this section cannot serve on `host` (auth on but no key), else None."""
        if self.enabled(host) and not self.keys:
            return (f"auth is on (mode {self.mode}, listening on {host}) but auth.keys is empty: "
                    "add keys, or set auth.mode: off to serve without keys")
        return None


class MetricsAccess(Strict):
    """The `metrics:` section: who may read GET /metrics (it names backends, rules, key names)."""
    auth: Literal["api", "none", "key"] = Field(
        "api", description="api: the API's keys (open when API auth is off); none: open to anyone who can connect; "
                           "key: only the scraper key in key_env")
    key_env: str | None = Field(None, min_length=1, description="auth: key: environment variable holding the scraper key")
    _digest: str = PrivateAttr("")

    @model_validator(mode="after")
    def _resolve(self) -> "MetricsAccess":
        if (self.auth == "key") != (self.key_env is not None):
            raise ValueError("key_env is required with auth: key, and only then")
        if self.key_env is not None:
            value = os.environ.get(self.key_env)
            if not value:
                raise ValueError(f"key_env: ${self.key_env} is not set")
            self._digest = digest(value)
        return self

    def admits(self, presented: str) -> bool:
        return hmac.compare_digest(digest(presented), self._digest)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost, or "" (all interfaces)
