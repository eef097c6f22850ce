"""The shipped catalogue data: facts from DESIGN.md, integrity, and loader validation."""

from __future__ import annotations

from importlib import resources
from statistics import mean

import pytest

from suanli.catalog import build_catalog, load_catalog
from suanli.catalog._load import CHINA_LAT, CHINA_LON, FILES
from suanli.domain import Region, Vendor
from suanli.errors import DataError

CAT = load_catalog()


def _texts() -> dict[str, str]:
    data = resources.files("suanli.catalog").joinpath("data")
    return {name: data.joinpath(name).read_text(encoding="utf-8") for name in FILES}


# --- accelerators -----------------------------------------------------------------------

# name, dense BF16 TFLOPS, memory GB, memory TB/s, TDP W — the DESIGN.md facts.
ACCELERATOR_FACTS = [
    ("H100", 989, 80, 3.35, 700),
    ("H800", 989, 80, 3.35, 700),
    ("H20", 148, 96, 4.0, 400),
    ("H200", 989, 141, 4.8, 700),
    ("A100-80G", 312, 80, 2.039, 400),  # DESIGN rounds 2.039 to 2.04
    ("A800", 312, 80, 2.039, 400),
    ("L20", 119.5, 48, 0.864, 275),
    ("L40S", 362, 48, 0.864, 350),
    ("RTX 4090", 165.2, 24, 1.008, 450),  # DESIGN: 165
    ("Ascend 910B", 320, 64, 1.6, 400),
    ("Ascend 910C", 780, 128, 3.2, None),  # DESIGN gives no TDP for 910C
    ("MLU370-X8", 96, 48, 0.614, 250),
]


@pytest.mark.parametrize(("name", "bf16", "mem_gb", "bw_tbps", "tdp_w"), ACCELERATOR_FACTS)
def test_accelerator_matches_design_facts(
    name: str, bf16: float, mem_gb: float, bw_tbps: float, tdp_w: float | None
) -> None:
    acc = CAT.accelerators[name]
    assert acc.bf16_tflops == pytest.approx(bf16)
    assert acc.mem_gb == mem_gb
    assert acc.mem_bw_tbps == pytest.approx(bw_tbps)
    if tdp_w is not None:
        assert acc.tdp_w == tdp_w


@pytest.mark.parametrize(
    ("name", "fp8_tflops"),
    [
        ("H100", 1979),  # 2 × 989.5 dense BF16
        ("H800", 1979),
        ("H200", 1979),
        ("H20", 296),  # 2 × 148
        ("L20", 239),  # 2 × 119.5
        ("L40S", 733),  # ≈ 2 × 362 (datasheet rounds)
        ("RTX 4090", 330.3),  # 2 × 165.2 with FP32 accumulate
        ("A100-80G", None),  # Ampere has no FP8
        ("A800", None),
        ("Ascend 910B", None),
        ("MLU370-X8", None),
    ],
)
def test_fp8_only_where_the_chip_has_it(name: str, fp8_tflops: float | None) -> None:
    assert CAT.accelerators[name].fp8_tflops == fp8_tflops


@pytest.mark.parametrize(
    ("name", "link_gbps"),
    [
        ("H100", 900),  # NVLink 4
        ("H200", 900),
        ("H20", 900),
        ("H800", 400),  # NVLink cut for export
        ("A100-80G", 600),  # NVLink 3
        ("A800", 400),
        ("L40S", 64),  # PCIe Gen4 x16, both directions
        ("Ascend 910B", 392),  # HCCS
        ("MLU370-X8", 200),  # MLU-Link
    ],
)
def test_interconnect(name: str, link_gbps: float) -> None:
    assert CAT.accelerators[name].interconnect_gbps == link_gbps


def test_estimates_are_flagged_and_domestic_chips_marked() -> None:
    accs = CAT.accelerators
    assert accs["Ascend 910C"].estimate  # ≈780 TFLOPS is an analyst estimate
    assert accs["Ascend 910B"].estimate  # DESIGN marks its figures ≈
    assert not accs["H100"].estimate  # straight from the NVIDIA datasheet
    domestic = {a.name for a in accs.values() if a.domestic}
    assert domestic == {"Ascend 910B", "Ascend 910C", "MLU370-X8"}
    assert {a.vendor for a in accs.values()} == set(Vendor)


# --- LLM models -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kv_elems"),
    [
        ("DeepSeek-V3", 576),  # MLA: 512 latent + 64 rope key, not 2·128·128
        ("DeepSeek-R1", 576),
        ("DeepSeek-R1-Distill-Qwen-32B", 2048),  # 2 · 8 kv heads · 128
        ("Qwen2.5-72B", 2048),  # 2 · 8 · 128
        ("Qwen2.5-7B", 1024),  # 2 · 4 · 128
        ("Llama-3.1-8B", 2048),  # 2 · 8 · 128
        ("Llama-3.1-70B", 2048),  # 2 · 8 · 128
        ("Llama-2-70B", 2048),  # 2 · 8 · 128
    ],
)
def test_kv_elements_per_token_per_layer(name: str, kv_elems: int) -> None:
    assert CAT.models[name].kv_elems_per_token_per_layer == kv_elems


def test_kv_formula_holds_for_every_standard_attention_model() -> None:
    mla = {"DeepSeek-V3", "DeepSeek-R1"}
    for m in CAT.models.values():
        if m.name not in mla:
            assert m.kv_elems_per_token_per_layer == 2 * m.kv_heads * m.head_dim, m.name


@pytest.mark.parametrize(
    ("name", "kv_bytes_per_token"),
    [
        ("Llama-3.1-70B", 327_680),  # 2 · 80 layers · 8 · 128 · 2 bytes
        ("Llama-3.1-8B", 131_072),  # 2 · 32 · 8 · 128 · 2
        ("Qwen2.5-7B", 57_344),  # 2 · 28 · 4 · 128 · 2
        ("DeepSeek-V3", 70_272),  # 61 layers · 576 · 2 bytes
    ],
)
def test_kv_bytes_per_token(name: str, kv_bytes_per_token: int) -> None:
    m = CAT.models[name]
    assert m.layers * m.kv_elems_per_token_per_layer * m.kv_bytes_per_elem == kv_bytes_per_token


def test_model_shapes() -> None:
    v3 = CAT.models["DeepSeek-V3"]
    assert (v3.total_params_b, v3.active_params_b, v3.layers, v3.hidden) == (671, 37, 61, 7168)
    assert v3.is_moe
    assert not CAT.models["Llama-3.1-70B"].is_moe
    # DeepSeek-V3/R1 ship FP8 weights (1 byte); every other model here BF16 (2 bytes)
    fp8 = {m.name for m in CAT.models.values() if m.weight_bytes_per_param == 1.0}
    assert fp8 == {"DeepSeek-V3", "DeepSeek-R1"}
    assert all(m.weight_bytes_per_param in (1.0, 2.0) for m in CAT.models.values())


# --- hubs, clusters, cities, power ------------------------------------------------------


def test_eight_hubs_three_east() -> None:
    assert set(CAT.hubs) == {
        "jingjinji", "yangtze", "gba", "chengyu", "guizhou", "inner-mongolia", "gansu", "ningxia",
    }  # fmt: skip
    east = {h.id for h in CAT.hubs.values() if h.region is Region.EAST}
    assert east == {"jingjinji", "yangtze", "gba"}
    # NDRC: clusters in the 4 demand hubs PUE ≤ 1.25, in the 4 western hubs ≤ 1.2
    targets = {h.id: h.pue_target for h in CAT.hubs.values()}
    assert sorted(targets.values()) == [1.2] * 4 + [1.25] * 4


def test_ten_clusters_each_in_its_hub() -> None:
    assert len(CAT.clusters) == 10
    per_hub = {h: sorted(c.id for c in CAT.clusters.values() if c.hub_id == h) for h in CAT.hubs}
    assert per_hub["yangtze"] == ["wuhu", "yangtze-demo-zone"]
    assert per_hub["chengyu"] == ["chongqing", "tianfu"]
    # the other 6 hubs hold one cluster each: 2 + 2 + 6 = 10
    assert all(len(v) == 1 for k, v in per_hub.items() if k not in ("yangtze", "chengyu"))
    for c in CAT.clusters.values():
        assert c.province in CAT.hubs[c.hub_id].provinces


@pytest.mark.parametrize(
    ("cluster_id", "pue", "estimate"),
    [("zhongwei", 1.1, False), ("qingyang", 1.07, False), ("zhangjiakou", 1.25, True)],
)
def test_cluster_pue(cluster_id: str, pue: float, estimate: bool) -> None:
    c = CAT.clusters[cluster_id]
    assert (c.pue, c.estimate) == (pue, estimate)


def test_at_least_30_cities_with_weights() -> None:
    assert len(CAT.cities) >= 30
    assert all(c.demand_weight > 0 and c.weight_source for c in CAT.cities.values())
    top = max(CAT.cities.values(), key=lambda c: c.demand_weight)
    assert top.name == "Shanghai"  # the largest city economy in 2023


def test_every_coordinate_is_inside_china() -> None:
    points = [*CAT.hubs.values(), *CAT.clusters.values(), *CAT.cities.values()]
    for p in points:
        assert CHINA_LAT[0] <= p.lat <= CHINA_LAT[1], p
        assert CHINA_LON[0] <= p.lon <= CHINA_LON[1], p


def test_every_row_names_its_source() -> None:
    sourced = [*CAT.accelerators.values(), *CAT.models.values(), *CAT.hubs.values()]
    sourced += [*CAT.clusters.values(), *CAT.power.values()]
    assert all(row.source.strip() for row in sourced)


def test_every_province_used_has_a_power_price_in_its_region() -> None:
    for c in CAT.cities.values():
        assert CAT.power[c.province].region is c.region, c.name
    for h in CAT.hubs.values():
        assert all(p in CAT.power for p in h.provinces)


def test_power_prices_follow_the_reported_figures() -> None:
    p = CAT.power
    assert p["Ningxia"].price_cny_per_kwh == 0.36  # Zhongwei
    assert p["Inner Mongolia"].price_cny_per_kwh == 0.38  # Hohhot
    assert p["Gansu"].price_cny_per_kwh == 0.40  # Qingyang
    east = [x for x in p.values() if x.region is Region.EAST]
    west = [x for x in p.values() if x.region is Region.WEST]
    # the eastern figures are an assumption inside the 0.6–0.9 range, flagged as such
    assert all(0.6 <= x.price_cny_per_kwh <= 0.9 and x.estimate for x in east)
    # "west ≈30% cheaper": mean west 0.48 / mean east 0.71 ≈ 0.68
    assert (
        0.6
        <= mean(x.price_cny_per_kwh for x in west) / mean(x.price_cny_per_kwh for x in east)
        <= 0.75
    )


# --- loader ---------------------------------------------------------------------------


def test_load_catalog_is_cached_and_read_only() -> None:
    assert load_catalog() is load_catalog()
    with pytest.raises(TypeError):
        CAT.hubs["x"] = CAT.hubs["gansu"]  # type: ignore[index]


def _broken(file: str, old: str, new: str) -> dict[str, str]:
    texts = _texts()
    assert old in texts[file]  # the fixture still matches the data
    texts[file] = texts[file].replace(old, new, 1)
    return texts


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("accelerators.csv", "H800,H800 SXM|H800 SXM5|H800 80GB,nvidia,989",
         "H800,H800 SXM|H800 SXM5|H800 80GB,nvidia,lots", r"accelerators.csv:3: .*'bf16_tflops'"),
        ("accelerators.csv", "nvidia,989,1979,80,3.35,900,700,false",
         "nvidia,989,1979,80,3.35,900,700,maybe", r"accelerators.csv:2: .*'domestic'"),
        ("accelerators.csv", "H800,H800 SXM|", "H100,H800 SXM|", r"accelerators.csv:3: duplicate"),
        ("accelerators.csv", "H800,H800 SXM|", "H800,H100 SXM|", r"accelerators.csv:3: .*already"),
        ("models.csv", "meta-llama/Llama-3.1-8B config.json and The Llama 3 Herd of Models (BF16)",
         " ",
         r"models.csv:7: column 'source' is empty"),
        ("clusters.csv", "wuhu,Wuhu cluster|芜湖,Wuhu,芜湖数据中心集群,yangtze",
         "wuhu,Wuhu cluster|芜湖,Wuhu,芜湖数据中心集群,atlantis", r"clusters.csv:4: hub_id"),
        ("cities.csv", "Beijing,北京,Beijing,east,39.90,116.41",
         "Beijing,北京,Beijing,east,39.90,-116.41", r"cities.csv:3: .*positive"),
        ("cities.csv", "Beijing,北京,Beijing,east,39.90,116.41",
         "Beijing,北京,Beijing,east,39.90,16.41", r"cities.csv:3: coordinates"),
        ("cities.csv", "Beijing,北京,Beijing,east", "Beijing,北京,Peking,east",
         r"cities.csv:3: province 'Peking' has no row"),
        ("hubs.csv", "id,aliases", "ident,aliases", r"hubs.csv:1: header"),
        ("power_prices.csv", "Tianjin,天津,east,0.70", "Tianjin,天津,north,0.70",
         r"power_prices.csv:3: column 'region'"),
        ("power_prices.csv", "Tianjin,天津,east,0.70,1.35,", "Tianjin,天津,east,0.70,",
         r"power_prices.csv:3: expected 7 columns"),
    ],
)  # fmt: skip
def test_bad_rows_raise_data_error_naming_file_and_line(
    file: str, old: str, new: str, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        build_catalog(_broken(file, old, new))


def test_missing_file_is_a_data_error() -> None:
    texts = _texts()
    del texts["models.csv"]
    with pytest.raises(DataError, match=r"models\.csv: missing"):
        build_catalog(texts)
