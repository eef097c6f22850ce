"""The Python SDK: :class:`Client` talks to a running exchange over HTTP (httpx)."""

from __future__ import annotations

from suanli.sdk.client import ApiError, Client, load_config, save_config

__all__ = ["ApiError", "Client", "load_config", "save_config"]
