"""A restarted exchange does not take sites down for the silence its own outage caused.

Found by ``suanli bench chaos``: the exchange was killed and back 4.8 s later; its first
round swept a site whose agent had been calling every second until the kill (silent 6 s
by the exchange's reckoning, timeout 6 s) and preempted the work running there, though
nothing was wrong with the site. Now silence is judged only after the leader has led for
one heartbeat timeout: an agent that calls within that time keeps its site and its work;
one that does not is taken down then, billed to its last heartbeat.
"""

from __future__ import annotations

from typing import Any

from suanli.service.loop import ClearingLoop

TIMEOUT_S = 30.0  # the service's default heartbeat timeout
NODE = {"name": "h100", "gpu_model": "H100", "gpu_count": 8, "gpus_per_node": 8}


def _register(x: Any, seller: dict[str, str], site: str) -> str:
    body = {
        "site_id": site,
        "backend": "local",
        "host": "test-host",
        "city": "Shanghai",
        "reserve_cny_per_gpu_hour": 10.0,
        "pools": [NODE],
        "held": [],
    }
    r = x.client.post("/v1/agent/register", headers=seller, json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["session"])


def _heartbeat(x: Any, seller: dict[str, str], site: str, session: str) -> int:
    body = {"site_id": site, "session": session, "held": []}
    return int(x.client.post("/v1/agent/heartbeat", headers=seller, json=body).status_code)


def _up(x: Any, seller: dict[str, str], site: str) -> bool:
    return bool(x.get(f"/v1/sites/{site}", seller).json()["up"])


def test_sites_silent_only_while_the_exchange_was_down_stay_up(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    a, b = x.tenant("dc-a", "seller"), x.tenant("dc-b", "seller")
    sa, sb = _register(x, a, "site-a"), _register(x, b, "site-b")

    # The exchange is down for 2 timeouts: both agents call in vain. It comes back.
    x.clock.advance(seconds=2 * TIMEOUT_S)
    loop = ClearingLoop(x.rt, 1.0)
    try:
        loop.tick()  # 60 s since either was heard, but the exchange just started
        assert _up(x, a, "site-a") and _up(x, b, "site-b")

        # Within one timeout of the return, A calls again; B never does.
        x.clock.advance(seconds=TIMEOUT_S / 2)
        assert _heartbeat(x, a, "site-a", sa) == 200
        loop.tick()
        assert _up(x, a, "site-a") and _up(x, b, "site-b")  # 15 s of this exchange's time

        x.clock.advance(seconds=TIMEOUT_S / 2 + 1)
        assert _heartbeat(x, a, "site-a", sa) == 200
        loop.tick()  # led for 31 s: B's silence is its own now
        assert _up(x, a, "site-a") and not _up(x, b, "site-b")
        assert _heartbeat(x, b, "site-b", sb) == 409  # fenced: it must register again
    finally:
        loop.stop()
