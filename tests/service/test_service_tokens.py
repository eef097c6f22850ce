"""D11: API tokens per account are capped, may expire, and can be listed and revoked.

An account holds at most ``max_tokens_per_account`` live tokens (default 20): minting
past it is 409, saying to revoke some. A token made with ``expires_in_days`` is refused
once that time has passed. Revoking a token refuses it at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx

from suanli.sdk import Client
from suanli.service.local_site import prepare_local_site
from suanli.service.settings import ServiceSettings

DEFAULT_CAP = ServiceSettings.model_fields["max_tokens_per_account"].default


def _mint(x: Any, who: dict[str, str], **body: Any) -> Any:
    return x.client.post("/v1/tokens", headers=who, json=body)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_minting_stops_at_the_cap_until_a_token_is_revoked(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")  # its account holds one token already
    codes = [_mint(x, buyer, label=f"t{i}").status_code for i in range(DEFAULT_CAP + 5)]
    assert codes == [201] * (DEFAULT_CAP - 1) + [409] * 6
    refused = _mint(x, buyer)
    assert refused.json()["type"].endswith(":conflict")
    assert f"{DEFAULT_CAP} live API tokens" in refused.json()["detail"]
    assert "revoke" in refused.json()["detail"]
    live = x.get("/v1/tokens", buyer).json()
    assert len(live) == DEFAULT_CAP
    other = next(t for t in live if not t["current"])
    assert x.client.delete(f"/v1/tokens/{other['id']}", headers=buyer).status_code == 204
    assert _mint(x, buyer).status_code == 201


def test_the_cap_is_a_setting(make_exchange: Any) -> None:
    x = make_exchange(max_tokens_per_account=2)
    buyer = x.tenant("lab", "buyer")
    assert [_mint(x, buyer).status_code for _ in range(3)] == [201, 409, 409]


def test_an_expiring_token_is_refused_once_it_expires(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    made = _mint(x, buyer, label="ci", expires_in_days=1)
    assert made.status_code == 201, made.text
    out = made.json()
    expires = datetime.fromisoformat(out["expires_at"])
    assert expires == x.clock.now() + timedelta(days=1)
    assert x.client.get("/v1/me", headers=_bearer(out["token"])).status_code == 200
    x.clock.advance(hours_=24)
    refused = x.client.get("/v1/me", headers=_bearer(out["token"]))
    assert refused.status_code == 401
    # Expired tokens are not live: not listed, not counted against the cap.
    assert out["id"] not in {t["id"] for t in x.get("/v1/tokens", buyer).json()}


def test_bad_expiry_is_refused_naming_the_field(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    for bad in (0, -1, "7", 7.5, 100_000):
        r = _mint(x, buyer, expires_in_days=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["errors"][0]["field"] == "body.expires_in_days"


def test_tokens_are_listed_and_revoked_by_their_own_account_only(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    other = x.tenant("rival", "buyer")
    spare = _mint(x, buyer, label="spare").json()
    mine = x.get("/v1/tokens", buyer).json()
    assert {t["label"] for t in mine} == {"created with the account", "spare"}
    assert [t["current"] for t in mine if t["label"] == "spare"] == [False]
    assert all("token" not in t or t["token"] is None for t in mine)  # shown once only
    assert spare["id"] not in {t["id"] for t in x.get("/v1/tokens", other).json()}
    # Another account cannot revoke it (nor learn that it exists).
    assert x.client.delete(f"/v1/tokens/{spare['id']}", headers=other).status_code == 404
    assert x.client.get("/v1/me", headers=_bearer(spare["token"])).status_code == 200
    # Its own account can: refused at once, though it was just used (and cached).
    assert x.client.delete(f"/v1/tokens/{spare['id']}", headers=buyer).status_code == 204
    assert x.client.get("/v1/me", headers=_bearer(spare["token"])).status_code == 401


def test_the_local_agent_token_is_reissued_on_every_start_past_the_cap(
    make_exchange: Any,
) -> None:
    x = make_exchange(max_tokens_per_account=2)
    tokens = [prepare_local_site(x.rt, "Shanghai", open_to_all=False) for _ in range(4)]
    assert len(set(tokens)) == 4
    assert x.client.get("/v1/me", headers=_bearer(tokens[-1])).status_code == 200
    assert x.client.get("/v1/me", headers=_bearer(tokens[0])).status_code == 401


def _through(x: Any) -> httpx.MockTransport:
    """An httpx transport that hands each request to the harness's test client."""

    def handle(request: httpx.Request) -> httpx.Response:
        r = x.client.request(
            request.method,
            request.url.raw_path.decode(),
            headers=request.headers,
            content=request.content,
        )
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    return httpx.MockTransport(handle)


def test_sdk_lists_creates_and_revokes_tokens(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    token = buyer["Authorization"].removeprefix("Bearer ")
    with Client("http://testserver", token, transport=_through(x)) as c:
        made = c.create_token(f"sdk-{uuid.uuid4().hex[:6]}", expires_in_days=30)
        assert made["token"] and made["expires_at"]
        assert made["id"] in {t["id"] for t in c.tokens()}
        c.revoke_token(made["id"])
        assert made["id"] not in {t["id"] for t in c.tokens()}
