"""The YAML config: one strict pydantic schema, a leaf that imports no runtime module.

Loading a config pulls in no aiohttp and registers no metrics; the runtime modules import
their section's schema from here, never the other way round. One module per section:
backends, routing (and its `when:` condition table), access (auth, metrics), limits,
resilience, state; `file` composes them into `Config` and loads the YAML.
"""
from control.config.backends import Backend, Price
from control.config.file import Config, ConfigError, load_config

__all__ = ["Backend", "Config", "ConfigError", "Price", "load_config"]
