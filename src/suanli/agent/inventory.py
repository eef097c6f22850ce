"""A host's GPUs as pools, from an inventory file or from NVML, and who holds which device.

Inventory file (YAML)::

    pools:
      - name: local-h100        # optional; default "local-<gpu>"
        gpu: H100               # model, as the catalogue or the driver names it
        count: 8
        gpus_per_node: 8        # optional; default count (one host)
        fabric: ethernet        # infiniband | roce | ethernet; optional, default ethernet
        simulated: true         # optional; true when there are no such devices (tests, demos)
        devices: [0, 1, 2, 3, 4, 5, 6, 7]   # optional CUDA indices; default: consecutive

Devices not given are numbered on from the last pool's, so two pools of 4 get 0-3 and 4-7.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from suanli.domain import Fabric
from suanli.errors import InvalidInput

__all__ = ["DeviceAllocator", "Inventory", "InventoryPool", "load_inventory", "parse_inventory"]


@dataclass(frozen=True, slots=True)
class InventoryPool:
    name: str
    gpu_model: str
    devices: tuple[int, ...]
    gpus_per_node: int
    fabric: Fabric
    simulated: bool

    @property
    def gpu_count(self) -> int:
        return len(self.devices)


@dataclass(frozen=True, slots=True)
class Inventory:
    """Pools of one host and where they were found (``source``: a file path, "nvml")."""

    pools: tuple[InventoryPool, ...]
    source: str


class _PoolDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    gpu: str = Field(min_length=1)
    count: int = Field(ge=0)
    gpus_per_node: int | None = Field(default=None, ge=1)
    fabric: Fabric = Fabric.ETHERNET
    simulated: bool = False
    devices: list[int] | None = None


class _InventoryDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pools: list[_PoolDoc]


def parse_inventory(doc: Mapping[str, object], source: str) -> Inventory:
    """An ``Inventory`` from a parsed YAML document; ``InvalidInput`` says what is wrong."""
    try:
        parsed = _InventoryDoc.model_validate(doc)
    except ValidationError as exc:
        raise InvalidInput(f"inventory {source}: {_first_error(exc)}") from exc
    pools: list[InventoryPool] = []
    next_device = 0
    seen: set[int] = set()
    for p in parsed.pools:
        name = p.name or f"local-{p.gpu.lower().replace(' ', '-')}"
        devices = (
            tuple(p.devices)
            if p.devices is not None
            else tuple(range(next_device, next_device + p.count))
        )
        if len(devices) != p.count:
            raise InvalidInput(
                f"inventory {source}: pool {name} lists {len(devices)} devices "
                f"but count is {p.count}"
            )
        if seen & set(devices) or len(set(devices)) != len(devices):
            raise InvalidInput(f"inventory {source}: pool {name} reuses a device index")
        seen |= set(devices)
        next_device = max(devices, default=next_device - 1) + 1
        pools.append(
            InventoryPool(
                name=name,
                gpu_model=p.gpu,
                devices=devices,
                gpus_per_node=p.gpus_per_node or max(p.count, 1),
                fabric=p.fabric,
                simulated=p.simulated,
            )
        )
    if len({p.name for p in pools}) != len(pools):
        raise InvalidInput(f"inventory {source}: pool names must be unique")
    return Inventory(pools=tuple(pools), source=source)


def load_inventory(path: Path) -> Inventory:
    """Read and parse an inventory file."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read inventory {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"inventory {path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, Mapping):
        raise InvalidInput(f"inventory {path}: expected a mapping with 'pools'")
    return parse_inventory(doc, str(path))


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"])
    return f"{where}: {err['msg']}"


class DeviceAllocator:
    """Which devices of each pool are free. Not thread-safe: the caller holds its lock."""

    def __init__(self, inventory: Inventory) -> None:
        self._pools = {p.name: p for p in inventory.pools}
        self._free: dict[str, list[int]] = {p.name: list(p.devices) for p in inventory.pools}

    def free(self, pool: str) -> int:
        return len(self._free[pool])

    def fitting_pools(self, gpus: int, gpu_model: str | None) -> list[InventoryPool]:
        """Pools that could ever hold ``gpus`` GPUs of ``gpu_model`` (None: any model)."""
        return [
            p
            for p in self._pools.values()
            if p.gpu_count >= gpus and (gpu_model is None or _same_model(p.gpu_model, gpu_model))
        ]

    def take(self, gpus: int, gpu_model: str | None) -> tuple[str, tuple[int, ...]] | None:
        """The first fitting pool with ``gpus`` free devices, and the lowest such devices;
        None when none has room now."""
        for pool in self.fitting_pools(gpus, gpu_model):
            free = self._free[pool.name]
            if len(free) >= gpus:
                taken = tuple(sorted(free)[:gpus])
                self._free[pool.name] = [d for d in free if d not in taken]
                return pool.name, taken
        return None

    def give_back(self, pool: str, devices: tuple[int, ...]) -> None:
        self._free[pool] = sorted({*self._free[pool], *devices})


def _same_model(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()
