"""The exchange service: HTTP API, persistence, accounts, ledger, clearing loop.

A thin shell around the engine: requests and agents change rows; every N seconds the
clearing loop builds an :class:`~suanli.engine.state.ExchangeState` from the rows, clears
it with the exchange policy and writes the round back in one transaction.

Public surface: :func:`create_app` (the FastAPI application) and
:class:`ServiceSettings` (built by the entry point and passed down).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ServiceSettings", "create_app"]

if TYPE_CHECKING:
    from suanli.service.app import create_app
    from suanli.service.settings import ServiceSettings


def __getattr__(name: str) -> Any:
    # Lazy: importing the package must not pull FastAPI and SQLAlchemy in.
    if name == "create_app":
        from suanli.service.app import create_app

        return create_app
    if name == "ServiceSettings":
        from suanli.service.settings import ServiceSettings

        return ServiceSettings
    raise AttributeError(name)
