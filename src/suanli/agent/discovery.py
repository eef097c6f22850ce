"""Finding a host's GPUs: NVML when it is there, the seller's inventory file otherwise.

NVML comes from the optional ``nvidia-ml-py`` package (module ``pynvml``); its import is
guarded, so a host without it (or without a driver) falls back to the inventory file and
says so with ``Limitation``s. Driver names ("NVIDIA H100 80GB HBM3") are mapped to the
catalogue's names ("H100") where the catalogue knows them.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from suanli.agent.backend import Feature, Limitation
from suanli.agent.inventory import Inventory, InventoryPool, load_inventory
from suanli.catalog import load_catalog
from suanli.catalog.queries import accelerator
from suanli.domain import Fabric
from suanli.errors import InvalidInput

__all__ = ["canonical_gpu_model", "discover_host_gpus", "load_nvml", "nvml_inventory"]


def load_nvml() -> tuple[Any | None, str]:
    """The initialised ``pynvml`` module, or None and why it is not usable here."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        return None, "nvidia-ml-py (pynvml) is not installed"
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError subclasses: no driver, no devices, no permission
        return None, f"NVML did not initialise ({exc})"
    return nvml, ""


def nvml_inventory(nvml: Any, fabric: Fabric) -> Inventory:
    """One pool per GPU model found by NVML, devices numbered in NVML (PCI bus) order."""
    by_model: dict[str, list[int]] = {}
    try:
        for index in range(int(nvml.nvmlDeviceGetCount())):
            raw = nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(index))
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            by_model.setdefault(canonical_gpu_model(name), []).append(index)
    finally:
        nvml.nvmlShutdown()
    pools = tuple(
        InventoryPool(
            name=f"local-{model.lower().replace(' ', '-')}",
            gpu_model=model,
            devices=tuple(devices),
            gpus_per_node=len(devices),
            fabric=fabric,
            simulated=False,
        )
        for model, devices in by_model.items()
    )
    return Inventory(pools=pools, source="nvml")


def discover_host_gpus(
    inventory_path: Path | None, fabric: Fabric = Fabric.ETHERNET, *, nvml: Any | None = None
) -> tuple[Inventory, tuple[Limitation, ...]]:
    """This host's GPUs and what could not be found out.

    NVML first (``nvml`` may be passed in, e.g. a fake in tests); when it is unusable or
    finds no GPU, the inventory file; with neither, no pools. The fabric cannot be read
    from a single host, so it comes from the caller (or the file).
    """
    why_not = ""
    if nvml is None:
        nvml, why_not = load_nvml()
    limits: list[Limitation] = []
    if nvml is not None:
        found = nvml_inventory(nvml, fabric)
        if found.pools:
            limits.append(Limitation(Feature.ENERGY, "per-job energy is not metered yet"))
            limits.append(Limitation(Feature.FABRIC, "fabric is configured, not discovered"))
            return found, tuple(limits)
        why_not = "NVML found no GPU"
    limits.append(Limitation(Feature.ENERGY, f"no NVML on this host: {why_not}"))
    if inventory_path is None:
        limits.append(Limitation(Feature.GPU_DISCOVERY, f"{why_not}, and no inventory file"))
        return Inventory(pools=(), source="none"), tuple(limits)
    inv = load_inventory(inventory_path)
    limits.append(Limitation(Feature.GPU_DISCOVERY, f"{why_not}: GPUs taken from {inventory_path}"))
    simulated = [p.name for p in inv.pools if p.simulated]
    if simulated:
        limits.append(_simulated(simulated))
    return inv, tuple(limits)


def _simulated(pools: Sequence[str]) -> Limitation:
    return Limitation(
        Feature.SIMULATED_GPUS,
        f"pools {', '.join(pools)} are declared in the inventory without devices: jobs get "
        "CUDA_VISIBLE_DEVICES indices but no GPU",
    )


def canonical_gpu_model(driver_name: str) -> str:
    """The catalogue's name for a driver's GPU name, else the driver's name unchanged.

    Tries the name without a vendor prefix, then shorter and shorter leading word runs
    ("H100 80GB HBM3" → "H100 80GB" → "H100").
    """
    words = driver_name.split()
    if words and words[0].upper() in ("NVIDIA", "HUAWEI", "CAMBRICON"):
        words = words[1:]
    cat = load_catalog()
    for n in range(len(words), 0, -1):
        try:
            return accelerator(cat, " ".join(words[:n])).name
        except InvalidInput:
            continue
    return driver_name
