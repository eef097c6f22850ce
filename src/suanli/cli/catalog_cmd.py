"""``suanli catalog …``: browse the built-in catalogue and the synthetic national fleet.

Every sub-command prints a Rich table, or JSON with ``--json`` for scripts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import typer

from suanli.catalog import (
    OUTSIDE_HUBS,
    Catalog,
    NationalSummary,
    hub,
    load_catalog,
    national_summary,
)
from suanli.cli._output import console, print_json, print_table
from suanli.domain import Cluster, Fleet

__all__ = ["register", "show_summary"]

DEFAULT_FLEET = "china-2025"

catalog_app = typer.Typer(
    name="catalog",
    help="Browse the built-in catalogue: GPUs, LLM models, hubs, clusters, cities, sites.",
    no_args_is_help=True,
)

_JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")
_FLEET = typer.Option(DEFAULT_FLEET, "--fleet", help="Built-in fleet to read.")


def register(app: typer.Typer) -> None:
    """Add ``suanli catalog`` and its sub-commands to ``app``."""
    app.add_typer(catalog_app, name="catalog")


@catalog_app.command("gpus")
def gpus(as_json: bool = _JSON) -> None:
    """Accelerators: dense BF16/FP8 TFLOPS, memory, bandwidth, interconnect, TDP."""
    accs = list(load_catalog().accelerators.values())
    if as_json:
        print_json(accs)
        return
    columns = ["name", "vendor", "bf16_tflops", "fp8_tflops", "mem_gb", "mem_bw_tbps"]
    columns += ["interconnect_gbps", "tdp_w", "domestic", "estimate"]
    headers = {
        "bf16_tflops": "BF16 TFLOPS",
        "fp8_tflops": "FP8 TFLOPS",
        "mem_gb": "mem GB",
        "mem_bw_tbps": "mem TB/s",
        "interconnect_gbps": "link GB/s",
        "tdp_w": "TDP W",
    }
    print_table(_rows(accs), columns, title="Accelerators (dense)", headers=headers)


@catalog_app.command("models")
def models(as_json: bool = _JSON) -> None:
    """LLM model shapes used by the performance model."""
    ms = list(load_catalog().models.values())
    if as_json:
        print_json(ms)
        return
    rows = [
        {
            **_row(m),
            "kv_kib_per_token": m.layers
            * m.kv_elems_per_token_per_layer
            * m.kv_bytes_per_elem
            / 1024,
        }
        for m in ms
    ]
    columns = ["name", "total_params_b", "active_params_b", "layers", "hidden", "heads"]
    columns += ["kv_heads", "head_dim", "weight_bytes_per_param", "kv_kib_per_token"]
    headers = {
        "total_params_b": "params B",
        "active_params_b": "active B",
        "weight_bytes_per_param": "weight bytes",
        "kv_kib_per_token": "KV KiB/token",
    }
    print_table(rows, columns, title="LLM models", headers=headers)


@catalog_app.command("hubs")
def hubs(as_json: bool = _JSON) -> None:
    """The 8 national hubs of East-Data-West-Computing and their clusters."""
    cat = load_catalog()
    clusters = {h: [c for c in cat.clusters.values() if c.hub_id == h] for h in cat.hubs}
    if as_json:
        print_json([{**_row(h), "clusters": clusters[h.id]} for h in cat.hubs.values()])
        return
    rows = [
        {**_row(h), "provinces": ", ".join(h.provinces), "clusters": _cluster_names(clusters[h.id])}
        for h in cat.hubs.values()
    ]
    columns = ["id", "name", "name_zh", "region", "provinces", "pue_target", "clusters"]
    print_table(rows, columns, title="National hubs (东数西算)", headers={"pue_target": "PUE ≤"})


@catalog_app.command("clusters")
def clusters(as_json: bool = _JSON) -> None:
    """The 10 national data-center clusters."""
    cs = list(load_catalog().clusters.values())
    if as_json:
        print_json(cs)
        return
    columns = ["id", "name", "name_zh", "hub_id", "province", "lat", "lon", "pue", "estimate"]
    print_table(_rows(cs), columns, title="National clusters", headers={"hub_id": "hub"})


@catalog_app.command("cities")
def cities(as_json: bool = _JSON) -> None:
    """Demand cities, largest demand weight (2023 GDP) first."""
    cs = sorted(load_catalog().cities.values(), key=lambda c: -c.demand_weight)
    if as_json:
        print_json(cs)
        return
    columns = ["name", "name_zh", "province", "region", "lat", "lon", "demand_weight"]
    headers = {"demand_weight": "weight (GDP 亿元)"}
    print_table(_rows(cs), columns, title="Demand cities", headers=headers)


@catalog_app.command("power")
def power(as_json: bool = _JSON) -> None:
    """Industrial power price and typical data-center PUE per province, cheapest first."""
    ps = sorted(load_catalog().power.values(), key=lambda p: p.price_cny_per_kwh)
    if as_json:
        print_json(ps)
        return
    columns = ["province", "region", "price_cny_per_kwh", "pue", "estimate"]
    headers = {"price_cny_per_kwh": "yuan/kWh"}
    print_table(_rows(ps), columns, title="Power prices", headers=headers)


@catalog_app.command("sites")
def sites(
    fleet_name: str = _FLEET,
    hub_name: str | None = typer.Option(None, "--hub", help="Only sites in this hub."),
    limit: int | None = typer.Option(None, "--limit", min=0, help="Show at most N sites."),
    as_json: bool = _JSON,
) -> None:
    """Sites of a built-in fleet with their GPUs, power price and PUE."""
    cat = load_catalog()
    hub_id = hub(cat, hub_name).id if hub_name is not None else None
    fleet = _load_fleet(fleet_name)
    chosen = [s for s in fleet.sites.values() if hub_id is None or s.hub_id == hub_id]
    shown = chosen if limit is None else chosen[:limit]
    rows = []
    for site in shown:
        pools = fleet.pools_of(site.id)
        rows.append(
            {
                **_row(site),
                "gpus": sum(p.gpu_count for p in pools),
                "gpu_models": ", ".join(sorted({p.gpu for p in pools})),
            }
        )
    if as_json:
        print_json(rows)
        return
    columns = ["id", "city", "province", "hub_id", "cluster_id", "gpus", "gpu_models"]
    columns += ["pue", "power_price_cny_per_kwh", "operator"]
    headers = {"hub_id": "hub", "cluster_id": "cluster", "power_price_cny_per_kwh": "yuan/kWh"}
    title = f"Sites of fleet {fleet.name!r}: {len(shown)} of {len(chosen)}"
    print_table(rows, columns, title=title, headers=headers)


@catalog_app.command("summary")
def summary(fleet_name: str = _FLEET, as_json: bool = _JSON) -> None:
    """National summary: the fleet's GPUs by model, hub and region, and catalogue counts."""
    show_summary(fleet_name, as_json=as_json)


def show_summary(fleet_name: str = DEFAULT_FLEET, *, as_json: bool = False) -> None:
    """Print the national summary of built-in fleet ``fleet_name`` (table or JSON)."""
    cat = load_catalog()
    s = national_summary(cat, _load_fleet(fleet_name))
    if as_json:
        print_json(s)
        return
    _print_summary(cat, s)


def _print_summary(cat: Catalog, s: NationalSummary) -> None:
    console.print(
        f"[bold]Fleet {s.fleet}[/]: {s.gpus:,} GPUs in {s.pools:,} pools at {s.sites:,} sites.",
        highlight=False,
    )
    console.print(
        f"Catalogue: {s.hubs} hubs, {s.clusters} clusters, {s.cities} demand cities, "
        f"{s.accelerators} accelerators, {s.models} LLM models.",
        highlight=False,
    )
    print_table(_shares(s.gpus_by_model, s.gpus), ["model", "gpus", "share"], title="By GPU model")
    hub_rows = [
        {**r, "hub": _hub_label(cat, r["hub"])} for r in _shares(s.gpus_by_hub, s.gpus, label="hub")
    ]
    print_table(hub_rows, ["hub", "gpus", "share"], title="By hub")
    region_rows = _shares(s.gpus_by_region, s.gpus, label="region")
    print_table(region_rows, ["region", "gpus", "share"], title="By region")


def _shares(counts: Mapping[str, int], total: int, label: str = "model") -> list[dict[str, Any]]:
    return [
        {label: k, "gpus": v, "share": f"{v / total:.1%}" if total else "—"}
        for k, v in counts.items()
    ]


def _hub_label(cat: Catalog, hub_id: str) -> str:
    if hub_id == OUTSIDE_HUBS:
        return "outside the national hubs"
    h = cat.hubs[hub_id]
    return f"{h.name} {h.name_zh}"


def _cluster_names(clusters: list[Cluster]) -> str:
    return ", ".join(c.name for c in clusters)


def _load_fleet(name: str) -> Fleet:
    # Imported here: generating a fleet pulls numpy and calibration data that the other
    # catalogue commands never need.
    from suanli.catalog.fleet import load_fleet

    return load_fleet(name)


def _row(value: Any) -> dict[str, Any]:
    """A dataclass as a flat dict of its fields (enums left for the table to format)."""
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _rows(values: list[Any]) -> list[dict[str, Any]]:
    return [_row(v) for v in values]
