"""Routing order: the city's plan first (weights, least loaded), then fallbacks by RTT."""

from __future__ import annotations

from collections import Counter

from suanli.gateway.routing import Load, candidates

from .conftest import replica, route, service

NOTHING = Load({}, {})


def never(rid: str) -> bool:
    return False


def order(svc, city="Shanghai", load=NOTHING, excluded=never) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.rid for c in candidates(svc, city, load, excluded)]


def two_pools_and_fallback():  # type: ignore[no-untyped-def]
    reps = [
        replica("a1", "http://a1", pool="A"),
        replica("a2", "http://a2", pool="A"),
        replica("b1", "http://b1", pool="B"),
        replica("f1", "http://f1", pool="F"),
        replica("g1", "http://g1", pool="G"),
    ]
    routes = {
        "Shanghai": [route("A", 3.0, 4), route("B", 1.0, 9), route("G", 0, 30), route("F", 0, 12)],
        "*": [route("G", 1.0, 1)],
    }
    return service(reps, routes)


def test_city_routes_in_plan_first_then_fallbacks_by_rtt() -> None:
    svc = two_pools_and_fallback()
    got = order(svc)
    assert set(got[:2]) == {"a1", "a2"} and got[2] == "b1"
    assert got[3:] == ["f1", "g1"]  # fallbacks: F (12 ms) before G (30 ms)


def test_a_city_without_routes_uses_the_star_routes() -> None:
    assert order(two_pools_and_fallback(), city="Harbin") == ["g1"]


def test_in_flight_per_unit_of_weight_picks_the_pool() -> None:
    svc = two_pools_and_fallback()
    # A (weight 3) has 4 in flight = 1.33/weight; B (weight 1) has 1 = 1/weight → B first
    load = Load({"a1": 2, "a2": 2, "b1": 1}, {})
    assert order(svc, load=load)[0] == "b1"
    load = Load({"a1": 1, "a2": 1, "b1": 1}, {})  # A 0.67 < B 1 → A
    assert order(svc, load=load)[0] in {"a1", "a2"}


def test_sequential_requests_follow_the_weights() -> None:
    svc = two_pools_and_fallback()
    picks: dict[str, int] = {}
    chosen: Counter[str] = Counter()
    for _ in range(400):
        first = candidates(svc, "Shanghai", Load({}, picks), never)[0]
        picks[first.replica.pool_id] = picks.get(first.replica.pool_id, 0) + 1
        chosen[first.replica.pool_id] += 1
    assert chosen == {"A": 300, "B": 100}


def test_least_loaded_replica_first_within_a_pool() -> None:
    svc = two_pools_and_fallback()
    assert order(svc, load=Load({"a1": 2, "b1": 1}, {}))[:3] == ["a2", "a1", "b1"]


def test_unhealthy_starting_and_excluded_replicas_are_left_out() -> None:
    reps = [
        replica("a1", "http://a1", pool="A", health="unhealthy"),
        replica("a2", "http://a2", pool="A", health="starting"),
        replica("a3", "http://a3", pool="A", health="healthy"),
        replica("a4", "http://a4", pool="A"),  # not probed yet: usable
    ]
    svc = service(reps, {"*": [route("A", 1.0)]})
    assert sorted(order(svc)) == ["a3", "a4"]
    assert order(svc, excluded=lambda rid: rid == "a3") == ["a4"]


def test_a_service_without_routes_offers_its_usable_replicas() -> None:
    svc = service([replica("a1", "http://a1"), replica("a2", "http://a2")], routes={})
    assert sorted(order(svc)) == ["a1", "a2"]


def beyond_the_slo(star_rtt: tuple[float, float] = (0.0, 0.0)):  # type: ignore[no-untyped-def]
    """Shanghai's routes list A (planned) and F (fallback); X and Y are only in ``"*"``."""
    reps = [
        replica("x1", "http://x1", pool="X"),
        replica("y1", "http://y1", pool="Y", mc=4),
        replica("a1", "http://a1", pool="A"),
        replica("f1", "http://f1", pool="F"),
    ]
    star = [route("A", 1.0, 0), route("X", 0, star_rtt[0]), route("Y", 0, star_rtt[1])]
    routes = {"Shanghai": [route("A", 1.0, 4), route("F", 0, 12)], "*": [*star, route("F", 0)]}
    return service(reps, routes)


def test_last_resorts_come_after_the_citys_routes_and_are_flagged() -> None:
    found = candidates(beyond_the_slo(), "Shanghai", NOTHING, never)
    assert [c.rid for c in found[:2]] == ["a1", "f1"]
    assert {c.rid for c in found[2:]} == {"x1", "y1"}
    assert [c.last_resort for c in found] == [False, False, True, True]
    assert [c.in_plan for c in found] == [True, False, False, False]


def test_last_resorts_by_rtt_when_known_else_least_loaded() -> None:
    svc = beyond_the_slo()
    # RTT not known (0, as the exchange writes it in "*"): x1 2/8 loaded, y1 2/4
    assert order(svc, load=Load({"x1": 2, "y1": 2}, {}))[2:] == ["x1", "y1"]
    assert order(svc, load=Load({"x1": 4, "y1": 1}, {}))[2:] == ["y1", "x1"]
    near_y = beyond_the_slo(star_rtt=(30.0, 10.0))
    assert order(near_y, load=Load({"y1": 3}, {}))[2:] == ["y1", "x1"]


def test_last_resorts_leave_out_unusable_replicas() -> None:
    svc = beyond_the_slo()
    assert order(svc, excluded=lambda rid: rid in {"a1", "x1"}) == ["f1", "y1"]


def test_a_city_on_the_star_routes_has_no_last_resorts() -> None:
    found = candidates(beyond_the_slo(), "Harbin", NOTHING, never)
    assert sorted(c.rid for c in found) == ["a1", "f1", "x1", "y1"]
    assert not any(c.last_resort for c in found)
