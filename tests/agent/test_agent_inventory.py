"""Host GPU inventories: the YAML file, NVML (a fake module), and who holds which device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from suanli.agent import Feature
from suanli.agent.discovery import canonical_gpu_model, discover_host_gpus
from suanli.agent.inventory import DeviceAllocator, load_inventory, parse_inventory
from suanli.domain import Fabric
from suanli.errors import InvalidInput


def test_pools_number_their_devices_on_from_each_other() -> None:
    inv = parse_inventory(
        {
            "pools": [
                {"gpu": "H100", "count": 4, "fabric": "infiniband"},
                {"name": "l20s", "gpu": "L20", "count": 2, "simulated": True},
            ]
        },
        "test",
    )
    assert [
        (p.name, p.gpu_model, p.devices, p.gpus_per_node, p.fabric, p.simulated) for p in inv.pools
    ] == [
        ("local-h100", "H100", (0, 1, 2, 3), 4, Fabric.INFINIBAND, False),
        ("l20s", "L20", (4, 5), 2, Fabric.ETHERNET, True),  # numbered on from 4
    ]


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (
            {"pools": [{"gpu": "H100", "count": 2, "devices": [0]}]},
            "lists 1 devices but count is 2",
        ),
        ({"pools": [{"gpu": "H100", "count": 2, "devices": [0, 0]}]}, "reuses a device"),
        (
            {"pools": [{"gpu": "A", "count": 1}, {"gpu": "B", "count": 1, "devices": [0]}]},
            "reuses a device",
        ),
        ({"pools": [{"gpu": "H100", "count": 1}, {"gpu": "H100", "count": 1}]}, "unique"),
        ({"pools": [{"gpu": "H100", "count": -1}]}, "pools.0.count"),
        ({"pools": [{"gpu": "H100", "count": 1, "fabric": "smoke"}]}, "pools.0.fabric"),
        ({"pool": []}, "pools: Field required"),
    ],
)
def test_bad_inventories_say_what_is_wrong(doc: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        parse_inventory(doc, "inv.yaml")


def test_inventory_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read inventory"):
        load_inventory(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools: [\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_inventory(bad)


def test_allocator_gives_lowest_free_devices_and_takes_them_back() -> None:
    inv = parse_inventory({"pools": [{"gpu": "H100", "count": 4}]}, "t")
    alloc = DeviceAllocator(inv)
    assert alloc.take(2, None) == ("local-h100", (0, 1))
    assert alloc.take(1, "h100") == ("local-h100", (2,))  # model names match case-blind
    assert alloc.take(2, None) is None  # only device 3 is free
    alloc.give_back("local-h100", (0, 1))
    assert alloc.take(3, None) == ("local-h100", (0, 1, 3))
    assert alloc.fitting_pools(5, None) == []  # never fits: the pool has 4


class FakeNvml:
    """The few pynvml calls discovery makes."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.shut = False

    def nvmlDeviceGetCount(self) -> int:
        return len(self.names)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return self.names[handle].encode()  # older pynvml returns bytes

    def nvmlShutdown(self) -> None:
        self.shut = True


def test_nvml_devices_become_pools_by_model() -> None:
    nvml = FakeNvml(["NVIDIA H100 80GB HBM3"] * 2 + ["NVIDIA L20"])
    inv, limits = discover_host_gpus(None, Fabric.ROCE, nvml=nvml)
    assert inv.source == "nvml" and nvml.shut
    assert [(p.gpu_model, p.devices, p.fabric, p.simulated) for p in inv.pools] == [
        ("H100", (0, 1), Fabric.ROCE, False),
        ("L20", (2,), Fabric.ROCE, False),
    ]
    assert Feature.GPU_DISCOVERY not in {lim.feature for lim in limits}


def test_without_nvml_the_inventory_file_is_used_and_that_is_declared(tmp_path: Path) -> None:
    inv_file = tmp_path / "inv.yaml"
    inv_file.write_text("pools:\n  - {gpu: H20, count: 8, simulated: true}\n")
    inv, limits = discover_host_gpus(inv_file, nvml=FakeNvml([]))  # NVML finds no GPU
    assert [(p.gpu_model, p.gpu_count) for p in inv.pools] == [("H20", 8)]
    reasons = {lim.feature: lim.reason for lim in limits}
    assert "NVML found no GPU" in reasons[Feature.ENERGY]
    assert str(inv_file) in reasons[Feature.GPU_DISCOVERY]
    assert Feature.SIMULATED_GPUS in reasons


def test_no_nvml_and_no_file_means_no_pools() -> None:
    inv, limits = discover_host_gpus(None, nvml=FakeNvml([]))
    assert inv.pools == ()
    assert "no inventory file" in {lim.feature: lim.reason for lim in limits}[Feature.GPU_DISCOVERY]


@pytest.mark.parametrize(
    ("driver", "catalogue"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),  # "H100 80GB" is an alias
        ("NVIDIA H20", "H20"),
        ("NVIDIA A800-SXM4-80GB", "A800"),
        ("NVIDIA GeForce GTX 1080", "NVIDIA GeForce GTX 1080"),  # not in the catalogue: kept
        ("h100", "H100"),  # a Slurm GRES type
    ],
)
def test_driver_names_map_to_catalogue_names(driver: str, catalogue: str) -> None:
    assert canonical_gpu_model(driver) == catalogue
