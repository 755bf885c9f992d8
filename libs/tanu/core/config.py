"""Configuration: frozen dataclasses built once, in ``main()``, from an
environment mapping that tests pass in. Nothing reads ``os.environ`` at import.

Every field names its environment variable and carries a one-line doc; nested
dataclass fields are built from the same environment. This module is the
public surface over:

- ``_settings``: declaring and reading settings (``setting``, ``from_env``,
  ``describe``);
- ``_common_config``: what every service shares (``Layout``, ``Common``);
- ``_service_config``: ``StoreConfig``, ``SearcherConfig``, ``GatewayConfig``;
- ``_model_config``: ``OnnxSettings``, ``DetectorConfig``, ``EmbedderConfig``.
"""

from tanu.core._common_config import METRICS, Common, Layout
from tanu.core._model_config import DetectorConfig, EmbedderConfig, OnnxSettings
from tanu.core._service_config import GatewayConfig, SearcherConfig, StoreConfig
from tanu.core._settings import describe, from_env, setting

__all__ = [
    "METRICS",
    "Common",
    "DetectorConfig",
    "EmbedderConfig",
    "GatewayConfig",
    "Layout",
    "OnnxSettings",
    "SearcherConfig",
    "StoreConfig",
    "describe",
    "from_env",
    "setting",
]
