"""Shared by the exchange commands: the SDK client from the saved login, money display."""

from __future__ import annotations

from typing import Any

from suanli.errors import InvalidInput

__all__ = ["client", "fen_to_yuan", "yuan_to_fen"]


def client() -> Any:
    """An SDK client for the saved login (``suanli login``) or SUANLI_URL/SUANLI_TOKEN."""
    from suanli.sdk import Client

    return Client.from_config()


def yuan_to_fen(yuan: float, what: str) -> int:
    if not (yuan == yuan and 0 <= yuan <= 1e11):
        raise InvalidInput(f"{what} must be a number of yuan between 0 and 1e11, got {yuan}")
    return round(yuan * 100)


def fen_to_yuan(fen: int | None) -> float | None:
    return None if fen is None else fen / 100
