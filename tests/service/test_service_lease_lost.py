"""A lease whose answer never reached the agent is offered again at its next heartbeat,
not after the five-minute lease timeout.

Found by reading the path the chaos bench exercises: the exchange commits a lease and is
killed before the answer leaves; restarted, it keeps the allocation leased to a token no
agent has, and the work sits ``placed`` for ``LEASE_TTL_S`` (300 s). An agent holds every
lease it was given until it has said how it ended, so a lease older than a heartbeat
interval that it does not hold, and that never started, was lost on the way.

Market: one site in Shanghai with an 8-GPU H100 node (reserve 10); one 8-GPU job.
Heartbeats every 5 s (the service's default).
"""

from __future__ import annotations

from typing import Any

INTERVAL_S = 5.0
NODE = {"name": "h100", "gpu_model": "H100", "gpu_count": 8, "gpus_per_node": 8}


def _call(x: Any, seller: dict[str, str], path: str, body: dict[str, Any]) -> Any:
    r = x.client.post(f"/v1/agent/{path}", headers=seller, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_lease_the_agent_never_got_is_offered_again_at_its_next_heartbeat(
    sqlite_exchange: Any,
) -> None:
    x = sqlite_exchange
    seller, buyer = x.tenant("dc", "seller"), x.tenant("lab", "buyer", fund_cny=10_000)
    reg = {"site_id": "s", "backend": "local", "host": "h", "city": "Shanghai"}
    reg |= {"reserve_cny_per_gpu_hour": 10.0, "pools": [NODE], "held": []}
    session = _call(x, seller, "register", reg)["session"]
    job = x.job(buyer)
    x.clear()
    ask = {"site_id": "s", "session": session, "kinds": ["job"]}
    [lost] = _call(x, seller, "leases", ask)  # committed; the answer dies with the exchange

    def heartbeat(held: list[dict[str, str]]) -> None:
        _call(x, seller, "heartbeat", {"site_id": "s", "session": session, "held": held})

    # Within an interval of the lease, the agent may not have had time to hold it.
    x.clock.advance(seconds=INTERVAL_S - 1)
    heartbeat([])
    assert _call(x, seller, "leases", ask) == []

    # Later, not held and never started: lost. Offered again, under a new token.
    x.clock.advance(seconds=2)
    heartbeat([])
    [again] = _call(x, seller, "leases", ask)
    assert (again["allocation_id"], again["job_id"]) == (lost["allocation_id"], job["id"])
    assert again["lease_token"] != lost["lease_token"] and again["attempt"] == 1

    # A lease the agent holds is never taken back, however old.
    x.clock.advance(seconds=10 * INTERVAL_S)
    heartbeat([{"allocation_id": again["allocation_id"], "lease_token": again["lease_token"]}])
    assert _call(x, seller, "leases", ask) == []
    assert x.get(f"/v1/jobs/{job['id']}", buyer).json()["state"] == "placed"
    assert x.audit() == []
