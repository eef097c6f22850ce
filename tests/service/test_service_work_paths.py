"""A job's ``working_dir`` and ``checkpoint.dir`` are paths inside the site's runs root.

An absolute path or one that climbs out with ``..`` would let a buyer's job run in (or
write to) any place on the seller's machine: both are refused at submit (422, the field
named). A relative path reaches the site's agent as given.
"""

from __future__ import annotations

from typing import Any

import pytest

SPEC: dict[str, Any] = {
    "name": "t",
    "command": "run",
    "resources": {"gpus": 8},
    "work_ref_gpu_hours": 16,
    "bid_cny_per_ref_gpu_hour": 20,
    "data": {"origin_city": "Shanghai"},
}
BAD = ["/etc", "/", "..", "../x", "src/../../x", "a/..", "./..", "a//../.."]


@pytest.mark.parametrize("path", BAD)
def test_a_working_dir_outside_the_runs_root_is_refused(module_exchange: Any, path: str) -> None:
    buyer = module_exchange.tenant(f"wd-{BAD.index(path)}", "buyer")
    r = module_exchange.post("/v1/jobs", buyer, {**SPEC, "working_dir": path})
    assert r.status_code == 422, r.text
    [err] = r.json()["errors"]
    assert err["field"] == "body.working_dir"
    assert "inside the site's runs root" in err["reason"]


@pytest.mark.parametrize("path", BAD)
def test_a_checkpoint_dir_outside_the_runs_root_is_refused(module_exchange: Any, path: str) -> None:
    buyer = module_exchange.tenant(f"ck-{BAD.index(path)}", "buyer")
    spec = {**SPEC, "checkpoint": {"every_h": 0.5, "dir": path}}
    r = module_exchange.post("/v1/jobs", buyer, spec)
    assert r.status_code == 422, r.text
    [err] = r.json()["errors"]
    assert err["field"] == "body.checkpoint.dir"


def test_relative_paths_reach_the_lease(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    seller = x.tenant("dc", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=1000)
    x.market(seller)
    x.job(buyer, working_dir="src/train", checkpoint={"every_h": 0.5, "dir": "ckpt/..x"})
    x.clear()
    [lease] = x.post("/v1/agent/leases", seller, {}).json()
    assert (lease["working_dir"], lease["checkpoint_dir"]) == ("src/train", "ckpt/..x")
