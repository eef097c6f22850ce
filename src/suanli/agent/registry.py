"""Backends by name: an explicit dict of factories, built once at startup.

A factory takes the backend's configuration mapping (the backend's own settings fields,
e.g. from the agent's YAML file) and returns a ready ``Backend``. Nothing registers itself
on import; a caller that wants another backend adds it to the dict it builds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from suanli.agent.backend import Backend
from suanli.agent.local import local_backend
from suanli.agent.ray import ray_backend
from suanli.agent.slurm import slurm_backend
from suanli.errors import UnknownName

__all__ = ["BackendFactory", "create_backend", "default_registry"]

BackendFactory = Callable[[Mapping[str, object]], Backend]


def default_registry() -> dict[str, BackendFactory]:
    """The backends suanli ships: ``local``, ``slurm``, ``ray``."""
    return {"local": local_backend, "slurm": slurm_backend, "ray": ray_backend}


def create_backend(
    registry: Mapping[str, BackendFactory], name: str, config: Mapping[str, object]
) -> Backend:
    """The backend ``name`` built from ``config``; ``UnknownName`` lists the known names."""
    factory = registry.get(name)
    if factory is None:
        raise UnknownName("backend", name, registry)
    return factory(config)
