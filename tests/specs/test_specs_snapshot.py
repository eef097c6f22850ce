"""The snapshot file of ``suanli clear``: what a good file becomes, and what a bad file says.

Fixtures: tests/market/data/market.yaml and market.json (the same market, written twice).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.catalog import load_catalog
from suanli.catalog.fleet import load_fleet
from suanli.domain import Fabric
from suanli.errors import InvalidInput, UnknownName
from suanli.market.valuation import value_cny_per_rps_hour
from suanli.perf.training import speed_factor
from suanli.specs.snapshot import load_snapshot

DATA = Path(__file__).resolve().parents[1] / "market" / "data"

POOL = "pools:\n  - {id: p, site_id: s, gpu: H100, free_gpus: 8, reserve_cny_per_gpu_hour: 10}\n"
SITE = "sites:\n  - {id: s, province: Shanghai, lat: 31.15, lon: 121.12}\n"
JOB = (
    "  - {id: j, buyer: acme, gpus: 8, work_ref_gpu_hours: 80,\n"
    "     bid_cny_per_ref_gpu_hour: 15, origin_city: Shanghai}\n"
)


def svc(extra: str = "") -> str:
    """A long-document service, with ``extra`` fields at the end of its mapping."""
    return (
        "services:\n  - {id: s1, buyer: a, model: llama3.1-8b, demand_rps: {Shanghai: 1},\n"
        "     prompt_tokens: 12000, output_tokens: 343, ttft_ms: 10000, tpot_ms: 50,\n"
        f"     bid_cny_per_m_output_tokens: 8{extra}}}\n"
    )


def write(tmp_path: Path, text: str, name: str = "market.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_fixture_resolves_names_and_defaults() -> None:
    snap, ctx = load_snapshot(DATA / "market.yaml")
    cat = load_catalog()
    pools = {p.id: p for p in snap.pools}
    assert list(pools) == ["qingpu/H100", "zhongwei/H20", "zhongwei/910B"]
    # Aliases resolve to catalogue names: h20 → H20, 910b → Ascend 910B.
    assert [p.gpu for p in snap.pools] == ["H100", "H20", "Ascend 910B"]
    # Speed defaults to the training speed factor of the card (H100 = 1.0).
    assert pools["qingpu/H100"].speed == 1.0
    assert pools["zhongwei/H20"].speed == speed_factor(cat.accelerators["H20"])
    # Defaults: Ethernet, 8 GPUs per node; total_gpus when given (else the free GPUs).
    assert pools["zhongwei/H20"].fabric is Fabric.ETHERNET
    assert pools["zhongwei/910B"].fabric is Fabric.ROCE
    assert pools["zhongwei/910B"].size_gpus == 64
    assert pools["zhongwei/H20"].size_gpus == 32
    assert {p.gpus_per_node for p in snap.pools} == {8}
    sites = snap.sites
    assert sites["qingpu"].wan_gbps == 40.0
    assert sites["zhongwei"].wan_gbps == 10.0  # default
    assert sites["zhongwei"].name == "zhongwei"  # name defaults to the id
    assert (sites["zhongwei"].lat, sites["zhongwei"].lon) == (37.51, 105.19)
    jobs = {j.id: j for j in snap.jobs}
    assert jobs["finetune-1"].origin_city == "Shanghai"  # 上海
    assert jobs["train-1"].deadline_h == 24.0
    assert jobs["cheap-1"].deadline_h is None
    (svc,) = snap.services
    assert svc.model == "Llama-3.1-8B"  # llama3.1-8b
    assert dict(svc.demand_rps) == {"Shanghai": 20.0, "Hangzhou": 5.0}
    (voucher,) = snap.vouchers
    assert voucher.eligible_provinces == frozenset({"Shanghai"})
    assert voucher.eligible_sites is None
    assert (voucher.coverage, voucher.budget_cny, voucher.per_buyer_cap_cny) == (0.3, 2000, 500)
    assert snap.rules.fee_rate == 0.02
    assert snap.rules.service_horizon_h == 0.25  # default
    assert "Shanghai" in ctx.cities and "H100" in ctx.accelerators


def test_a_file_written_before_token_bids_keeps_its_meaning() -> None:
    # market.yaml bids per output token only: no input bids, no cache, no replica bounds.
    snap, _ = load_snapshot(DATA / "market.yaml")
    (s,) = snap.services
    assert (s.bid_cny_per_m_input_tokens, s.bid_cny_per_m_cached_input_tokens) == (0, 0)
    assert (s.cached_fraction, s.min_replicas, s.max_replicas) == (0.0, 0, None)
    assert value_cny_per_rps_hour(s) == pytest.approx(
        s.bid_cny_per_m_output_tokens * s.output_tokens * 3600 / 1e6
    )


def test_token_bids_and_replica_bounds_load(tmp_path: Path) -> None:
    extra = (
        ", bid_cny_per_m_input_tokens: 2, bid_cny_per_m_cached_input_tokens: 0.5,"
        " cached_fraction: 0.563, min_replicas: 1, max_replicas: 4"
    )
    snap, _ = load_snapshot(write(tmp_path, SITE + POOL + svc(extra)))
    (s,) = snap.services
    assert (s.bid_cny_per_m_input_tokens, s.bid_cny_per_m_cached_input_tokens) == (2, 0.5)
    assert (s.cached_fraction, s.min_replicas, s.max_replicas) == (0.563, 1, 4)
    # 12,000 × 0.437 × 2 + 12,000 × 0.563 × 0.5 + 343 × 8 = 16,610 yuan per million requests.
    assert value_cny_per_rps_hour(s) == pytest.approx(0.016610 * 3600)


def test_json_and_yaml_fixtures_are_the_same_market() -> None:
    from_yaml, _ = load_snapshot(DATA / "market.yaml")
    from_json, _ = load_snapshot(DATA / "market.json")
    assert from_json == from_yaml


@pytest.mark.parametrize(
    ("free_share", "expect"),
    [
        (1.0, lambda nodes: nodes),  # every whole node free
        (0.5, lambda nodes: int(nodes * 0.5)),  # half the nodes, rounded down
        (0.0, lambda nodes: 0),
    ],
)
def test_fleet_pools_with_free_share(tmp_path: Path, free_share: float, expect) -> None:
    snap, _ = load_snapshot(write(tmp_path, f"fleet: china-2025\nfree_share: {free_share}\n"))
    fleet = load_fleet("china-2025")
    assert len(snap.pools) == len(fleet.pools)
    assert set(snap.sites) == set(fleet.sites)
    for state in snap.pools:
        pool = fleet.pools[state.id]
        assert state.free_gpus == expect(pool.nodes) * pool.gpus_per_node
        assert state.size_gpus == pool.gpu_count
        assert state.reserve_cny_per_gpu_hour == pool.reserve_cny_per_gpu_hour


def test_pools_may_sit_on_fleet_sites(tmp_path: Path) -> None:
    site = sorted(load_fleet("china-2025").sites)[0]
    text = (
        "fleet: china-2025\n"
        "pools:\n"
        f"  - {{id: mine, site_id: {site}, gpu: H20, free_gpus: 16,"
        " reserve_cny_per_gpu_hour: 2}\n"
    )
    snap, _ = load_snapshot(write(tmp_path, text))
    # Listing pools replaces the fleet's pools; the fleet still supplies the sites.
    assert [p.id for p in snap.pools] == ["mine"]
    assert site in snap.sites


# (case, file text, words the message must contain)
BAD_FILES: list[tuple[str, str, list[str]]] = [
    (
        "yaml syntax",
        SITE + POOL + "jobs: [ {id: j\n",
        ["market.yaml:", "invalid YAML"],
    ),
    (
        "unknown field",
        SITE + POOL + "jobs:\n" + JOB.replace("gpus: 8", "gpus: 8, gpu_count: 8"),
        ["jobs.0.gpu_count", "Extra inputs are not permitted"],
    ),
    (
        "negative gpus",
        SITE + POOL + "jobs:\n" + JOB.replace("gpus: 8", "gpus: -8"),
        ["jobs.0.gpus", "greater than 0"],
    ),
    (
        "negative free GPUs",
        SITE + POOL.replace("free_gpus: 8", "free_gpus: -1"),
        ["pools.0.free_gpus", "greater than or equal to 0"],
    ),
    (
        "unknown city, with a suggestion",
        SITE + POOL + "jobs:\n" + JOB.replace("origin_city: Shanghai", "origin_city: Shanghia"),
        ["jobs.0.origin_city (j): unknown city 'Shanghia'", "did you mean", "Shanghai"],
    ),
    (
        "unknown GPU",
        SITE + POOL.replace("gpu: H100", "gpu: H1000"),
        ["pools.0.gpu (p): unknown accelerator 'H1000'", "H100"],
    ),
    (
        "unknown model",
        SITE
        + POOL
        + "services:\n  - {id: s1, buyer: a, model: llama-9000, demand_rps: {Shanghai: 1},\n"
        "     prompt_tokens: 100, output_tokens: 10, ttft_ms: 2000, tpot_ms: 100,\n"
        "     bid_cny_per_m_output_tokens: 8}\n",
        ["services.0.model (s1): unknown model 'llama-9000'"],
    ),
    (
        "negative demand",
        SITE
        + POOL
        + "services:\n  - {id: s1, buyer: a, model: llama3.1-8b, demand_rps: {Shanghai: -1},\n"
        "     prompt_tokens: 100, output_tokens: 10, ttft_ms: 2000, tpot_ms: 100,\n"
        "     bid_cny_per_m_output_tokens: 8}\n",
        ["services.0.demand_rps", "demand for 'Shanghai' must be a number ≥ 0"],
    ),
    (
        "voucher coverage of 100%",
        SITE + POOL + "vouchers:\n  - {id: v, coverage: 1.0, budget_cny: 10}\n",
        ["vouchers.0.coverage", "less than 1"],
    ),
    (
        "pool on an unknown site",
        SITE + POOL.replace("site_id: s", "site_id: nowhere"),
        ["pools.0 (p)", "site 'nowhere'", "not in `sites` or the fleet"],
    ),
    (
        "cached fraction above 1",
        SITE + POOL + svc(", cached_fraction: 1.2"),
        ["services.0.cached_fraction", "less than or equal to 1"],
    ),
    (
        "negative input bid",
        SITE + POOL + svc(", bid_cny_per_m_input_tokens: -2"),
        ["services.0.bid_cny_per_m_input_tokens", "greater than or equal to 0"],
    ),
    (
        "max replicas below min",
        SITE + POOL + svc(", min_replicas: 3, max_replicas: 2"),
        ["services.0", "max_replicas (2) is below min_replicas (3)"],
    ),
    (
        "no replicas at all",
        SITE + POOL + svc(", max_replicas: 0"),
        ["services.0.max_replicas", "greater than or equal to 1"],
    ),
    ("no pools", SITE, ["no pools", "fleet: china-2025"]),
    ("unknown fleet", "fleet: atlantis\n", ["unknown fleet 'atlantis'"]),
    ("a list, not a mapping", "- 1\n- 2\n", ["(top level)", "valid dictionary"]),
    ("empty file", "", ["market.yaml: the file is empty"]),
    ("latitude off the globe", SITE.replace("lat: 31.15", "lat: 131.15") + POOL, ["sites.0.lat"]),
]


@pytest.mark.parametrize(("text", "words"), [pytest.param(*c[1:], id=c[0]) for c in BAD_FILES])
def test_bad_file_says_what_and_where(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(InvalidInput) as info:
        load_snapshot(write(tmp_path, text))
    message = str(info.value)
    for word in words:
        assert word in message, message


def test_yaml_error_points_at_the_line(tmp_path: Path) -> None:
    # The unclosed flow mapping opens on line 5; YAML reports where it noticed (line 6).
    path = write(tmp_path, SITE + POOL + "jobs: [ {id: j\n")
    with pytest.raises(InvalidInput, match=r"market\.yaml:\d+:\d+: invalid YAML"):
        load_snapshot(path)


def test_json_error_points_at_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"pools": [\n  {"id": "p",}\n]}\n', name="market.json")
    with pytest.raises(InvalidInput, match=r"market\.json:2:\d+: invalid JSON"):
        load_snapshot(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        load_snapshot(tmp_path / "absent.yaml")


def test_unknown_name_carries_suggestions(tmp_path: Path) -> None:
    text = SITE + POOL + "jobs:\n" + JOB.replace("origin_city: Shanghai", "origin_city: Bejing")
    with pytest.raises(UnknownName) as info:
        load_snapshot(write(tmp_path, text))
    assert info.value.kind == "city"
    assert "Beijing" in info.value.suggestions
