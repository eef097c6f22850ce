"""suanli (算力): an open compute-power exchange.

Layers, imports pointing one way (see README "Architecture"):

    domain <- catalog, perf, latency <- market (clearing) <- engine
    sim, service, agent, cli, web sit on top as thin shells.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from suanli.sdk import Client


def __getattr__(name: str) -> Any:
    # Lazy: ``import suanli`` stays light; the SDK (and httpx) load on first use.
    if name == "Client":
        from suanli.sdk import Client

        return Client
    raise AttributeError(f"module 'suanli' has no attribute {name!r}")
