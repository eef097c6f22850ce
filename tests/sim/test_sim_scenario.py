"""Scenario files: built-ins load, `extends` merges, mistakes are named."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from suanli.errors import InvalidInput, UnknownName
from suanli.sim.scenario import builtin_scenarios, load_scenario
from suanli.sim.world import build_world


def test_the_builtin_scenarios_ship_and_load() -> None:
    names = builtin_scenarios()
    assert {"china-2025", "deepseek-shift", "vouchers", "outage"} <= set(names)
    for name in names:
        sc = load_scenario(name)
        assert sc.name == name
        assert sc.fleet.params_file is None  # built-ins never need files outside the package


def test_extends_merges_tables_and_replaces_lists(tmp_path: Path) -> None:
    f = tmp_path / "more-h20.toml"
    f.write_text(
        'extends = "china-2025"\nname = "more-h20"\n[batch]\njobs_per_hour = 7\n'
        '[[fleet.add_pools]]\nsite = "qy-new"\ngpu = "H20"\ngpus = 10000\n'
        '[[fleet.add_sites]]\nid = "qy-new"\ncluster = "qingyang"\n',
        encoding="utf-8",
    )
    base, sc = load_scenario("china-2025"), load_scenario(str(f))
    assert sc.batch.jobs_per_hour == 7
    # the rest of [batch] and the services come from the parent
    assert sc.batch.bid_median_cny_per_ref_gpu_hour == base.batch.bid_median_cny_per_ref_gpu_hour
    assert [s.id for s in sc.inference.services] == [s.id for s in base.inference.services]
    w0, w1 = build_world(base), build_world(sc)
    assert int(w1.capacity_gpus.sum()) == int(w0.capacity_gpus.sum()) + 10000
    pool = w1.fleet.pools["qy-new/h20"]  # type: ignore[index]
    assert pool.gpu_count == 10000
    assert w1.pool_hub[w1.pool_ids.index("qy-new/h20")] == "gansu"


SVC = (
    'name = "x"\n[[inference.services]]\nid = "s"\nmodel = "Qwen2.5-7B"\nttft_ms = 2000\n'
    "tpot_ms = 80\nbid_cny_per_m_output_tokens = 8\nmean_rps = 1\n"
)


def test_token_bids_default_to_output_only_and_load_when_given(tmp_path: Path) -> None:
    f = tmp_path / "bids.toml"
    f.write_text(SVC, encoding="utf-8")
    (old,) = load_scenario(str(f)).inference.services
    assert (old.bid_cny_per_m_input_tokens, old.cached_fraction, old.max_replicas) == (0, 0, None)
    f.write_text(
        SVC + "bid_cny_per_m_input_tokens = 2\nbid_cny_per_m_cached_input_tokens = 0.5\n"
        "cached_fraction = 0.563\nmin_replicas = 1\nmax_replicas = 9\n",
        encoding="utf-8",
    )
    (new,) = load_scenario(str(f)).inference.services
    assert (new.bid_cny_per_m_input_tokens, new.bid_cny_per_m_cached_input_tokens) == (2, 0.5)
    assert (new.cached_fraction, new.min_replicas, new.max_replicas) == (0.563, 1, 9)


def test_shipped_scenarios_bid_per_token_like_a_price_list() -> None:
    for name in ("china-2025", "deepseek-shift"):
        for svc in load_scenario(name).inference.services:
            assert svc.bid_cny_per_m_input_tokens > 0, (name, svc.id)
            assert 0 < svc.bid_cny_per_m_cached_input_tokens < svc.bid_cny_per_m_input_tokens
            assert 0 < svc.cached_fraction < 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\ndays = -1\n', r"days: Input should be greater than 0"),
        ('name = "x"\n[batch]\njobs_per_hour = "many"\n', r"batch\.jobs_per_hour"),
        ('name = "x"\nwho = 1\n', r"who: Extra inputs are not permitted"),
        ('name = "x"\n[sellers]\npolicy = "greedy"\n', r"sellers\.policy"),
        ('name = "x"\n[[outages]]\nstart_h = 1\nduration_h = 2\n', r"exactly one of hub"),
        ('name = "x"\n[[fleet.add_sites]]\nid = "s"\n', r"give either `cluster`"),
        ('name = "x"\nmix = [{day = 3}, {day = 1}]\n', r"increasing `day`"),
        ("name = \n", r"invalid TOML"),
        (SVC + "cached_fraction = 1.5\n", r"cached_fraction: Input should be less than or"),
        (SVC + "min_replicas = 3\nmax_replicas = 2\n", r"max_replicas \(2\) is below min"),
        ('name = "x"\n[inference.estimator]\nheadroom = 0.5\n', r"estimator\.headroom"),
    ],
)
def test_bad_scenarios_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput, match=message):
        load_scenario(str(f))


def test_yaml_scenarios_work_too(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("name: y\nextends: china-2025\ndays: 2\n", encoding="utf-8")
    sc = load_scenario(str(f))
    assert (sc.name, sc.days) == ("y", 2)


def test_unknown_names() -> None:
    with pytest.raises(UnknownName, match="china-2025"):
        load_scenario("china-2024")


def test_a_pool_at_an_unknown_site_is_named(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(
        'name = "s"\n[[fleet.add_pools]]\nsite = "nowhere"\ngpu = "H20"\ngpus = 8\n',
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput, match=r"add_pools\.0: site 'nowhere'"):
        build_world(load_scenario(str(f)))


def test_extends_loops_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('name = "a"\nextends = "b.toml"\n', encoding="utf-8")
    (tmp_path / "b.toml").write_text('name = "b"\nextends = "a.toml"\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match="loops"):
        load_scenario(str(tmp_path / "a.toml"))


def test_a_custom_fleet_parameters_file(tmp_path: Path) -> None:
    text = resources.files("suanli.catalog").joinpath("data/fleet_china_2025.toml").read_text()
    raw = tomllib.loads(text)
    first = raw["locations"][0]
    # keep only the first location of the built-in fleet: its sites and nothing else
    cut = text[: text.index("[[locations]]")] + (
        f'[[locations]]\nid = "{first["id"]}"\nprofile = "{first["profile"]}"\nsites = 2\n'
        + (f'cluster = "{first["cluster"]}"\n' if "cluster" in first else "")
    )
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(cut, encoding="utf-8")
    sc = tmp_path / "small.toml"
    sc.write_text(
        'name = "small"\n[fleet]\nparams_file = "fleet.toml"\nseed = 4\n', encoding="utf-8"
    )
    world = build_world(load_scenario(str(sc)))
    assert sorted(world.fleet.sites) == [f"{first['id']}-01", f"{first['id']}-02"]
    assert len(world.pool_ids) >= 2


def test_a_broken_fleet_parameters_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "fleet.toml").write_text('name = "x"\n', encoding="utf-8")
    sc = tmp_path / "s.toml"
    sc.write_text('name = "s"\n[fleet]\nparams_file = "fleet.toml"\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"fleet\.params_file: .*fleet\.toml"):
        build_world(load_scenario(str(sc)))
