"""Site agents through the API: registration, heartbeats and the sweep of silent sites,
lease tokens that fence late reports, stop orders, metering, replicas' endpoints.

Market used throughout: agent A's site in Shanghai with one H100 node of 8 GPUs at a
reserve of 10 yuan/GPU-h; agent B's site in Beijing, the same at 12. A job of 8 GPUs and
16 reference GPU-hours runs 16 / (8 × 1.0) = 2 h and lands on A (cheaper); at 10 yuan
the seller gets 10 × 8 × 2 = 160 yuan = 16,000 fen, the fee (2%) is 320 fen.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from suanli.service.agent_session import sweep_silent_sites
from suanli.service.tables import UsageRow

H100_NODE = {"name": "h100", "gpu_model": "H100", "gpu_count": 8, "gpus_per_node": 8}
TIMEOUT_S = 30.0  # the service's default heartbeat timeout


def _register(
    x: Any,
    seller: dict[str, str],
    site: str,
    *,
    city: str | None = "Shanghai",
    reserve: float | None = 10.0,
    pools: list[dict[str, Any]] | None = None,
    held: list[dict[str, str]] | None = None,
) -> Any:
    body: dict[str, Any] = {
        "site_id": site,
        "backend": "local",
        "host": "test-host",
        "pools": [H100_NODE] if pools is None else pools,
        "held": held or [],
    }
    if city is not None:
        body["city"] = city
    if reserve is not None:
        body["reserve_cny_per_gpu_hour"] = reserve
    return x.client.post("/v1/agent/register", headers=seller, json=body)


def _session(x: Any, seller: dict[str, str], site: str, **kw: Any) -> str:
    r = _register(x, seller, site, **kw)
    assert r.status_code == 200, r.text
    return str(r.json()["session"])


def _lease(x: Any, seller: dict[str, str], site: str, session: str, **kw: Any) -> list[Any]:
    body = {"site_id": site, "session": session, "kinds": ["job", "replica"], **kw}
    r = x.client.post("/v1/agent/leases", headers=seller, json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _heartbeat(x: Any, seller: dict[str, str], site: str, session: str, **kw: Any) -> Any:
    body = {"site_id": site, "session": session, **kw}
    return x.client.post("/v1/agent/heartbeat", headers=seller, json=body)


def _report(x: Any, seller: dict[str, str], lease: dict[str, Any], state: str, **kw: Any) -> Any:
    key = kw.pop("key", None)
    body = {
        "allocation_id": lease["allocation_id"],
        "lease_token": lease["lease_token"],
        "state": state,
        **kw,
    }
    return x.post("/v1/agent/reports", seller, body, key=key)


def _sweep(x: Any) -> list[str]:
    return x.rt.db.transact(lambda s: sweep_silent_sites(s, x.clock.now(), TIMEOUT_S))


def _usage_rows(x: Any) -> dict[str, int]:
    with x.rt.db.read() as s:
        rows = s.execute(
            select(UsageRow.allocation_id, func.count()).group_by(UsageRow.allocation_id)
        )
        return {a: int(n) for a, n in rows}


def test_register_creates_the_site_offers_pools_and_says_what_it_skipped(
    sqlite_exchange: Any,
) -> None:
    x = sqlite_exchange
    seller = x.tenant("dc", "seller")
    r = _register(
        x,
        seller,
        "dc-a",
        pools=[
            H100_NODE,
            {"name": "odd", "gpu_model": "H100", "gpu_count": 6, "gpus_per_node": 4},
            {"name": "alien", "gpu_model": "Z9000", "gpu_count": 8, "gpus_per_node": 8},
        ],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(p["pool_id"], p["gpu"], p["on_offer"]) for p in body["pools"]] == [
        ("dc-a/h100", "H100", True)
    ]
    skipped = {s["name"]: s["reason"] for s in body["skipped"]}
    assert skipped["odd"] == "6 GPUs are not whole nodes of 4"
    assert "Z9000" in skipped["alien"]
    site = x.get("/v1/sites/dc-a", seller).json()
    # The catalogue's Shanghai: the site stands there, in the east.
    assert (site["city"], site["region"], site["up"]) == ("Shanghai", "east", True)
    assert body["heartbeat_timeout_s"] == TIMEOUT_S

    # Again with a bigger pool and without the old one's sibling: resized, and a pool the
    # agent no longer finds loses its offer.
    x.client.post(
        "/v1/pools",
        headers=seller,
        json={
            "id": "dc-a/manual",
            "site_id": "dc-a",
            "gpu": "H20",
            "gpu_count": 8,
            "reserve_cny_per_gpu_hour": 5,
        },
    )
    x.client.post(
        "/v1/offers", headers=seller, json={"pool_id": "dc-a/manual", "reserve_cny_per_gpu_hour": 5}
    )
    again = _register(x, seller, "dc-a", pools=[{**H100_NODE, "gpu_count": 16}]).json()
    assert "pool dc-a/h100 resized: 8 → 16 GPUs (8 per node)" in again["notes"]
    assert "pool dc-a/manual was not found by the agent: its offer is withdrawn" in again["notes"]
    assert again["session"] != body["session"]


def test_register_needs_a_city_for_a_new_site_and_only_owns_its_own(
    sqlite_exchange: Any,
) -> None:
    x = sqlite_exchange
    a, b = x.tenant("dc-a", "seller"), x.tenant("dc-b", "seller")
    r = _register(x, a, "nowhere", city=None)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.city"
    assert _register(x, a, "mine", city="Atlantis").status_code == 422
    assert _register(x, a, "mine").status_code == 200
    assert _register(x, b, "mine").status_code == 404  # another seller's site


def _two_sites(x: Any) -> tuple[dict[str, str], dict[str, str], dict[str, str], str, str]:
    a, b = x.tenant("dc-a", "seller"), x.tenant("dc-b", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=1000)
    sa = _session(x, a, "site-a", reserve=10.0)
    sb = _session(x, b, "site-b", city="Beijing", reserve=12.0)
    return a, b, buyer, sa, sb


def test_a_silent_site_is_taken_down_its_work_moves_and_late_reports_bill_nothing(
    exchange: Any,
) -> None:
    x = exchange
    a, b, buyer, sa, sb = _two_sites(x)
    job = x.job(buyer, checkpoint={"every_h": 0.25})
    x.clear()
    [lease] = _lease(x, a, "site-a", sa)
    assert (lease["pool_id"], lease["attempt"], lease["gpus"]) == ("site-a/h100", 1, 8)
    assert _report(x, a, lease, "running").json()["state"] == "running"

    # A heartbeats for 0.5 h, then falls silent; B keeps calling.
    x.clock.advance(hours_=0.5)
    held = [{"allocation_id": lease["allocation_id"], "lease_token": lease["lease_token"]}]
    assert _heartbeat(x, a, "site-a", sa, held=held).json()["stop"] == []
    x.clock.advance(seconds=TIMEOUT_S - 1)
    assert _heartbeat(x, b, "site-b", sb).status_code == 200
    assert _sweep(x) == []  # 29 s of silence: not yet
    x.clock.advance(seconds=2)
    assert _heartbeat(x, b, "site-b", sb).status_code == 200
    assert _sweep(x) == ["site-a"]  # 31 s > 30 s

    moved = x.get(f"/v1/jobs/{job['id']}", buyer).json()
    assert moved["state"] == "pending"
    # Billed up to the last heartbeat: 0.5 h × 8 GPUs = 4 GPU-hours → a quarter of the
    # 2 h plan: 4,000 + 80 fen. Progress kept to the last checkpoint: 2 × 0.25 h × 8 GPUs.
    [use] = x.get("/v1/usage", buyer).json()
    assert (use["gpu_hours"], use["buyer_fen"]) == (4.0, 4_080)
    assert moved["done_ref_gpu_hours"] == 4.0
    assert x.get("/v1/sites/site-a", a).json()["up"] is False

    x.clear()
    [again] = _lease(x, b, "site-b", sb)
    assert (again["job_id"], again["pool_id"], again["attempt"]) == (job["id"], "site-b/h100", 2)

    # The dead agent's late report: refused as stale, nothing applied or billed.
    late = _report(x, a, lease, "succeeded", exit_code=0, gpu_hours=16.0)
    assert late.status_code == 409, late.text
    assert late.json()["type"] == "urn:suanli:problem:stale-report"
    # Its heartbeats and leases are fenced: its session ended with the sweep.
    hb = _heartbeat(x, a, "site-a", sa, held=held)
    assert (hb.status_code, hb.json()["type"]) == (409, "urn:suanli:problem:fenced")

    assert _report(x, b, again, "running").status_code == 200
    x.clock.advance(hours_=1.0)
    done = _report(x, b, again, "succeeded", exit_code=0, gpu_hours=8.0).json()
    assert done["state"] == "succeeded"

    # Back from the dead, A registers again: its site comes up and the job it still holds
    # comes back as a stop order — it moved away.
    back = _register(x, a, "site-a", held=held).json()
    assert back["site_up"] is True
    assert [s["allocation_id"] for s in back["stop"]] == [lease["allocation_id"]]
    assert (
        back["stop"][0]["reason"] == "moved away: the job was preempted and is succeeded elsewhere"
    )

    assert all(n == 1 for n in _usage_rows(x).values()) and len(_usage_rows(x)) == 2
    events = x.get(f"/v1/jobs/{job['id']}/events", buyer).json()
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        ("pending", "pending"),
        ("pending", "placed"),
        ("placed", "running"),
        ("running", "preempted"),
        ("preempted", "pending"),
        ("pending", "placed"),
        ("placed", "running"),
        ("running", "succeeded"),
    ]
    assert events[3]["reason"].startswith("site site-a down: agent silent for 31.0 s")
    assert x.audit() == []


def test_a_retried_report_is_applied_once(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    a, _, buyer, sa, _ = _two_sites(x)
    x.job(buyer)
    x.clear()
    [lease] = _lease(x, a, "site-a", sa)
    _report(x, a, lease, "running")
    x.clock.advance(hours_=1.0)
    body = {"exit_code": 0, "gpu_hours": 8.0, "key": "alloc-done-1"}
    first = _report(x, a, lease, "succeeded", **body)
    retry = _report(x, a, lease, "succeeded", **body)
    assert first.status_code == retry.status_code == 200
    assert retry.headers.get("idempotent-replayed") == "true"
    assert retry.json() == first.json()
    # 8 GPU-hours of 16 planned: half of each leg, once: 8,000 + 160 fen.
    assert x.wallet(buyer)["wallet_fen"] == 100_000 - 8_160
    assert list(_usage_rows(x).values()) == [1]


def test_a_lease_that_timed_out_is_leased_again_and_the_old_token_is_fenced(
    sqlite_exchange: Any,
) -> None:
    x = sqlite_exchange
    a, _, buyer, sa, _ = _two_sites(x)
    x.job(buyer)
    x.clear()
    [old] = _lease(x, a, "site-a", sa)
    assert _lease(x, a, "site-a", sa) == []  # leased already
    x.clock.advance(seconds=301)  # LEASE_TTL_S = 300 without a running report
    _heartbeat(x, a, "site-a", sa)
    [new] = _lease(x, a, "site-a", sa)
    assert new["allocation_id"] == old["allocation_id"]
    assert new["lease_token"] != old["lease_token"]
    stale = _report(x, a, old, "running")
    assert stale.status_code == 409 and "leased again" in stale.json()["detail"]
    assert _report(x, a, new, "running").status_code == 200


def test_cancel_and_unclaimed_work_reach_the_agent(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    a, _, buyer, sa, _ = _two_sites(x)
    j1, j2 = x.job(buyer, resources={"gpus": 4}), x.job(buyer, resources={"gpus": 4}, name="b")
    x.clear()
    leases = {le["job_id"]: le for le in _lease(x, a, "site-a", sa)}
    for le in leases.values():
        _report(x, a, le, "running")
    x.post(f"/v1/jobs/{j1['id']}/cancel", buyer)
    held = [
        {"allocation_id": le["allocation_id"], "lease_token": le["lease_token"]}
        for le in leases.values()
    ]
    stop = _heartbeat(x, a, "site-a", sa, held=held).json()["stop"]
    assert stop == [
        {
            "allocation_id": leases[j1["id"]]["allocation_id"],
            "reason": "the job is cancelled: cancelled by buyer",
            "handover": False,
        }
    ]
    # The agent comes back without j2 (its state was lost): j2 is preempted, to run again.
    x.clock.advance(seconds=60)
    body = _register(x, a, "site-a").json()
    assert "1 started allocations the agent no longer holds were preempted" in body["notes"]
    assert x.get(f"/v1/jobs/{j2['id']}", buyer).json()["state"] == "pending"
    assert x.audit() == []


def test_job_spec_reaches_the_lease_and_backend_usage_is_kept(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    a, _, buyer, sa, _ = _two_sites(x)
    job = x.job(
        buyer,
        env={"EPOCHS": "3"},
        working_dir="src",
        checkpoint={"every_h": 0.5, "dir": "ckpt/train"},
        stop_grace_s=30,
    )
    x.clear()
    [lease] = _lease(x, a, "site-a", sa)
    assert (lease["env"], lease["working_dir"], lease["checkpoint_dir"]) == (
        {"EPOCHS": "3"},
        "src",
        "ckpt/train",
    )
    assert (lease["checkpoint_every_h"], lease["stop_grace_s"]) == (0.5, 30.0)
    _report(x, a, lease, "running", backend_job_id="4242")
    x.clock.advance(hours_=1.0)  # 8 GPUs × 1 h: the 8 GPU-hours reported below
    usage = {"gpu_seconds": 28_800.0, "gpus": 8, "source": "slurm controller", "ended_at_s": 9.0}
    done = _report(
        x, a, lease, "failed", exit_code=3, gpu_hours=8.0, usage=usage, log_tail="boom\n"
    ).json()
    assert (done["state"], done["exit_code"]) == ("failed", 3)
    [use] = x.get("/v1/usage", buyer).json()
    assert use["details"]["backend_usage"]["source"] == "slurm controller"
    last = x.get(f"/v1/jobs/{job['id']}/events", buyer).json()[-1]
    assert last["data"]["log_tail"] == "boom\n" and last["data"]["backend_job_id"] == "4242"


def test_bad_env_names_are_refused_at_submit(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer", fund_cny=10)
    spec = {
        "name": "t",
        "command": "run",
        "work_ref_gpu_hours": 1,
        "bid_cny_per_ref_gpu_hour": 1,
        "data": {"origin_city": "Shanghai"},
    }
    for env in ({"SUANLI_WORK_ID": "x"}, {"1BAD": "x"}):
        r = x.post("/v1/jobs", buyer, {**spec, "env": env})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.env"


def test_replicas_report_their_endpoint_and_health(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    a, _, buyer, sa, _ = _two_sites(x)
    svc = x.post(
        "/v1/services",
        buyer,
        {
            "name": "chat",
            "model": "Llama-3.1-8B",
            "demand_rps": {"Shanghai": 2},
            "tokens": {"prompt": 500, "output": 250},
            "slo": {"ttft_ms": 2000, "tpot_ms": 100},
            # 2 req/s × 250 tokens × 3600 s = 1.8 M tokens/h × 50 = 90 yuan/h ≫ the reserve.
            "bid_cny_per_m_output_tokens": 50,
            "command": "vllm serve meta-llama/Llama-3.1-8B-Instruct --port $PORT",
            "health_path": "/health",
        },
    ).json()
    x.clear()
    [lease] = _lease(x, a, "site-a", sa)
    assert (lease["kind"], lease["item_id"], lease["job_id"]) == ("replica", svc["id"], None)
    assert lease["command"].startswith("vllm serve") and lease["health_path"] == "/health"
    out = _report(x, a, lease, "running", endpoint="http://10.0.0.5:8123")
    assert out.status_code == 200 and out.json()["endpoint"] == "http://10.0.0.5:8123"
    replicas = [{"allocation_id": lease["allocation_id"], "health": "healthy"}]
    assert _heartbeat(x, a, "site-a", sa, replicas=replicas).status_code == 200
    [rep] = x.get(f"/v1/services/{svc['id']}", buyer).json()["replicas"]
    assert (rep["endpoint"], rep["health"]) == ("http://10.0.0.5:8123", "healthy")
    why = x.get(f"/v1/services/{svc['id']}/why", buyer).json()
    kinds = [e["kind"] for e in why["events"]]
    assert kinds == ["submitted", "placed", "replica-running", "replica-health"]

    # The billing horizon (0.25 h) ends: the replica's placement is settled and the service
    # placed again; the agent learns the old placement may be handed over to the new one.
    x.clock.advance(hours_=0.25)
    x.clear()
    held = [{"allocation_id": lease["allocation_id"], "lease_token": lease["lease_token"]}]
    [stop] = _heartbeat(x, a, "site-a", sa, held=held).json()["stop"]
    assert stop == {
        "allocation_id": lease["allocation_id"],
        "reason": "the replica's placement reached its billing horizon",
        "handover": True,
    }
    [nxt] = _lease(x, a, "site-a", sa)
    assert (nxt["item_id"], nxt["pool_id"]) == (svc["id"], lease["pool_id"])
    assert nxt["continues"] == lease["allocation_id"]  # keep the running replica for it
    # Stopped by its buyer: no handover.
    x.post(f"/v1/services/{svc['id']}/stop", buyer)
    held = [{"allocation_id": nxt["allocation_id"], "lease_token": nxt["lease_token"]}]
    [stop] = _heartbeat(x, a, "site-a", sa, held=held).json()["stop"]
    assert stop["handover"] is False and stop["reason"].startswith("the service is stopped")
    assert x.audit() == []
