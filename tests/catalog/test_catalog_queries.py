"""Catalogue lookups: case-insensitive, aliases, and UnknownName with suggestions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.catalog import (
    accelerator,
    city,
    cluster,
    clusters_in,
    hub,
    load_catalog,
    model,
    normalize_name,
    power,
)
from suanli.errors import InvalidInput, UnknownName

CAT = load_catalog()


def _key(value: Any) -> str:
    for attr in ("id", "name", "province"):
        if hasattr(value, attr):
            return str(getattr(value, attr))
    raise AssertionError(value)


@pytest.mark.parametrize(
    ("lookup", "query", "expected"),
    [
        (accelerator, "H100", "H100"),
        (accelerator, "h100", "H100"),
        (accelerator, "H100 SXM", "H100"),
        (accelerator, "h100-sxm5", "H100"),
        (accelerator, "910b", "Ascend 910B"),
        (accelerator, "ASCEND 910C", "Ascend 910C"),
        (accelerator, "a100", "A100-80G"),
        (accelerator, "4090", "RTX 4090"),
        (accelerator, "mlu370", "MLU370-X8"),
        (model, "deepseek-r1", "DeepSeek-R1"),
        (model, "DeepSeek-V3", "DeepSeek-V3"),
        (model, "deepseek v3", "DeepSeek-V3"),
        (model, "Qwen/Qwen2.5-72B-Instruct", "Qwen2.5-72B"),
        (model, "llama3.1-8b", "Llama-3.1-8B"),
        (model, "llama2-70b", "Llama-2-70B"),
        (hub, "gansu", "gansu"),
        (hub, "甘肃", "gansu"),
        (hub, "Yangtze River Delta", "yangtze"),
        (hub, "yrd", "yangtze"),
        (hub, "成渝", "chengyu"),
        (hub, "greater bay area", "gba"),
        (hub, "Inner Mongolia", "inner-mongolia"),
        (cluster, "Gui'an", "guian"),
        (cluster, "guian", "guian"),
        (cluster, "贵安", "guian"),
        (cluster, "Horinger (Hohhot)", "horinger"),
        (cluster, "中卫数据中心集群", "zhongwei"),
        (city, "xian", "Xi'an"),
        (city, "西安", "Xi'an"),
        (city, "SHANGHAI", "Shanghai"),
        (power, "宁夏", "Ningxia"),
        (power, "inner mongolia", "Inner Mongolia"),
    ],
)
def test_lookup_finds_canonical_row(
    lookup: Callable[[Any, str], Any], query: str, expected: str
) -> None:
    assert _key(lookup(CAT, query)) == expected


@pytest.mark.parametrize(
    ("lookup", "query", "kind", "suggested"),
    [
        (accelerator, "H1000", "accelerator", "H100"),
        (accelerator, "910", "accelerator", "Ascend 910B"),  # substring match
        (model, "DeepSeek-V4", "model", "DeepSeek-V3"),
        (hub, "gansuu", "hub", "gansu"),
        (cluster, "qingyan", "cluster", "qingyang"),
        (city, "Shanghia", "city", "Shanghai"),
        (power, "Gansoo", "province", "Gansu"),
    ],
)
def test_unknown_name_suggests_nearest(
    lookup: Callable[[Any, str], Any], query: str, kind: str, suggested: str
) -> None:
    with pytest.raises(UnknownName) as err:
        lookup(CAT, query)
    assert err.value.kind == kind
    assert suggested in err.value.suggestions
    assert "did you mean" in str(err.value)
    assert isinstance(err.value, InvalidInput)  # the CLI turns it into exit code 2


def test_unknown_name_without_near_match_lists_valid_names() -> None:
    with pytest.raises(UnknownName) as err:
        hub(CAT, "nope")
    assert err.value.valid == sorted(CAT.hubs)
    for hub_id in CAT.hubs:  # 8 hubs ≤ 12 listed in full
        assert hub_id in str(err.value)


@pytest.mark.parametrize(
    ("hub_name", "cluster_ids"),
    [
        ("yangtze", ["yangtze-demo-zone", "wuhu"]),
        ("Chengdu-Chongqing", ["tianfu", "chongqing"]),
        ("宁夏", ["zhongwei"]),
    ],
)
def test_clusters_in(hub_name: str, cluster_ids: list[str]) -> None:
    assert [c.id for c in clusters_in(CAT, hub_name)] == cluster_ids


def test_hand_built_catalog_without_index_still_resolves_keys() -> None:
    bare = replace(CAT, names={})
    assert accelerator(bare, "ascend 910b").name == "Ascend 910B"
    with pytest.raises(UnknownName):
        accelerator(bare, "910b")  # aliases live only in the index


def test_normalize_name_drops_spelling_noise() -> None:
    assert normalize_name("Gui'an") == normalize_name("GUIAN") == "guian"
    assert normalize_name("H100 SXM") == normalize_name("h100-sxm") == "h100sxm"


@given(
    key=st.sampled_from(sorted(CAT.accelerators)),
    flips=st.lists(st.booleans(), min_size=20, max_size=20),
    pad=st.sampled_from(["", " ", "  ", "-"]),
)
def test_any_casing_and_padding_of_a_name_resolves_to_it(
    key: str, flips: list[bool], pad: str
) -> None:
    mangled = "".join(c.upper() if flips[i % 20] else c.lower() for i, c in enumerate(key))
    assert accelerator(CAT, pad + mangled + pad).name == key
